"""The agents a task may name. Versioned, admin-edited agent configurations replace this in the runtime issue."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_AGENT = "default"

_INSTRUCTIONS = (
    "You are an operations agent for an online shop. Use the tools to do what the task asks, one step at a "
    "time. Tool results come back as JSON envelopes {ok, data, error_code, error_message, retryable}. If a "
    "tool fails in a way you cannot fix, or the task needs a person, call handoff_to_human with the reason. "
    "When the task is done, answer with a short summary of what you did."
)


@dataclass(frozen=True)
class AgentProfile:
    name: str
    instructions: str


AGENTS: dict[str, AgentProfile] = {DEFAULT_AGENT: AgentProfile(name=DEFAULT_AGENT, instructions=_INSTRUCTIONS)}


def agent_profile(name: str) -> AgentProfile | None:
    return AGENTS.get(name)

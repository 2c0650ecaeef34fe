"""Reading agent configurations and prices as plain data for a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import F

from agent_runtime.models import AgentVersion, ModelPrice
from agent_runtime.specs import Price
from memory.composer import MemorySettings

DEFAULT_AGENT = "default"
DEFAULT_INSTRUCTIONS = (
    "You are an operations agent for an online shop. Use the tools to do what the task asks, one step at a "
    "time. Tool results come back as JSON envelopes {ok, data, error_code, error_message, retryable}. If a "
    "tool fails in a way you cannot fix, or the task needs a person, call handoff_to_human with the reason. "
    "When the task is done, answer with a short summary of what you did."
)


@dataclass(frozen=True)
class AgentProfile:
    name: str
    version_id: int
    version: int
    instructions: str
    model: str
    model_settings: dict[str, Any] = field(default_factory=dict)
    tools: tuple[str, ...] = ()
    """Tool names this agent may use; empty means every enabled tool."""
    max_turns: int = 12
    memory: MemorySettings = field(default_factory=MemorySettings)
    tool_contracts: dict[str, int] = field(default_factory=dict)
    """Pinned tool contract versions: tool name to version number."""

    @classmethod
    def from_version(cls, version: AgentVersion) -> AgentProfile:
        return cls(
            name=version.agent.name,
            version_id=version.pk,
            version=version.number,
            instructions=version.instructions,
            model=version.model,
            model_settings=dict(version.model_settings or {}),
            tools=tuple(version.tools or ()),
            max_turns=version.max_turns,
            memory=MemorySettings(
                window_turns=version.memory_window_turns,
                summary_tokens=version.memory_summary_tokens,
                inject_tokens=version.memory_inject_tokens,
            ),
            tool_contracts=dict(version.tool_contracts or {}),
        )


def agent_version(version_id: int) -> AgentProfile | None:
    version = AgentVersion.objects.select_related("agent").filter(pk=version_id).first()
    return AgentProfile.from_version(version) if version else None


def current_agent_version_id(name: str) -> int | None:
    """The version new tasks of this agent get; None if there is no such agent."""
    current = AgentVersion.objects.filter(agent__name=name, agent__current_id=F("id"))
    return current.values_list("pk", flat=True).first()


@dataclass(frozen=True)
class Budget:
    """What one task may spend; None: no limit."""

    tokens: int | None = None
    cost_usd: Decimal | None = None


def budget_for(version_id: int | None, requested: Budget | None = None) -> Budget:
    """A new task's budget: its agent version's, else the settings' (0: no limit); a submission may ask for less,
    never for more."""
    version = None
    if version_id is not None:
        version = AgentVersion.objects.filter(pk=version_id).only("token_budget", "cost_budget_usd").first()
    tokens = version.token_budget if version and version.token_budget is not None else settings.TASK_TOKEN_BUDGET
    cost = version.cost_budget_usd if version and version.cost_budget_usd is not None else settings.TASK_COST_BUDGET_USD
    requested = requested or Budget()
    return Budget(tokens=_lower(tokens or None, requested.tokens), cost_usd=_lower(cost or None, requested.cost_usd))


def _lower(cap: Any, asked: Any) -> Any:
    """The smaller limit; None is no limit."""
    if asked is None:
        return cap
    return asked if cap is None else min(cap, asked)


def price_for(model: str) -> Price | None:
    row = ModelPrice.objects.filter(model=model).first()
    if row is None:
        return None
    return Price(input_usd_per_million=row.input_usd_per_million, output_usd_per_million=row.output_usd_per_million)

"""What the runtime is given to build an agent: plain data, no credentials, no connections."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ToolSpec:
    """Exactly what the model sees of a tool: its contract's name, description and parameter schema."""

    name: str
    description: str
    parameters_schema: dict[str, Any]
    """A strict JSON Schema: every property required, no additional properties."""


@dataclass(frozen=True)
class AgentSpec:
    name: str
    instructions: str
    model: str
    """`offline`, or a model name served by the configured OpenAI-compatible endpoint."""
    tools: tuple[ToolSpec, ...] = field(default_factory=tuple)
    max_turns: int = 12


@dataclass(frozen=True)
class RunOutcome:
    final_output: str | None
    """The model's final answer; None when the run did not finish."""
    suspended: bool = False
    """The journal stopped the run (backoff, handoff, cancellation); the task's state says why."""
    max_turns_exceeded: bool = False

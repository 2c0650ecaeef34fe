"""What the runtime is given to build an agent: plain data, no credentials, no connections."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from memory.composer import MemorySettings
from tools.spec import ToolSpec

_MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Price:
    input_usd_per_million: Decimal
    output_usd_per_million: Decimal

    def cost(self, input_tokens: int, output_tokens: int) -> Decimal:
        total = input_tokens * self.input_usd_per_million + output_tokens * self.output_usd_per_million
        return (total / _MILLION).quantize(Decimal("0.000001"))


@dataclass(frozen=True)
class AgentSpec:
    name: str
    instructions: str
    model: str
    """`offline`, or a model name served by the configured OpenAI-compatible endpoint."""
    tools: tuple[ToolSpec, ...] = field(default_factory=tuple)
    max_turns: int = 12
    model_settings: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the SDK's ModelSettings (temperature, max_tokens, ...)."""
    price: Price | None = None
    """None when the price table has no row for the model: cost is then recorded as 0."""
    memory: MemorySettings = field(default_factory=MemorySettings)


@dataclass(frozen=True)
class RunOutcome:
    final_output: str | None
    """The model's final answer; None when the run did not finish."""
    suspended: bool = False
    """The journal stopped the run (backoff, handoff, cancellation); the task's state says why."""
    max_turns_exceeded: bool = False

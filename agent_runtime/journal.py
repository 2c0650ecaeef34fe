"""The seam between the runtime and whoever persists a run (the orchestrator).

The runtime asks the journal before every model turn whether that turn is already recorded (replay, no new
request, no new cost) and hands every tool call to it; the journal decides whether a call runs, is replayed,
or suspends the run (backoff, handoff, cancellation).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class TurnUsage:
    input_tokens: int
    """Tokens the model read in this turn, as the model reported them."""
    output_tokens: int
    """Tokens the model wrote in this turn."""
    cost: Decimal = Decimal("0")
    """In USD, from the price table."""


SUSPENDED = "run paused, not failed: "
"""Starts every RunSuspended message, so traces (whose spans record it as an error) can show a wait as a wait."""


class RunSuspended(Exception):
    """The journal stopped the run on purpose (backoff, handoff, cancelled, lease lost); not a failure."""

    def __init__(self, why: str) -> None:
        super().__init__(f"{SUSPENDED}{why}")


ModelCall = Literal["turn", "summary"]
"""Which request of a turn: the agent's answer, or the memory summarizer's facts from what the turn added (with a
real model; see agent_runtime.summarizer). Both are durable steps alike: recorded, replayed, budgeted, counted."""


class RunJournal(Protocol):
    async def replay_turn(self, turn: int, call: ModelCall = "turn") -> dict[str, Any] | None:
        """The recorded response of model turn `turn`, or None if it must be requested."""

    async def begin_turn(
        self, turn: int, model: str, request: dict[str, Any], worst_case: TurnUsage, call: ModelCall = "turn"
    ) -> int:
        """Persist that turn `turn` is about to be requested, with its input snapshot; return its attempt number
        (2 and up when the turn is requested again after a failure or a lost worker).

        `worst_case` is the most the request can use (its input counted, plus its maximum output). Raises
        RunSuspended, before anything is requested, when that could cross the task's budget."""

    async def end_turn(
        self, turn: int, response: dict[str, Any], usage: TurnUsage, call: ModelCall = "turn"
    ) -> dict[str, Any]:
        """Persist the model's response; after this the turn is replayed, never requested again. Returns the
        response as recorded (redacted): what the run goes on with, so a replay gives the model the same bytes."""

    async def fail_turn(self, turn: int, error: dict[str, Any], call: ModelCall = "turn") -> None:
        """Persist that the request for turn `turn` failed."""

    async def operator_instructions(self) -> list[tuple[int, str]]:
        """Operators' instructions for this run, in order, each with the turn it is given before: the model reads
        it as a user message just before that turn's input ends, on the first run and on every replay."""

    async def call_tool(self, call_id: str, name: str, arguments: str) -> str:
        """Run (or replay) one tool call and return the result envelope as JSON for the model.

        Raises RunSuspended when the run must stop here.
        """

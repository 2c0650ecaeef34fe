"""A decision is data: what the policy found, which rule decided, the moves it makes and when the task runs next."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from orchestration.models import HandoffReason, RecoveryEvent, Transition
from tools.errors import RecoveryAction
from tools.policy import RetryPolicy


@dataclass(frozen=True)
class Move:
    """One transition of the task, with the reason the transition log records."""

    transition: Transition
    reason: str


@dataclass(frozen=True)
class Ruling:
    """What the recovery policy found and decided; recorded as a RecoveryDecision on the task."""

    event: RecoveryEvent
    action: RecoveryAction
    what: str
    """What happened, as an operator reads it."""
    rule: str
    """Which rule decided, and what it says (the contract's dictionary entry, the retry policy, the cap)."""
    envelope: dict[str, Any] | None = None
    """The failed tool result, or the model error."""


@dataclass(frozen=True)
class Handoff:
    """Why a human takes over, as the manual queue shows and filters it."""

    reason: HandoffReason
    tool: str = ""
    """The tool involved, if one is."""
    error_code: str = ""


@dataclass(frozen=True)
class ApprovalHold:
    """The call waits for a human's approval: the arguments as the model made them, and why."""

    arguments: dict[str, Any]
    reason: str


@dataclass(frozen=True)
class StepChange:
    """What an operator's decision changes on the step it is about."""

    retries_forgiven: int | None = None
    """The step's attempts so far no longer count against its retry policy."""
    resolved_output: dict[str, Any] | None = None
    """The failed step succeeds with this envelope, which the tool never produced."""
    decided_by: str = ""
    """Who entered `resolved_output`, or gave the step's failure to the model as final."""


@dataclass(frozen=True)
class Instruction:
    """An operator's words for the model, given before turn `before_turn`."""

    text: str
    before_turn: int


@dataclass(frozen=True)
class Decision:
    """Everything that follows a fact about a task, applied in one transaction by `decision_apply`."""

    moves: tuple[Move, ...] = ()
    """Transitions, in order (leaving TOOL_RUNNING before handing off, say)."""
    rulings: tuple[Ruling, ...] = ()
    due_at: datetime | None = None
    """The task runs again at this time: its lease is let go and a message is scheduled."""
    waiting_reason: str = ""
    """The task's state reason when it waits in its state (no move) until `due_at`."""
    replans: int | None = None
    """The task's re-plan count after this decision, when it changed."""
    result: dict[str, Any] | None = None
    """The task's final result."""
    approval: ApprovalHold | None = None
    handoff: Handoff | None = None
    """Set exactly when a move hands the task off."""
    step_change: StepChange | None = None
    instruction: Instruction | None = None
    """Journalled as a step of its own, so every replay gives the model the same input."""
    run_goes_on: bool = False
    """The worker's run continues: the model sees the tool's result, or the next turn is requested."""

    @property
    def action(self) -> RecoveryAction | None:
        """The recovery action this decision ends with, if it is one."""
        return self.rulings[-1].action if self.rulings else None


def jitter_draw() -> float:
    """A uniform draw in [-1, 1] that spreads a backoff; facts carry it, so the policy itself stays pure."""
    return random.uniform(-1.0, 1.0)


def backoff(*, attempt: int, policy: RetryPolicy, jitter: float, draw: float) -> timedelta:
    """Exponential backoff: base, 2*base, 4*base, ... capped, then spread by draw * jitter (a fraction)."""
    raw = min(policy.cap_seconds, policy.base_seconds * (2 ** max(0, attempt - 1)))
    return timedelta(seconds=raw * (1 + jitter * draw))


def retry_policy_text(policy: RetryPolicy, jitter: float) -> str:
    return (
        f"at most {policy.max_retries} retries, backoff {policy.base_seconds:g} s doubling up to "
        f"{policy.cap_seconds:g} s, ±{jitter:.0%} jitter"
    )


@dataclass(frozen=True)
class Limits:
    """The policy's numbers, from settings (contracts bring their own retry policy)."""

    replan_cap: int
    """How often one task may hand a failed call back to the model before a human takes over."""
    jitter: float
    default_tool_retry: RetryPolicy
    """For a call with no contract (a tool the agent does not know), whose step was lost."""
    model_retry: RetryPolicy
    database_retry: RetryPolicy
    """`max_retries` is the number of database failures in a row after which a human takes over."""

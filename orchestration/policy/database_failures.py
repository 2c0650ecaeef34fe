"""What follows a failure of the run's database connection or transaction: not the task's fault, so it resumes
from its journal soon; failures in a row back off, and past DATABASE_FAILURES_BEFORE_HANDOFF (an error that
repeats on every run) a human takes over."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from orchestration.models import HandoffReason, RecoveryEvent, Transition
from orchestration.policy.decision import Decision, Handoff, Limits, Move, Ruling, backoff, jitter_draw
from tools.errors import RecoveryAction


@dataclass(frozen=True)
class DatabaseFailure:
    error: str
    in_a_row: int
    """This failure and those recorded since the task's last completed step."""
    now: datetime
    draw: float = field(default_factory=jitter_draw)


def database_failure_decide(failure: DatabaseFailure, limits: Limits) -> Decision:
    policy, in_a_row = limits.database_retry, failure.in_a_row
    what = f"the run's database connection or transaction failed: {failure.error[:500]}"
    rule = f"database failures in a row: {in_a_row} of {policy.max_retries} before a human takes over"
    if in_a_row >= policy.max_retries:
        return Decision(
            moves=(Move(Transition.HAND_OFF, f"{what} ({in_a_row} times in a row)"),),
            rulings=(Ruling(RecoveryEvent.DATABASE_ERROR, RecoveryAction.HANDOFF, what, rule),),
            handoff=Handoff(HandoffReason.DATABASE_FAILURES),
        )
    due = failure.now + backoff(attempt=in_a_row, policy=policy, jitter=limits.jitter, draw=failure.draw)
    resumes = f"{rule}; resumes from its journal after a short backoff"
    return Decision(
        rulings=(Ruling(RecoveryEvent.DATABASE_ERROR, RecoveryAction.RESUME, what, resumes),),
        due_at=due,
        waiting_reason=f"{what}; resumes at {due.isoformat()}",
    )

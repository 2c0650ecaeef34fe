"""Model failures, lost and abandoned steps, database failures and operator actions: texts and edge cases."""

from __future__ import annotations

from datetime import timedelta

from agent_runtime.failures import ModelFailure
from orchestration.models import RecoveryEvent, StepKind, TaskState
from orchestration.policy.database_failures import DatabaseFailure, database_failure_decide
from orchestration.policy.lost_steps import (
    LOST_STEP_RESULT,
    Checkpoint,
    LostStep,
    abandoned_step_decide,
    lost_step_output,
    lost_step_what,
    unfinished_tool_decide,
)
from orchestration.policy.model_failures import TurnFailure, model_failure_decide
from orchestration.policy.operator_actions import approval_decided_decide, cancel_decide
from tests.orchestration.policy.facts import LIMITS, NOW, actions, moves
from tools.errors import RecoveryAction

LOST = LostStep(
    seq=4,
    kind=StepKind.MODEL_TURN,
    name="offline",
    attempt=2,
    started_at=NOW,
    deadline_at=None,
    checkpoint=None,
)


def test_a_retry_after_shorter_than_the_backoff_does_not_shorten_it() -> None:
    turn = TurnFailure(
        failure=ModelFailure(True, "HTTP 429", retry_after_seconds=0.5),
        attempts=3,
        task_state=TaskState.PLANNED,
        now=NOW,
        draw=0.0,
    )
    decision = model_failure_decide(turn, LIMITS)
    assert decision.due_at == NOW + timedelta(seconds=4)
    assert decision.waiting_reason == f"model request failed: HTTP 429; attempt 4 due at {decision.due_at.isoformat()}"
    assert decision.rulings[0].envelope == {"retryable": True, "reason": "HTTP 429"}


def test_a_fatal_model_error_says_so() -> None:
    turn = TurnFailure(failure=ModelFailure(False, "HTTP 401"), attempts=1, task_state=TaskState.PLANNED, now=NOW)
    decision = model_failure_decide(turn, LIMITS)
    assert decision.moves[0].reason == "fatal model error: HTTP 401" and decision.action == RecoveryAction.HANDOFF


def test_a_lost_step_names_its_checkpoint_or_the_start() -> None:
    assert "rolled back to the start (no step had completed)" in lost_step_what(LOST)
    later = LostStep(**{**LOST.__dict__, "checkpoint": Checkpoint(seq=3, ref="call:1:c1")})
    assert "rolled back to step #3 (call:1:c1); the step runs again under the same idempotency key" in lost_step_what(
        later
    )
    assert "deadline none set" in lost_step_what(LOST)


def test_a_lost_step_is_closed_with_an_error_of_its_kind() -> None:
    assert lost_step_output(LOST)["error"]["type"] == "STEP_LOST"
    assert lost_step_output(LostStep(**{**LOST.__dict__, "kind": StepKind.TOOL_CALL})) == LOST_STEP_RESULT.to_dict()


def test_an_abandoned_step_on_an_ended_task_plans_nothing() -> None:
    decision = abandoned_step_decide(LOST, TaskState.CANCELLED)
    assert decision.moves == () and actions(decision) == ["stop"] and decision.due_at is None
    assert decision.rulings[0].what.endswith("but the task had already ended (CANCELLED)")
    assert decision.rulings[0].event == RecoveryEvent.STEP_LOST


def test_a_call_whose_next_move_was_lost_finishes_and_runs_at_once() -> None:
    decision = unfinished_tool_decide(NOW)
    assert moves(decision) == ["finish_tool"] and decision.due_at == NOW


def test_database_failures_name_the_count_and_the_limit() -> None:
    decision = database_failure_decide(DatabaseFailure(error="x" * 900, in_a_row=2, now=NOW, draw=0.0), LIMITS)
    (ruling,) = decision.rulings
    assert len(ruling.what) == len("the run's database connection or transaction failed: ") + 500
    assert ruling.rule == (
        "database failures in a row: 2 of 5 before a human takes over; resumes from its journal after a short backoff"
    )
    assert decision.due_at == NOW + timedelta(seconds=2)


def test_a_decided_approval_resumes_the_task_at_once() -> None:
    approved = approval_decided_decide(tool="refund_order", approved=True, message="", now=NOW)
    assert [(m.transition, m.reason) for m in approved.moves] == [("resume", "refund_order approved")]
    assert approved.due_at == NOW
    rejected = approval_decided_decide(tool="refund_order", approved=False, message="", now=NOW)
    assert rejected.moves[0].reason == "refund_order rejected (no message)"


def test_a_cancellation_has_a_reason() -> None:
    assert cancel_decide("").moves[0].reason == "cancelled on request"
    assert cancel_decide("duplicate order").moves[0].reason == "duplicate order"

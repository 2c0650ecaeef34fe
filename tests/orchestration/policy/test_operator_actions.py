"""The operator policy: which handoffs a retry can mend, what a retry grants, what resolve and close decide."""

from __future__ import annotations

import pytest

from orchestration.models import HandoffReason, RecoveryEvent, StepKind
from orchestration.policy.decision import Instruction, StepChange
from orchestration.policy.operator_actions import (
    FailedStep,
    NotApplicable,
    QueuedTask,
    operator_close_decide,
    operator_resolve_decide,
    operator_retry_decide,
    operator_send_back_decide,
)
from tests.orchestration.policy.facts import NOW, actions, moves
from tools.envelope import ToolResult

H = HandoffReason
CALL = FailedStep(kind=StepKind.TOOL_CALL, name="refund_order", attempt=4)
TURN = FailedStep(kind=StepKind.MODEL_TURN, name="gpt-x", attempt=4)


def _queued(reason: str, step: FailedStep | None = CALL, *, pending: bool = False) -> QueuedTask:
    return QueuedTask(handoff_reason=reason, failed_step=step, pending_approval=pending, now=NOW)


@pytest.mark.parametrize(
    ("task", "forgiven", "replans"),
    [
        (_queued(H.RETRIES_EXHAUSTED), 4, None),
        (_queued(H.MODEL_UNAVAILABLE, TURN), 4, None),
        (_queued(H.MODEL_REFUSED, TURN), 4, None),
        (_queued(H.DATABASE_FAILURES, None), None, None),
        (_queued(H.REPLAN_CAP, CALL), None, 0),
    ],
    ids=["retries exhausted", "model unavailable", "model refused", "database failures", "replan cap"],
)
def test_a_retry_resumes_now_with_a_fresh_budget(task: QueuedTask, forgiven: int | None, replans: int | None) -> None:
    decision = operator_retry_decide(task, actor="user:alice", note="fixed upstream")
    assert moves(decision) == ["resume"] and actions(decision) == ["retry"] and decision.due_at == NOW
    assert decision.rulings[0].event == RecoveryEvent.OPERATOR
    assert decision.rulings[0].what == "user:alice retried the task now: fixed upstream"
    assert decision.step_change == (StepChange(retries_forgiven=forgiven) if forgiven else None)
    assert decision.replans == replans


@pytest.mark.parametrize(
    ("task", "says"),
    [
        (_queued(H.AGENT_ASKED, None), "the agent asked for a human: close the task with a final result"),
        (_queued(H.DICTIONARY_HANDOFF), "resolve the failed step with a result"),
        (_queued(H.APPROVAL_NEEDED, pending=True), "a held call waits for approval"),
        (_queued(H.TURN_LIMIT, None), "turn limit reached"),
        (_queued("", None), "an unrecorded reason: close or cancel the task"),
        (_queued(H.RETRIES_EXHAUSTED, TURN), "no failed tool call to retry"),
    ],
)
def test_a_retry_that_cannot_mend_the_handoff_says_what_would(task: QueuedTask, says: str) -> None:
    with pytest.raises(NotApplicable, match=says):
        operator_retry_decide(task, actor="user:alice", note="n")


def test_resolve_makes_the_failed_call_succeed_with_the_operators_result() -> None:
    decision = operator_resolve_decide(_queued(H.RETRIES_EXHAUSTED), actor="user:alice", note="by phone", data={"a": 1})
    assert decision.step_change == StepChange(
        resolved_output=ToolResult.success({"a": 1}).to_dict(), decided_by="user:alice"
    )
    assert moves(decision) == ["resume"] and decision.due_at == NOW
    for unfit in (
        _queued(H.AGENT_ASKED, None),
        _queued(H.MODEL_UNAVAILABLE, TURN),
        _queued(H.APPROVAL_NEEDED, pending=True),
    ):
        with pytest.raises(NotApplicable):
            operator_resolve_decide(unfit, actor="user:alice", note="n", data={})


def test_close_completes_with_a_result_marked_as_the_operators() -> None:
    decision = operator_close_decide(actor="user:alice", note="called", output="Done by hand.")
    assert moves(decision) == ["close"] and actions(decision) == ["stop"]
    assert decision.result == {"output": "Done by hand.", "written_by": "user:alice"}


def test_send_back_journals_the_instruction_for_the_next_turn_and_makes_a_failure_final() -> None:
    task = QueuedTask(
        handoff_reason=H.RETRIES_EXHAUSTED, failed_step=CALL, pending_approval=False, now=NOW, next_turn=3
    )
    decision = operator_send_back_decide(task, actor="user:alice", note="n", instruction="look it up")
    assert decision.instruction == Instruction(text="look it up", before_turn=3)
    assert decision.step_change == StepChange(decided_by="user:alice")
    assert moves(decision) == ["resume"] and "before turn 3" in decision.rulings[0].rule
    replanned = QueuedTask(handoff_reason=H.REPLAN_CAP, failed_step=None, pending_approval=False, now=NOW)
    assert operator_send_back_decide(replanned, actor="a", note="n", instruction="i").replans == 0


@pytest.mark.parametrize(
    "reason", [H.TURN_LIMIT, H.MODEL_UNAVAILABLE, H.MODEL_REFUSED, H.DATABASE_FAILURES, H.UNKNOWN_AGENT]
)
def test_send_back_does_not_fit_a_task_the_agent_cannot_go_on_from(reason: HandoffReason) -> None:
    with pytest.raises(NotApplicable, match="the agent cannot go on from"):
        operator_send_back_decide(_queued(reason, None), actor="a", note="n", instruction="i")

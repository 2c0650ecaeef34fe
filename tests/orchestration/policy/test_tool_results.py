"""The tool-result policy beyond the README's table: what the model sees, reasons, texts, edge cases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from orchestration.models import HandoffReason, RecoveryEvent, TaskState
from orchestration.policy.decision import ApprovalHold, Handoff
from orchestration.policy.tool_results import ToolOutcome, tool_call_begin_decide, tool_result_decide
from tests.orchestration.policy.facts import LIMITS, NOW, contract, failed, moves
from tools.adapters.handoff import HANDOFF_TOOL
from tools.contract import Contract
from tools.envelope import ToolResult
from tools.errors import ErrorCode, RecoveryAction


def _outcome(result: ToolResult, contract_: Contract | None = None, **kw: Any) -> ToolOutcome:
    values: dict[str, Any] = {"tool": "lookup_order", "attempt": 1, "task_replans": 0, "now": NOW, "draw": 0.0}
    return ToolOutcome(result=result, contract=contract_ or contract("lookup_order"), **{**values, **kw})


def test_a_success_goes_back_to_the_model() -> None:
    decision = tool_result_decide(_outcome(ToolResult.success({"status": "paid"})), LIMITS)
    assert moves(decision) == ["finish_tool"] and decision.run_goes_on and not decision.rulings
    assert decision.moves[0].reason == "lookup_order answered"


@pytest.mark.parametrize(("arguments", "reason"), [({"reason": "a VIP"}, "a VIP"), ({}, "agent asked")])
def test_the_handoff_tool_hands_the_task_to_a_human_with_the_agents_reason(arguments: dict, reason: str) -> None:
    outcome = _outcome(ToolResult.success({"queued": True}), tool=HANDOFF_TOOL, arguments=arguments)
    decision = tool_result_decide(outcome, LIMITS)
    assert [(m.transition, m.reason) for m in decision.moves] == [("hand_off", reason)]
    assert not decision.run_goes_on


def test_a_call_held_for_approval_keeps_its_arguments_and_reason() -> None:
    held = failed(ErrorCode.APPROVAL_REQUIRED, message="refund above 500")
    decision = tool_result_decide(_outcome(held, arguments={"amount_cents": 90000}), LIMITS)
    assert decision.approval == ApprovalHold(arguments={"amount_cents": 90000}, reason="refund above 500")
    assert decision.moves[0].reason == "awaiting approval: refund above 500" and not decision.run_goes_on


def test_a_replan_counts_and_the_model_sees_the_error() -> None:
    decision = tool_result_decide(_outcome(failed(ErrorCode.INVALID_ARGUMENTS), task_replans=1), LIMITS)
    assert decision.replans == 2 and decision.run_goes_on
    assert decision.rulings[0].rule.endswith("; re-plan 2 of 3 (AGENT_REPLAN_CAP)")


def test_past_the_replan_cap_the_reason_says_how_often_the_model_tried() -> None:
    decision = tool_result_decide(_outcome(failed(ErrorCode.INVALID_ARGUMENTS), task_replans=3), LIMITS)
    assert decision.replans == 4 and not decision.run_goes_on
    assert decision.moves[-1].reason.startswith("the model re-planned 3 times (cap 3); last: lookup_order failed")
    assert decision.rulings[0].rule.endswith("the re-plan cap is used up (AGENT_REPLAN_CAP=3)")


def test_without_a_contract_only_the_shared_codes_apply() -> None:
    unknown = ToolOutcome(
        tool="gone", result=failed("ITS_OWN_CODE"), contract=None, attempt=1, task_replans=0, now=NOW, draw=0.0
    )
    decision = tool_result_decide(unknown, LIMITS)
    assert (
        decision.action == RecoveryAction.FATAL and decision.rulings[0].rule == "shared error code ITS_OWN_CODE: fatal"
    )
    lost = ToolOutcome(
        tool="gone",
        result=failed(ErrorCode.STEP_LOST, retryable=True),
        contract=None,
        attempt=1,
        task_replans=0,
        now=NOW,
        draw=0.0,
    )
    assert tool_result_decide(lost, LIMITS).action == RecoveryAction.RETRY  # with the default retry policy


@pytest.mark.parametrize(("draw", "seconds"), [(-1.0, 3.2), (0.0, 4.0), (1.0, 4.8)])
def test_the_backoff_is_spread_by_the_jitter(draw: float, seconds: float) -> None:
    decision = tool_result_decide(_outcome(failed(ErrorCode.TIMEOUT, retryable=True), attempt=3, draw=draw), LIMITS)
    assert decision.due_at == NOW + timedelta(seconds=seconds)


def test_the_backoff_is_capped() -> None:
    patient = Contract(**{**contract().__dict__, "retry": type(contract().retry)(10, 1.0, 30.0)})
    decision = tool_result_decide(_outcome(failed(ErrorCode.TIMEOUT, retryable=True), patient, attempt=9), LIMITS)
    assert decision.due_at == NOW + timedelta(seconds=30)


def test_a_lost_step_describes_itself() -> None:
    outcome = _outcome(
        failed(ErrorCode.STEP_LOST, retryable=True), event=RecoveryEvent.STEP_LOST, what="step #2 lost; rolled back"
    )
    (ruling,) = tool_result_decide(outcome, LIMITS).rulings
    assert (ruling.event, ruling.what) == (RecoveryEvent.STEP_LOST, "step #2 lost; rolled back")


@pytest.mark.parametrize(
    ("state", "expected"), [(TaskState.PLANNED, ["start_tool"]), (TaskState.RECEIVED, ["plan", "start_tool"])]
)
def test_a_call_that_begins_enters_tool_running(state: TaskState, expected: list[str]) -> None:
    assert moves(tool_call_begin_decide(task_state=state, tool="lookup_order")) == expected


def test_a_handoff_names_its_reason_tool_and_error_code() -> None:
    exhausted = tool_result_decide(_outcome(failed(ErrorCode.TIMEOUT, retryable=True), attempt=4), LIMITS)
    assert exhausted.handoff == Handoff(HandoffReason.RETRIES_EXHAUSTED, "lookup_order", ErrorCode.TIMEOUT)
    held = tool_result_decide(_outcome(failed(ErrorCode.APPROVAL_REQUIRED)), LIMITS)
    assert held.handoff == Handoff(HandoffReason.APPROVAL_NEEDED, "lookup_order", ErrorCode.APPROVAL_REQUIRED)
    assert tool_result_decide(_outcome(ToolResult.success({})), LIMITS).handoff is None

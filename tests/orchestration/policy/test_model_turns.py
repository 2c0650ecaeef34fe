"""The model-turn policy: the first plan, unknown tools as re-plans, the answer, the turn limit."""

from __future__ import annotations

from orchestration.models import HandoffReason, RecoveryEvent, TaskState
from orchestration.policy.decision import Handoff
from orchestration.policy.model_turns import TurnOutcome, answer_decide, turn_decide, unknown_agent_decide
from tests.orchestration.policy.facts import LIMITS, actions, moves
from tools.errors import ErrorCode

TOOLS = frozenset({"lookup_order", "handoff_to_human"})


def _turn(state: TaskState, calls: tuple[str, ...], replans: int = 0) -> TurnOutcome:
    return TurnOutcome(task_state=state, calls=calls, tool_names=TOOLS, task_replans=replans)


def test_the_first_turn_that_calls_a_tool_plans_the_task() -> None:
    decision = turn_decide(_turn(TaskState.RECEIVED, ("lookup_order",)), LIMITS)
    assert [(m.transition, m.reason) for m in decision.moves] == [("plan", "model chose lookup_order")]
    assert decision.run_goes_on and decision.replans is None


def test_a_turn_without_calls_or_after_the_plan_moves_nothing() -> None:
    assert turn_decide(_turn(TaskState.RECEIVED, ()), LIMITS).moves == ()
    assert turn_decide(_turn(TaskState.PLANNED, ("lookup_order",)), LIMITS).moves == ()


def test_each_unknown_tool_is_a_replan_and_the_cap_stops_the_run() -> None:
    within = turn_decide(_turn(TaskState.PLANNED, ("wire_money", "lookup_order", "mint")), LIMITS)
    assert actions(within) == ["replan", "replan"] and within.replans == 2 and within.run_goes_on
    assert within.rulings[0].event == RecoveryEvent.MODEL_MISTAKE
    assert within.rulings[0].what == "the model called 'wire_money', which this agent does not have"
    past = turn_decide(_turn(TaskState.RECEIVED, ("wire_money", "mint"), replans=2), LIMITS)
    assert moves(past) == ["plan", "hand_off"] and actions(past) == ["replan", "handoff"]
    assert past.replans == 4 and not past.run_goes_on
    assert past.moves[-1].reason.startswith("the model re-planned 3 times (cap 3); last: the model called 'mint'")


def test_the_answer_completes_the_task_with_its_result() -> None:
    decision = answer_decide("done")
    assert moves(decision) == ["complete"] and decision.result == {"output": "done"}


def test_an_unknown_agent_goes_to_a_human() -> None:
    assert [(m.transition, m.reason) for m in unknown_agent_decide("ghost").moves] == [
        ("hand_off", "unknown agent 'ghost'")
    ]


def test_the_replan_cap_names_the_tool_the_model_kept_calling() -> None:
    decision = turn_decide(_turn(TaskState.PLANNED, ("mint",), replans=3), LIMITS)
    assert decision.handoff == Handoff(HandoffReason.REPLAN_CAP, "mint", ErrorCode.UNKNOWN_TOOL)

"""The README's "What happens when..." table, row by row, as cases of the pure policy (no database).

Each row of the table must have a case here, or name the test module that covers it (rows about messages and
brokers are about scheduling and leases, not about a decision). The last test keeps the two in step.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent_runtime.failures import ModelFailure
from orchestration.models import HandoffReason, RecoveryEvent, StepKind, TaskState
from orchestration.policy.database_failures import DatabaseFailure, database_failure_decide
from orchestration.policy.decision import Decision
from orchestration.policy.lost_steps import Checkpoint, LostStep, LostStepTask, lost_step_decide
from orchestration.policy.model_failures import TurnFailure, model_failure_decide
from orchestration.policy.model_turns import TurnOutcome, turn_decide, turn_limit_decide
from orchestration.policy.operator_actions import cancelled_mid_step_decide
from orchestration.policy.tool_results import ToolOutcome, tool_result_decide
from tests.orchestration.policy.facts import LIMITS, NOW, contract, failed, summary
from tools.adapters.handoff import HANDOFF_TOOL
from tools.envelope import ToolResult
from tools.errors import ErrorCode, RecoveryAction

ROOT = Path(__file__).resolve().parents[3]
R = RecoveryAction
REFUND = contract(
    ORDER_LOCKED=(True, R.RETRY),
    ORDER_NOT_FOUND=(False, R.REPLAN),
    ORDER_ALREADY_SHIPPED=(False, R.HANDOFF),
    PAYMENT_GONE=(False, R.FATAL),
)


def _tool(result: ToolResult, *, attempt: int = 1, replans: int = 0, tool: str = "refund_order", **kw: Any) -> Decision:
    outcome = ToolOutcome(
        tool=tool, result=result, contract=REFUND, attempt=attempt, task_replans=replans, now=NOW, draw=0.0, **kw
    )
    return tool_result_decide(outcome, LIMITS)


def _model(failure: ModelFailure, *, attempts: int = 1, state: TaskState = TaskState.PLANNED) -> Decision:
    return model_failure_decide(
        TurnFailure(failure=failure, attempts=attempts, task_state=state, now=NOW, draw=0.0), LIMITS
    )


def _lost(kind: StepKind, attempt: int) -> Decision:
    tool = kind == StepKind.TOOL_CALL
    step = LostStep(
        seq=3,
        kind=kind,
        name="refund_order" if tool else "offline",
        attempt=attempt,
        started_at=NOW,
        deadline_at=NOW,
        checkpoint=Checkpoint(seq=2, ref="turn:1"),
    )
    state = TaskState.TOOL_RUNNING if tool else TaskState.PLANNED
    task = LostStepTask(state=state, replans=0, contract=REFUND if tool else None, now=NOW, draw=0.0)
    return lost_step_decide(step, task, LIMITS)


def _turn(calls: tuple[str, ...], replans: int) -> Decision:
    facts = TurnOutcome(
        task_state=TaskState.PLANNED, calls=calls, tool_names=frozenset({"refund_order"}), task_replans=replans
    )
    return turn_decide(facts, LIMITS)


def _database(in_a_row: int) -> Decision:
    return database_failure_decide(
        DatabaseFailure(error="OperationalError: gone", in_a_row=in_a_row, now=NOW, draw=0.0), LIMITS
    )


@dataclass(frozen=True)
class Case:
    decide: Callable[[], Decision]
    expected: dict[str, Any]
    """moves (transitions in order), actions (recorded rulings) and due_in (seconds from now, or None)."""


def expect(
    *moves: str, actions: tuple[str, ...] = (), due_in: float | None = None, handoff: HandoffReason | None = None
) -> dict[str, Any]:
    return {"moves": list(moves), "actions": list(actions), "due_in": due_in, "handoff": handoff}


LOCKED = failed("ORDER_LOCKED", retryable=True)
MODEL_503 = ModelFailure(True, "HTTP 503")
RETRY = ("retry",)
HANDOFF = ("handoff",)
FATAL = expect("fail_tool_fatal", actions=("fatal",))
H = HandoffReason


def handed_off(reason: HandoffReason) -> dict[str, Any]:
    return expect("hand_off", actions=HANDOFF, handoff=reason)


HANDED_OFF_AFTER_RETRIES = expect("fail_tool_retryable", "hand_off", actions=HANDOFF, handoff=H.RETRIES_EXHAUSTED)
WHAT_HAPPENS_WHEN: dict[str, dict[str, Case]] = {
    "a tool returns a retryable code (or times out, or its circuit is open)": {
        "first failure: retry after 1 s": Case(
            lambda: _tool(LOCKED), expect("fail_tool_retryable", actions=RETRY, due_in=1)
        ),
        "second: after 2 s": Case(
            lambda: _tool(LOCKED, attempt=2), expect("fail_tool_retryable", actions=RETRY, due_in=2)
        ),
        "third: after 4 s": Case(
            lambda: _tool(LOCKED, attempt=3), expect("fail_tool_retryable", actions=RETRY, due_in=4)
        ),
        "after the last retry: a human": Case(lambda: _tool(LOCKED, attempt=4), HANDED_OFF_AFTER_RETRIES),
        "timeout": Case(
            lambda: _tool(failed(ErrorCode.TIMEOUT, retryable=True)),
            expect("fail_tool_retryable", actions=RETRY, due_in=1),
        ),
        "circuit open": Case(
            lambda: _tool(failed(ErrorCode.CIRCUIT_OPEN, retryable=True)),
            expect("fail_tool_retryable", actions=RETRY, due_in=1),
        ),
    },
    "a tool returns a non-retryable code": {
        "replan": Case(lambda: _tool(failed("ORDER_NOT_FOUND")), expect("finish_tool", actions=("replan",))),
        "replan past the cap": Case(
            lambda: _tool(failed("ORDER_NOT_FOUND"), replans=3),
            expect("finish_tool", "hand_off", actions=HANDOFF, handoff=H.REPLAN_CAP),
        ),
        "handoff": Case(lambda: _tool(failed("ORDER_ALREADY_SHIPPED")), handed_off(H.DICTIONARY_HANDOFF)),
        "fatal": Case(lambda: _tool(failed("PAYMENT_GONE")), FATAL),
    },
    "a tool returns a code its dictionary lacks, or breaks its result schema": {
        "undeclared code": Case(lambda: _tool(failed("NOT_IN_DICTIONARY")), FATAL),
        "contract violation": Case(lambda: _tool(failed(ErrorCode.CONTRACT_VIOLATION)), FATAL),
        "invalid result": Case(lambda: _tool(failed(ErrorCode.INVALID_RESULT)), FATAL),
    },
    "a worker is killed, or hangs, mid-step": {
        "a tool call: retried under its retry policy": Case(
            lambda: _lost(StepKind.TOOL_CALL, 1), expect("fail_tool_retryable", actions=RETRY, due_in=1)
        ),
        "a tool call that keeps killing its worker": Case(
            lambda: _lost(StepKind.TOOL_CALL, 4), HANDED_OFF_AFTER_RETRIES
        ),
        "a model turn: retried under the model retry policy": Case(
            lambda: _lost(StepKind.MODEL_TURN, 1), expect(actions=RETRY, due_in=1)
        ),
        "a model turn that keeps killing its worker": Case(
            lambda: _lost(StepKind.MODEL_TURN, 4), handed_off(H.MODEL_UNAVAILABLE)
        ),
    },
    "PostgreSQL drops a worker's connection": {
        "first: resume after 1 s": Case(lambda: _database(1), expect(actions=("resume",), due_in=1)),
        "fourth: after 8 s": Case(lambda: _database(4), expect(actions=("resume",), due_in=8)),
        "fifth in a row: a human": Case(lambda: _database(5), handed_off(H.DATABASE_FAILURES)),
    },
    "the model endpoint fails (429, 5xx, timeout, hang)": {
        "503: retry after 1 s": Case(lambda: _model(MODEL_503), expect(actions=RETRY, due_in=1)),
        "429 with Retry-After 20: not before": Case(
            lambda: _model(ModelFailure(True, "HTTP 429", retry_after_seconds=20)), expect(actions=RETRY, due_in=20)
        ),
        "past MODEL_RETRY_MAX: a human": Case(lambda: _model(MODEL_503, attempts=4), handed_off(H.MODEL_UNAVAILABLE)),
        "while a tool call is open: a human": Case(
            lambda: _model(MODEL_503, state=TaskState.TOOL_RUNNING), handed_off(H.MODEL_UNAVAILABLE)
        ),
    },
    "the endpoint refuses our key (401/403) or the request": {
        "401": Case(lambda: _model(ModelFailure(False, "refused our credentials")), handed_off(H.MODEL_REFUSED)),
    },
    "the model calls a tool it lacks, or sends bad arguments": {
        "unknown tool": Case(lambda: _turn(("wire_money",), 0), expect(actions=("replan",))),
        "unknown tools past the cap": Case(
            lambda: _turn(("wire_money", "wire_money"), 2),
            expect("hand_off", actions=("replan", "handoff"), handoff=H.REPLAN_CAP),
        ),
        "bad arguments": Case(
            lambda: _tool(failed(ErrorCode.INVALID_ARGUMENTS)), expect("finish_tool", actions=("replan",))
        ),
    },
    "a call needs approval": {
        "held": Case(
            lambda: _tool(failed(ErrorCode.APPROVAL_REQUIRED, message="above 500 USD")),
            expect("hand_off", handoff=H.APPROVAL_NEEDED),
        ),
    },
    "a task is cancelled while a step runs": {
        "the step's outcome is kept": Case(
            lambda: cancelled_mid_step_decide(step_seq=2, step_name="refund_order", recorded="its result was recorded"),
            expect(actions=("stop",)),
        ),
    },
    "the agent hands off or runs out of turns": {
        "handoff tool": Case(
            lambda: _tool(ToolResult.success({"queued": True}), tool=HANDOFF_TOOL, arguments={"reason": "VIP"}),
            expect("hand_off", handoff=H.AGENT_ASKED),
        ),
        "turn limit": Case(lambda: turn_limit_decide(agent="default", max_turns=12), handed_off(H.TURN_LIMIT)),
    },
}
COVERED_ELSEWHERE = {
    "Redis restarts or is flushed": "tests/faults/test_broker_loss.py",
    "a message is delivered twice": "tests/orchestration/test_leases.py",
}
CASES = [(row, name, case) for row, cases in WHAT_HAPPENS_WHEN.items() for name, case in cases.items()]


@pytest.mark.parametrize(("row", "name", "case"), CASES, ids=[f"{row} / {name}" for row, name, _ in CASES])
def test_what_happens_when(row: str, name: str, case: Case) -> None:
    assert summary(case.decide()) == case.expected


def test_every_row_of_the_readme_table_has_a_case() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("### What happens when...", 1)[1].split("\n### ", 1)[0]
    rows = [line.split("|")[1].strip() for line in table.splitlines() if re.match(r"^\| (?!when|---)", line)]
    assert rows, "the README's table was not found"
    covered = set(WHAT_HAPPENS_WHEN) | set(COVERED_ELSEWHERE)
    assert [row for row in rows if row not in covered] == [], "README rows without a case"
    assert [row for row in covered if row not in rows] == [], "cases for rows the README no longer has"
    for module in COVERED_ELSEWHERE.values():
        assert (ROOT / module).exists(), module


def test_a_retry_is_recorded_with_its_rule_and_due_time() -> None:
    decision = _tool(failed("ORDER_LOCKED", retryable=True, message="settling"), attempt=2)
    (ruling,) = decision.rulings
    assert ruling.event == RecoveryEvent.TOOL_ERROR
    assert ruling.what == "refund_order failed with ORDER_LOCKED: settling"
    assert ruling.rule == (
        "refund_order v2 error dictionary: ORDER_LOCKED (order_locked) -> retry; retry policy: at most 3 retries, "
        "backoff 1 s doubling up to 30 s, ±20% jitter; retry 2 of 3"
    )
    assert ruling.envelope == failed("ORDER_LOCKED", retryable=True, message="settling").to_dict()
    assert decision.due_at is not None and decision.moves[0].reason.endswith(f"due at {decision.due_at.isoformat()}")

"""Tool deadlines hold whatever the pool: off the main thread (Celery's threads pool), where no timer signal
reaches, a hung call is abandoned at its deadline and what it wrote rolls back."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from shop.models import OrderNote
from tools.adapters.base import CallContext
from tools.deadline import CommitGate, DeadlineExceeded, call_with_deadline
from tools.envelope import ToolResult
from tools.errors import ErrorCode
from tools.models import ToolCallRecord, ToolContract
from tools.selectors import active_contract
from tools.services.calls import tool_call
from tools.services.contracts import contract_update

NOTE = json.dumps({"order_number": "A-1001", "note": "hello"})


def _call_in_a_thread(tool: str, arguments: str) -> tuple[ToolResult, float]:
    """The call as a threads-pool worker makes it: on a thread that is not the main one. Its result, and how long
    the caller waited."""
    results: list[tuple[ToolResult, float]] = []

    def call() -> None:
        started = time.monotonic()
        context = CallContext(idempotency_key=f"k-{tool}", trace_id="t" * 32, task_id="task", timeout_seconds=10)
        result = tool_call(contract=active_contract(tool), raw_arguments=arguments, context=context)
        results.append((result, time.monotonic() - started))

    caller = threading.Thread(target=call)
    caller.start()
    caller.join(timeout=30)
    assert results, "the caller never returned"
    return results[0]


def _helpers_finished(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(thread.name == "tool-call" for thread in threading.enumerate()):
        assert time.monotonic() < deadline, "the abandoned call never ended"
        time.sleep(0.05)


@pytest.mark.django_db(transaction=True)
def test_a_hung_call_is_abandoned_at_its_deadline_and_its_writes_roll_back(demo_orders: None, settings: Any) -> None:
    contract_update(
        contract=ToolContract.objects.get(name="add_order_note"), values={"timeout_seconds": 0.5}, user=None
    )
    settings.FAULT_PLAN = json.dumps({"tools": {"add_order_note": [{"fault": "hang_after_effect", "seconds": 4}]}})

    result, waited = _call_in_a_thread("add_order_note", NOTE)

    assert (result.error_code, result.retryable) == (ErrorCode.TIMEOUT, True)
    assert waited < 3.5, "the caller stopped waiting at the deadline, not when the hung call ended"
    _helpers_finished(timeout=15)
    assert not OrderNote.objects.exists(), "the abandoned attempt's note was rolled back"
    assert not ToolCallRecord.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_call_within_its_deadline_commits_as_on_the_main_thread(demo_orders: None) -> None:
    result, _ = _call_in_a_thread("add_order_note", NOTE)

    assert result.ok
    assert OrderNote.objects.count() == 1
    assert ToolCallRecord.objects.filter(idempotency_key="k-add_order_note").count() == 1


def test_the_gate_decides_once_between_giving_up_and_committing() -> None:
    abandoned = CommitGate(seconds=1, abandonable=True)
    assert abandoned.abandon() and not abandoned.commit_allowed()
    committing = CommitGate(seconds=1, abandonable=True)
    assert committing.commit_allowed() and not committing.abandon()


def test_a_call_already_committing_at_the_deadline_keeps_its_result() -> None:
    def slow_commit(gate: CommitGate) -> str:
        assert gate.commit_allowed()  # commits first, then takes past the deadline to finish
        time.sleep(0.6)
        return "committed"

    outcome: list[object] = []

    def off_main() -> None:
        outcome.append(call_with_deadline(0.2, slow_commit))

    caller = threading.Thread(target=off_main)
    caller.start()
    caller.join(timeout=10)
    assert outcome == ["committed"]


def test_off_the_main_thread_a_late_call_raises_deadline_exceeded() -> None:
    raised: list[BaseException] = []

    def off_main() -> None:
        try:
            call_with_deadline(0.2, lambda gate: time.sleep(1))
        except DeadlineExceeded as exc:
            raised.append(exc)

    caller = threading.Thread(target=off_main)
    caller.start()
    caller.join(timeout=10)
    assert len(raised) == 1

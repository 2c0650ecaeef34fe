"""The call path maps every outcome to one envelope, and the orchestrator follows the error dictionary."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import IntegrityError, InterfaceError, OperationalError

from orchestration.models import Step, StepState, Task, TaskState
from orchestration.services.execution import task_run
from tests.factories import submit_task
from tools.adapters.base import CallContext
from tools.adapters.orders import LookupOrder
from tools.envelope import ToolResult
from tools.errors import ErrorCode
from tools.models import ToolCallRecord, ToolContract
from tools.selectors import active_contract, tool_specs
from tools.services.calls import connection_lost, tool_call
from tools.services.circuits import circuit_record
from tools.services.contracts import ContractInvalid, contract_update

pytestmark = pytest.mark.django_db

LOOKUP = json.dumps({"order_number": "A-1001"})


def _call(tool: str, arguments: str = LOOKUP, key: str = "k-1") -> ToolResult:
    return tool_call(
        contract=active_contract(tool),
        raw_arguments=arguments,
        context=CallContext(idempotency_key=key, trace_id="t" * 32, task_id="task", timeout_seconds=10),
    )


def _run(task: Task) -> Task:
    task_run(task_id=str(task.pk), worker="worker:test")
    task.refresh_from_db()
    return task


def test_undeclared_error_code_is_a_counted_fatal_contract_violation(demo_orders: None, settings: Any) -> None:
    settings.FAULT_PLAN = json.dumps({"tools": {"lookup_order": [{"fault": "error", "code": "DISK_ON_FIRE"}]}})
    result = _call("lookup_order")
    assert (result.error_code, result.retryable) == (ErrorCode.CONTRACT_VIOLATION, False)
    contract = ToolContract.objects.get(name="lookup_order")
    assert contract.contract_violations == 1 and "DISK_ON_FIRE" in contract.last_violation

    task = _run(
        submit_task(User.objects.create(username="o"), goal="Look up order", task_input={"order_number": "A-1001"})
    )
    assert task.state == TaskState.TOOL_FAILED_FATAL
    assert "CONTRACT_VIOLATION" in task.state_reason


def test_result_breaking_its_schema_is_a_violation(demo_orders: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LookupOrder, "run", lambda self, arguments, context: ToolResult.success({"status": 7}))
    result = _call("lookup_order")
    assert (result.error_code, result.retryable) == (ErrorCode.INVALID_RESULT, False)
    assert ToolContract.objects.get(name="lookup_order").contract_violations == 1


def test_the_dictionary_decides_retryability(demo_orders: None, settings: Any) -> None:
    settings.FAULT_PLAN = json.dumps({"tools": {"refund_order": [{"fault": "error", "code": "ORDER_LOCKED"}]}})
    refund = json.dumps({"order_number": "A-1004", "amount_cents": 100, "currency": "EUR", "reason": "x"})
    assert _call("refund_order", refund).retryable is True


def test_a_hung_adapter_times_out_and_its_writes_roll_back(demo_orders: None, settings: Any) -> None:
    contract = ToolContract.objects.get(name="add_order_note")
    contract_update(contract=contract, values={"timeout_seconds": 0.5}, user=None)
    settings.FAULT_PLAN = json.dumps({"tools": {"add_order_note": [{"fault": "hang_after_effect", "seconds": 5}]}})
    note = json.dumps({"order_number": "A-1001", "note": "hello"})
    result = _call("add_order_note", note)
    assert (result.error_code, result.retryable) == (ErrorCode.TIMEOUT, True)
    from shop.models import OrderNote

    assert not OrderNote.objects.exists()
    assert not ToolCallRecord.objects.exists()


def test_an_adapter_exception_becomes_internal_without_its_message(
    demo_orders: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(self: Any, arguments: Any, context: Any) -> ToolResult:
        raise RuntimeError("postgres://admin:hunter2@db/prod refused")

    monkeypatch.setattr(LookupOrder, "run", boom)
    result = _call("lookup_order")
    assert (result.error_code, result.retryable) == (ErrorCode.INTERNAL, True)
    assert "hunter2" not in json.dumps(result.to_dict())


def test_a_recorded_key_returns_its_result_without_running(demo_orders: None, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _call("lookup_order")
    monkeypatch.setattr(LookupOrder, "run", lambda *args: pytest.fail("the adapter ran again"))
    assert _call("lookup_order") == first


def test_disabled_and_unknown_tools(demo_orders: None) -> None:
    contract_update(contract=ToolContract.objects.get(name="lookup_order"), values={"enabled": False}, user=None)
    assert _call("lookup_order").error_code == ErrorCode.TOOL_DISABLED
    assert "lookup_order" not in {spec.name for spec in tool_specs()}
    assert (
        tool_call(contract=None, raw_arguments="{}", context=CallContext("k", "t", "task", 1)).error_code
        == ErrorCode.UNKNOWN_TOOL
    )


def test_the_handoff_tool_cannot_be_disabled() -> None:
    with pytest.raises(ContractInvalid, match="hand a task to a human"):
        contract_update(
            contract=ToolContract.objects.get(name="handoff_to_human"), values={"enabled": False}, user=None
        )


def test_handoff_and_fatal_actions_from_the_dictionary(demo_orders: None, settings: Any) -> None:
    owner = User.objects.create(username="o")
    # ORDER_ALREADY_SHIPPED is a real outcome (A-1001 has shipped) whose action is handoff.
    address = {"line1": "1 New St", "line2": None, "city": "Leeds", "postal_code": "LS1", "country": "GB"}
    shipped = _run(
        submit_task(
            owner,
            goal="Update shipping address of order A-1001",
            task_input={"order_number": "A-1001", "address": address},
        )
    )
    assert shipped.state == TaskState.MANUAL_REVIEW and "ORDER_ALREADY_SHIPPED" in shipped.state_reason

    lookup = ToolContract.objects.get(name="lookup_order")
    frozen = {"code": "ORDER_FROZEN", "meaning": "legal hold", "retryable": False, "action": "fatal"}
    contract_update(contract=lookup, values={"error_codes": [*lookup.current.error_codes, frozen]}, user=None)  # type: ignore[union-attr]
    settings.FAULT_PLAN = json.dumps({"tools": {"lookup_order": [{"fault": "error", "code": "ORDER_FROZEN"}]}})
    fatal = _run(submit_task(owner, goal="Look up order", task_input={"order_number": "A-1001"}))
    assert fatal.state == TaskState.TOOL_FAILED_FATAL and "ORDER_FROZEN" in fatal.state_reason
    assert fatal.finished_at is not None
    step = Step.objects.get(task=fatal, name="lookup_order")
    assert step.state == StepState.FAILED and step.contract_version.number == 2


def test_open_circuit_fails_fast_and_the_task_backs_off(demo_orders: None, monkeypatch: pytest.MonkeyPatch) -> None:
    contract = active_contract("lookup_order")
    assert contract is not None
    for _ in range(contract.circuit.failure_threshold):
        circuit_record(contract, failed=True, code=ErrorCode.TIMEOUT)
    monkeypatch.setattr(LookupOrder, "run", lambda *args: pytest.fail("an open circuit must not call the adapter"))
    task = _run(
        submit_task(User.objects.create(username="o"), goal="Look up order", task_input={"order_number": "A-1001"})
    )
    assert task.state == TaskState.TOOL_FAILED_RETRYABLE
    assert "CIRCUIT_OPEN" in task.state_reason and "retry 1 of 3" in task.state_reason


def test_an_integral_float_cannot_slip_past_the_approval_rule(demo_orders: None) -> None:
    from shop.models import Refund

    base = {"order_number": "A-1002", "currency": "USD", "reason": "r"}
    held = _call("refund_order", json.dumps({**base, "amount_cents": 60000.0}), key="k-float-big")
    assert held.error_code == ErrorCode.APPROVAL_REQUIRED
    small = _call("refund_order", json.dumps({**base, "amount_cents": 1500.0}), key="k-float-small")
    assert small.ok and small.data is not None and small.data["refunded"]["amount_cents"] == 1500
    assert [refund.amount_cents for refund in Refund.objects.all()] == [1500]
    assert _call("refund_order", json.dumps({**base, "amount_cents": 1500.5}), key="k-frac").error_code == (
        ErrorCode.INVALID_ARGUMENTS
    )


def test_nul_characters_in_arguments_are_invalid(demo_orders: None) -> None:
    result = _call("add_order_note", json.dumps({"order_number": "A-1001", "note": "a\u0000b"}))
    assert (result.error_code, result.retryable) == (ErrorCode.INVALID_ARGUMENTS, False)
    assert "NUL" in (result.error_message or "")


@pytest.mark.parametrize(
    ("error", "lost"),
    [
        (OperationalError("terminating connection"), "57P01"),  # admin shutdown: the backend was terminated
        (OperationalError("server closed the connection unexpectedly"), None),  # the socket broke
        (OperationalError("could not connect"), "08006"),
        (InterfaceError("connection already closed"), "any"),
        (OperationalError("deadlock detected"), "40P01"),
        (OperationalError("canceling statement due to statement timeout"), "57014"),
        (IntegrityError("duplicate key"), "23505"),
    ],
)
def test_a_lost_connection_is_told_apart_from_a_failed_statement(error: Exception, lost: str | None) -> None:
    class PsycopgError(Exception):
        sqlstate = None if lost in (None, "any") else lost

    error.__cause__ = PsycopgError()
    expected = lost in (None, "any") or str(lost).startswith(("08", "57P"))
    assert connection_lost(error) is expected  # type: ignore[arg-type]

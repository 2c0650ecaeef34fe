"""The recovery policy's decisions, recorded on the task with their rule and due time, and shown by the API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from rest_framework.test import APIClient

from agent_runtime.journal import TurnUsage
from orchestration.models import (
    RecoveryDecision,
    RecoveryEvent,
    Step,
    StepKind,
    StepState,
    Task,
    TaskState,
)
from orchestration.services.cancellation import task_cancel
from orchestration.services.execution import task_database_failure_settle, task_run
from orchestration.services.journal import DatabaseJournal
from orchestration.services.leases import task_lease_acquire
from orchestration.services.sweeper import tasks_sweep
from shop.models import Order
from tests.factories import submit_task
from tools.errors import ErrorCode, RecoveryAction
from tools.models import ToolContract
from tools.services.contracts import contract_update

pytestmark = pytest.mark.django_db

REFUND = {"order_number": "A-1002", "amount_cents": 2000, "currency": "USD", "reason": "damaged box"}


def _run(task: Task) -> Task:
    Task.objects.filter(pk=task.pk).update(next_run_at=timezone.now())
    task_run(task_id=str(task.pk), worker="worker:test")
    task.refresh_from_db()
    return task


def test_retries_used_up_leave_the_reason_and_the_last_envelope_in_the_api(
    api: APIClient, client_user: User, demo_orders: None
) -> None:
    Order.objects.filter(number="A-1002").update(settlement_locked_until=timezone.now() + timedelta(hours=1))
    task = submit_task(client_user, goal="Refund order A-1002", task_input=REFUND)
    for _ in range(4):
        task = _run(task)
    assert task.state == TaskState.MANUAL_REVIEW

    body = api.get(f"/api/v1/tasks/{task.pk}/").json()
    recovery = body["recovery"]
    assert [d["action"] for d in recovery] == ["retry", "retry", "retry", "handoff"]
    assert [d["attempt"] for d in recovery] == [1, 2, 3, 4]
    for decision in recovery[:3]:
        assert decision["event"] == "tool_error" and decision["step_seq"] == 2
        assert "refund_order v1 error dictionary: ORDER_LOCKED" in decision["rule"]
        assert "at most 3 retries, backoff 1 s doubling up to 30 s" in decision["rule"]
        assert decision["next_attempt_at"] is not None and decision["attempt_started_at"] is not None
    last = recovery[-1]
    assert "retries used up (3 of 3)" in last["rule"] and last["next_attempt_at"] is None
    assert last["envelope"] == {
        "ok": False,
        "data": None,
        "error_code": "ORDER_LOCKED",
        "error_message": "order is locked by settlement process",
        "retryable": True,
    }
    assert "ORDER_LOCKED" in body["state_reason"] and "retries used up" in body["state_reason"]
    handoff = body["handoff"]
    assert (handoff["reason"], handoff["tool"], handoff["error_code"]) == (
        "retries_exhausted",
        "refund_order",
        "ORDER_LOCKED",
    )
    assert handoff["since"] is not None


def test_dictionary_actions_are_recorded_with_their_rule(demo_orders: None, settings: Any) -> None:
    owner = User.objects.create(username="o")
    missing = _run(submit_task(owner, goal="Look up order Z-9999", task_input={"order_number": "Z-9999"}))
    replanned = RecoveryDecision.objects.filter(task=missing).first()
    assert replanned is not None and replanned.action == RecoveryAction.REPLAN
    assert "ORDER_NOT_FOUND (no order has this number) -> replan" in replanned.rule
    assert "re-plan 1 of 3 (AGENT_REPLAN_CAP)" in replanned.rule

    address = {"line1": "1 New St", "line2": None, "city": "Leeds", "postal_code": "LS1", "country": "GB"}
    shipped = _run(
        submit_task(
            owner,
            goal="Update shipping address of order A-1001",
            task_input={"order_number": "A-1001", "address": address},
        )
    )
    handed = RecoveryDecision.objects.get(task=shipped)
    assert handed.action == RecoveryAction.HANDOFF and "ORDER_ALREADY_SHIPPED" in handed.rule
    assert handed.envelope["error_code"] == "ORDER_ALREADY_SHIPPED"  # type: ignore[index]

    lookup = ToolContract.objects.get(name="lookup_order")
    frozen = {"code": "ORDER_FROZEN", "meaning": "legal hold", "retryable": False, "action": "fatal"}
    contract_update(contract=lookup, values={"error_codes": [*lookup.current.error_codes, frozen]}, user=None)  # type: ignore[union-attr]
    settings.FAULT_PLAN = '{"tools": {"lookup_order": [{"fault": "error", "code": "ORDER_FROZEN"}]}}'
    fatal = _run(submit_task(owner, goal="Look up order", task_input={"order_number": "A-1001"}))
    decision = RecoveryDecision.objects.get(task=fatal)
    assert (fatal.state, decision.action) == (TaskState.TOOL_FAILED_FATAL, RecoveryAction.FATAL)
    assert "lookup_order v2 error dictionary: ORDER_FROZEN (legal hold) -> fatal" in decision.rule


def _lose_a_model_turn(task: Task) -> None:
    """A worker takes the task, starts turn 1 and vanishes: its lease runs out with the turn still RUNNING."""
    Task.objects.filter(pk=task.pk).update(next_run_at=timezone.now())
    lease = task_lease_acquire(task_id=str(task.pk), owner="worker:doomed")
    assert lease is not None
    async_to_sync(DatabaseJournal(lease=lease, actor=lease.owner).begin_turn)(
        1, "offline", {"input": "x"}, TurnUsage(0, 0)
    )
    Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def test_a_lost_model_turn_is_a_retryable_failure_and_a_poison_turn_ends_with_a_human(demo_orders: None) -> None:
    task = submit_task(User.objects.create(username="o"))
    for attempt in range(1, 5):
        _lose_a_model_turn(task)
        task = _run(task)
        turn = Step.objects.get(task=task, ref="turn:1")
        assert (turn.state, turn.attempt) == (StepState.FAILED, attempt)
        assert turn.output["error"]["type"] == ErrorCode.STEP_LOST
        if attempt <= 3:
            assert task.state == TaskState.RECEIVED and task.next_run_at is not None
    assert task.state == TaskState.MANUAL_REVIEW, "a turn that keeps killing its worker must not loop forever"
    decisions = list(RecoveryDecision.objects.filter(task=task).values_list("event", "action"))
    assert decisions == [(RecoveryEvent.STEP_LOST, RecoveryAction.RETRY)] * 3 + [
        (RecoveryEvent.STEP_LOST, RecoveryAction.HANDOFF)
    ]
    assert "rolled back to the start" in RecoveryDecision.objects.filter(task=task).first().what  # type: ignore[union-attr]

    # Once the endpoint behaves, the next run replays nothing and asks for the turn again.
    fresh = submit_task(User.objects.create(username="p"))
    _lose_a_model_turn(fresh)
    _run(fresh)
    fresh = _run(fresh)
    assert fresh.state == TaskState.COMPLETED
    assert Step.objects.get(task=fresh, ref="turn:1").attempt == 2


def test_database_failures_in_a_row_back_off_then_go_to_a_human(demo_orders: None, settings: Any) -> None:
    task = submit_task(User.objects.create(username="o"))
    delays = []
    in_a_row = settings.DATABASE_FAILURES_BEFORE_HANDOFF
    for failure in range(1, in_a_row + 1):
        with transaction.atomic():
            locked = Task.objects.select_for_update().get(pk=task.pk)
            task_database_failure_settle(task=locked, error="OperationalError: server closed the connection", actor="w")
        task.refresh_from_db()
        if failure < in_a_row:
            assert task.state == TaskState.RECEIVED and task.next_run_at is not None
            delays.append((task.next_run_at - timezone.now()).total_seconds())
    assert task.state == TaskState.MANUAL_REVIEW and "5 times in a row" in task.state_reason
    assert delays == sorted(delays) and delays[-1] > delays[0], "failures in a row back off"
    actions = list(RecoveryDecision.objects.filter(task=task).values_list("event", "action"))
    assert actions == [(RecoveryEvent.DATABASE_ERROR, RecoveryAction.RESUME)] * 4 + [
        (RecoveryEvent.DATABASE_ERROR, RecoveryAction.HANDOFF)
    ]


@pytest.mark.django_db(transaction=True)
def test_the_sweeper_closes_a_step_abandoned_on_a_cancelled_task(demo_orders: None) -> None:
    task = submit_task(User.objects.create(username="o"))
    _lose_a_model_turn(task)
    task_cancel(task_id=task.pk, actor="user:ops")
    turn = Step.objects.get(task=task)
    assert turn.state == StepState.RUNNING
    tasks_sweep()
    assert Step.objects.get(pk=turn.pk).state == StepState.RUNNING, "not before its deadline has passed"

    Step.objects.filter(pk=turn.pk).update(deadline_at=timezone.now() - timedelta(minutes=5))
    tasks_sweep()
    turn.refresh_from_db()
    assert turn.state == StepState.FAILED and turn.output["error_code"] == ErrorCode.STEP_LOST
    decision = RecoveryDecision.objects.get(task=task)
    assert (decision.event, decision.action) == (RecoveryEvent.STEP_LOST, RecoveryAction.STOP)
    assert Task.objects.get(pk=task.pk).state == TaskState.CANCELLED
    assert Step.objects.filter(task=task, kind=StepKind.MODEL_TURN).count() == 1

"""A side effect happens once per idempotency key: through retries, redeliveries and crashes."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection

from orchestration.models import Step, StepState, Task, TaskState
from shop.models import Order, Refund
from shop.services import orders_seed_demo
from tests.factories import submit_task
from tests.workers import StartWorker, wait_until
from tools.adapters.base import CallContext
from tools.errors import ErrorCode
from tools.models import ToolCallRecord
from tools.selectors import active_contract
from tools.services.calls import tool_call

REFUND = {"order_number": "A-1004", "amount_cents": 1500, "currency": "EUR", "reason": "late delivery"}


def _refund(key: str) -> Any:
    return tool_call(
        contract=active_contract("refund_order"),
        raw_arguments=json.dumps(REFUND),
        context=CallContext(idempotency_key=key, trace_id="t" * 32, task_id="task", timeout_seconds=10),
    )


@pytest.mark.django_db(transaction=True)
def test_five_retries_and_two_concurrent_redeliveries_refund_once() -> None:
    orders_seed_demo()
    key = f"u1:task-{uuid.uuid4().hex}:call:call_1_refund_order"
    results = [_refund(key) for _ in range(5)]

    barrier = threading.Barrier(2)

    def redeliver() -> None:
        barrier.wait()
        results.append(_refund(key))
        connection.close()

    threads = [threading.Thread(target=redeliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(results) == 7 and all(result.ok for result in results)
    assert len({result.data["refund_id"] for result in results}) == 1
    assert Refund.objects.count() == 1
    assert Order.objects.get(number="A-1004").refunded_cents == 1500
    assert ToolCallRecord.objects.filter(idempotency_key=key).count() == 1


@pytest.mark.django_db(transaction=True)
def test_crash_between_effect_and_record_applies_the_effect_once(settings: Any) -> None:
    orders_seed_demo()
    key = f"u1:task-{uuid.uuid4().hex}:call:call_1_refund_order"
    settings.FAULT_PLAN = json.dumps({"tools": {"refund_order": [{"fault": "crash_after_effect"}]}})
    crashed = _refund(key)
    assert (crashed.ok, crashed.error_code, crashed.retryable) == (False, ErrorCode.INTERNAL, True)
    assert "injected" not in (crashed.error_message or ""), "exception text must not reach the model"
    assert Refund.objects.count() == 0, "the effect rolled back with the missing record"
    assert Order.objects.get(number="A-1004").refunded_cents == 0

    settings.FAULT_PLAN = ""
    recovered = [_refund(key) for _ in range(3)]
    assert all(result.ok for result in recovered)
    assert Refund.objects.count() == 1
    assert Order.objects.get(number="A-1004").refunded_cents == 1500


def _idle_in_transaction() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'"
        )
        return int(cursor.fetchone()[0])


@pytest.mark.worker
def test_worker_killed_between_effect_and_record_refunds_once(start_worker: StartWorker) -> None:
    orders_seed_demo()
    owner = User.objects.create_user("kill-refund")
    fault = {"tools": {"refund_order": [{"fault": "hang_after_effect", "seconds": 60}]}}
    doomed = start_worker(FAULT_PLAN=json.dumps(fault), STEP_LEASE_SECONDS="3", STEP_DEADLINE_GRACE_SECONDS="2")
    task = submit_task(owner, goal="Refund order A-1004", task_input=REFUND)
    wait_until(
        lambda: (
            Step.objects.filter(task=task, name="refund_order", state=StepState.RUNNING).exists()
            and _idle_in_transaction() > 0
        ),
        describe="the refund applied inside its open transaction",
    )
    doomed.kill()

    start_worker(STEP_LEASE_SECONDS="3", STEP_DEADLINE_GRACE_SECONDS="2")
    wait_until(
        lambda: Task.objects.get(pk=task.pk).state == TaskState.COMPLETED, sweep=True, timeout=90, describe="recovery"
    )
    assert Refund.objects.count() == 1
    assert Order.objects.get(number="A-1004").refunded_cents == 1500
    step = Step.objects.get(task=task, name="refund_order")
    assert step.attempt == 2 and step.state == StepState.SUCCEEDED
    assert ToolCallRecord.objects.filter(idempotency_key=step.idempotency_key).count() == 1

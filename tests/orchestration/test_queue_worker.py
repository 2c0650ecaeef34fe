"""An operator's decision, then the worker that takes it up is SIGKILLed mid-step: the task still resumes, and
the decision's effect happens exactly once."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.utils import timezone

from orchestration.models import OperatorAction, RecoveryDecision, RecoveryEvent, Step, StepState, Task, TaskState
from orchestration.services.execution import task_run
from orchestration.services.queue import task_retry_now
from shop.models import Order, Refund
from shop.services import orders_seed_demo
from tests.factories import submit_task
from tests.workers import StartWorker, wait_until
from tools.models import ToolCallRecord

pytestmark = [pytest.mark.worker, pytest.mark.usefixtures("queue_groups")]

REFUND = {"order_number": "A-1002", "amount_cents": 2000, "currency": "USD", "reason": "damaged box"}
FAST_RECOVERY = {"STEP_LEASE_SECONDS": "3", "STEP_DEADLINE_GRACE_SECONDS": "2"}


def _idle_in_transaction() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND state = 'idle in transaction'"
        )
        return int(cursor.fetchone()[0])


def test_a_worker_killed_right_after_an_operators_retry_resumes_the_task_once(start_worker: StartWorker) -> None:
    orders_seed_demo()
    Order.objects.filter(number="A-1002").update(settlement_locked_until=timezone.now() + timedelta(hours=1))
    task = submit_task(User.objects.create_user("client"), goal="Refund order A-1002", task_input=REFUND)
    for _ in range(4):  # retries used up, in this process
        Task.objects.filter(pk=task.pk).update(next_run_at=timezone.now())
        task_run(task_id=str(task.pk), worker="worker:test")
    assert Task.objects.get(pk=task.pk).state == TaskState.MANUAL_REVIEW
    Order.objects.filter(number="A-1002").update(settlement_locked_until=None)

    # The retried call applies the refund and hangs before recording it: the worker dies right there.
    fault = {"tools": {"refund_order": [{"fault": "hang_after_effect", "seconds": 60, "attempts": [5]}]}}
    doomed = start_worker(FAULT_PLAN=json.dumps(fault), **FAST_RECOVERY)
    alice = User.objects.create_user("alice", is_staff=True)
    alice.groups.add(Group.objects.get(name="operators"))
    task_retry_now(task_id=task.pk, user=User.objects.get(pk=alice.pk), note="settled", seen_handoff_at=None)
    wait_until(
        lambda: (
            Step.objects.filter(task=task, name="refund_order", attempt=5, state=StepState.RUNNING).exists()
            and _idle_in_transaction() > 0
        ),
        describe="the retried refund applied inside its open transaction",
    )
    doomed.kill()

    start_worker(**FAST_RECOVERY)
    wait_until(
        lambda: Task.objects.get(pk=task.pk).state == TaskState.COMPLETED, sweep=True, timeout=90, describe="resumed"
    )
    step = Step.objects.get(task=task, name="refund_order")
    assert (step.attempt, step.state) == (6, StepState.SUCCEEDED)
    assert Refund.objects.filter(idempotency_key=step.idempotency_key).count() == 1
    assert Order.objects.get(number="A-1002").refunded_cents == 2000
    assert ToolCallRecord.objects.filter(idempotency_key=step.idempotency_key).count() == 1
    operator = RecoveryDecision.objects.filter(task=task, event=RecoveryEvent.OPERATOR)
    assert operator.count() == 1 and OperatorAction.objects.filter(task=task).count() == 1
    lost = RecoveryDecision.objects.filter(task=task, event=RecoveryEvent.STEP_LOST).get()
    assert lost.attempt == 5 and lost.rule.endswith("retry 1 of 3"), "the operator's fresh budget"

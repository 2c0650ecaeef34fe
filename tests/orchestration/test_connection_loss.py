"""PostgreSQL drops the worker's connection in the middle of a step: the task is handed back and completes."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from agent_runtime.offline_model import OfflineModel
from orchestration.models import Step, StepKind, Task, TaskState
from orchestration.services.execution import task_run
from shop.models import OrderNote
from tests.factories import submit_task


class ConnectionKillingModel(OfflineModel):
    """The offline model, whose second request has the database end this worker's connection."""

    def __init__(self) -> None:
        self.requests = 0

    async def get_response(self, *args: Any, **kwargs: Any) -> Any:
        self.requests += 1
        if self.requests == 2:
            await sync_to_async(_terminate_own_backend, thread_sensitive=True)()
        return await super().get_response(*args, **kwargs)


def _terminate_own_backend() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    from django.db import connections

    other = connections.create_connection("default")  # another session does what an operator or failover would
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()


@pytest.mark.django_db(transaction=True)
def test_connection_terminated_mid_step(monkeypatch: pytest.MonkeyPatch, demo_orders: None) -> None:
    task = submit_task(User.objects.create(username="c"))
    monkeypatch.setattr("agent_runtime.runner.resolve_model", lambda name: ConnectionKillingModel())
    task_run(task_id=str(task.pk), worker="worker:test")  # must not raise

    task.refresh_from_db()
    # Django reconnects after the failed transaction; the lost turn counts as a failed model attempt.
    assert task.lease_owner == "" and task.next_run_at is not None, "handed back at once, not after the lease"
    assert "model request failed" in task.state_reason and "terminat" in task.state_reason.lower()
    Task.objects.filter(pk=task.pk).update(next_run_at=timezone.now())
    monkeypatch.setattr("agent_runtime.runner.resolve_model", lambda name: OfflineModel())
    task_run(task_id=str(task.pk), worker="worker:test")
    task.refresh_from_db()
    assert task.state == TaskState.COMPLETED
    assert OrderNote.objects.count() == 1
    assert Step.objects.get(task=task, ref="call:1:call_1_lookup_order").attempt == 1
    assert Step.objects.filter(task=task, kind=StepKind.MODEL_TURN).count() == 3


@pytest.mark.django_db(transaction=True)
def test_connection_terminated_outside_a_transaction(monkeypatch: pytest.MonkeyPatch, demo_orders: None) -> None:
    """Lost while recording the outcome: the task is released over a new connection and run again."""
    from orchestration.services import execution

    original = execution._settle
    calls = []

    def settle_on_a_dead_connection(*args: Any, **kwargs: Any) -> None:
        calls.append(args)
        if len(calls) == 1:
            _terminate_own_backend()
        original(*args, **kwargs)

    monkeypatch.setattr(execution, "_settle", settle_on_a_dead_connection)
    task = submit_task(User.objects.create(username="c"))
    task_run(task_id=str(task.pk), worker="worker:test")
    task.refresh_from_db()
    assert task.state == TaskState.PLANNED and task.lease_owner == "" and task.next_run_at is not None
    Task.objects.filter(pk=task.pk).update(next_run_at=timezone.now())
    task_run(task_id=str(task.pk), worker="worker:test")
    task.refresh_from_db()
    assert task.state == TaskState.COMPLETED and len(calls) == 2
    assert OrderNote.objects.count() == 1

"""The journal fences writes: a worker that lost its lease cannot overwrite what its successor records."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.utils import timezone

from agent_runtime.journal import RunSuspended, TurnUsage
from orchestration.models import Step, StepState, Task, TaskState
from orchestration.services.journal import DatabaseJournal
from orchestration.services.leases import Lease, task_lease_acquire
from tests.factories import submit_task

pytestmark = pytest.mark.django_db

RESPONSE = {"output": [{"type": "function_call", "name": "lookup_order", "call_id": "c1", "arguments": "{}"}]}


def _take(task: Task, owner: str) -> Lease:
    lease = task_lease_acquire(task_id=str(task.pk), owner=owner)
    assert lease is not None
    return lease


def test_stale_worker_cannot_close_a_step_its_successor_restarted() -> None:
    task = submit_task(User.objects.create(username="o"))
    stale = DatabaseJournal(lease=_take(task, "worker:stale"), actor="worker:stale")
    async_to_sync(stale.begin_turn)(1, "offline", {"input": "x"}, TurnUsage(0, 0))

    Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    successor = DatabaseJournal(lease=_take(task, "worker:next"), actor="worker:next")
    async_to_sync(successor.begin_turn)(1, "offline", {"input": "x"}, TurnUsage(0, 0))

    with pytest.raises(RunSuspended):
        async_to_sync(stale.end_turn)(1, {"output": [], "from": "stale"}, TurnUsage(5, 5))
    step = Step.objects.get(task=task)
    assert step.state == StepState.RUNNING and step.attempt == 2 and step.output is None

    async_to_sync(successor.end_turn)(1, RESPONSE, TurnUsage(7, 3))
    step.refresh_from_db()
    task.refresh_from_db()
    assert step.state == StepState.SUCCEEDED and step.output == RESPONSE
    assert task.state == TaskState.PLANNED
    # Both requests were paid for, so both count.
    assert (task.input_tokens, task.output_tokens) == (12, 8)


def test_stale_worker_cannot_start_a_tool_call() -> None:
    task = submit_task(User.objects.create(username="o"))
    stale = DatabaseJournal(lease=_take(task, "worker:stale"), actor="worker:stale")
    Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    _take(task, "worker:next")
    with pytest.raises(RunSuspended):
        async_to_sync(stale.call_tool)("c1", "lookup_order", '{"order_number": "A-1001"}')
    assert not Step.objects.exists()
    assert Task.objects.get(pk=task.pk).state == TaskState.RECEIVED

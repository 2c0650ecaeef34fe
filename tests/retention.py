"""Builders for the retention tests (tests/orchestration/test_retention*.py): finished tasks with real content,
aged on demand, and a row lock held by another connection."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone

from orchestration.models import Task, TaskState
from orchestration.services.execution import task_run
from orchestration.services.submission import task_submit
from orchestration.tracing import new_trace_id

MONTH = timedelta(days=30)
LOOKUP = "Look up order A-1001 for jane.doe@example.com"  # the address is redacted: the task has a vault entry


def run_completed(owner: User, *, session_id: str = "") -> Task:
    """A task run to COMPLETED on the worker's own path: steps, transitions, spans, ledger entries, vault."""
    task = task_submit(
        owner=owner, goal=LOOKUP, task_input={"order_number": "A-1001"}, session_id=session_id, agent="default",
        metadata={}, idempotency_key=f"test-{uuid.uuid4().hex}", trace_id=new_trace_id(),
    ).task  # fmt: skip
    task_run(task_id=str(task.pk), worker="worker:test")
    task.refresh_from_db()
    assert task.state == TaskState.COMPLETED
    return task


def age(task: Task, *, days: int, state: TaskState | None = None) -> None:
    fields: dict[str, Any] = {"finished_at": timezone.now() - timedelta(days=days)}
    Task.objects.filter(pk=task.pk).update(**fields, **({"state": state} if state else {}))


def kept(*tasks: Task) -> set[uuid.UUID]:
    return set(Task.objects.filter(pk__in=[task.pk for task in tasks]).values_list("pk", flat=True))


@contextmanager
def row_held(lock: Callable[[], object]) -> Iterator[None]:
    """Another connection takes a row lock (`lock`, inside its transaction) and holds it until the block ends."""
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                lock()
                locked.set()
                release.wait(60)
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert locked.wait(30)
    try:
        yield
    finally:
        release.set()
        thread.join(timeout=60)

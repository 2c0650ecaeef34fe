"""Sending tasks to workers. Messages are only a wake-up call: the database says what is due."""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta

from celery import current_app
from django.db import transaction
from django.utils import timezone

from orchestration.models import Task
from orchestration.tracing import TRACE_HEADER

logger = logging.getLogger(__name__)

RUN_TASK = "orchestration.tasks.run_task"


def task_enqueue(*, task: Task, due_at: datetime | None = None) -> None:
    """Record that a message is on its way, and send it once the caller's transaction commits.

    If the broker is down the send is dropped with a warning: the sweeper re-sends due tasks whose message
    is overdue, so nothing is lost.
    """
    due_at = due_at or timezone.now()
    Task.objects.filter(pk=task.pk).update(enqueued_at=due_at)
    task.enqueued_at = due_at  # so a later save() of this instance keeps it
    countdown = max(0.0, (due_at - timezone.now()).total_seconds())
    task_id, trace_id = str(task.pk), task.trace_id

    def send() -> None:
        try:
            current_app.send_task(
                RUN_TASK, args=[task_id], headers={TRACE_HEADER: trace_id}, countdown=countdown or None
            )
        except Exception:
            logger.warning("broker unavailable; the sweeper will send this task", extra={"task_id": task_id})

    transaction.on_commit(send)


def backoff_delay(*, attempt: int, base: float, cap: float, jitter: float) -> timedelta:
    """Exponential backoff: base, 2*base, 4*base, ... capped, spread by +-jitter (a fraction)."""
    raw = min(cap, base * (2 ** max(0, attempt - 1)))
    return timedelta(seconds=raw * (1 + random.uniform(-jitter, jitter)))

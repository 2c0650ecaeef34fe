"""Sending tasks to workers. Messages are only a wake-up call: the database says what is due."""

from __future__ import annotations

import logging
from datetime import datetime

from celery import current_app
from django.db import transaction
from django.utils import timezone

from faults.plan import active_plan
from orchestration.models import Task
from orchestration.tracing import TRACE_HEADER

logger = logging.getLogger(__name__)

RUN_TASK = "orchestration.tasks.run_task"
# Kept far below Redis's visibility timeout (CELERY_VISIBILITY_TIMEOUT: at least 60 s, 3600 by default), so a
# delayed message can never be redelivered while it waits; later due times are the sweeper's to send.
MAX_COUNTDOWN_SECONDS = 45


def task_enqueue(*, task: Task, due_at: datetime | None = None) -> None:
    """Record that a message is on its way, and send it once the caller's transaction commits.

    If the broker is down the send is dropped with a warning: the sweeper re-sends due tasks whose message
    is overdue, so nothing is lost.
    """
    due_at = due_at or timezone.now()
    countdown = max(0.0, (due_at - timezone.now()).total_seconds())
    # No message now for a far due time: enqueued_at stays empty and the sweeper sends it once it is due.
    enqueued_at = due_at if countdown <= MAX_COUNTDOWN_SECONDS else None
    Task.objects.filter(pk=task.pk).update(enqueued_at=enqueued_at)
    task.enqueued_at = enqueued_at  # so a later save() of this instance keeps it
    if enqueued_at is None:
        return
    task_id, trace_id = str(task.pk), task.trace_id
    plan = active_plan()  # drills only: duplicate every message
    delays = [countdown + copy * plan.duplicate_delay_seconds for copy in range(1 + plan.duplicate_messages)]

    def send() -> None:
        try:
            for delay in delays:
                current_app.send_task(
                    RUN_TASK, args=[task_id], headers={TRACE_HEADER: trace_id}, countdown=delay or None
                )
        except Exception:
            logger.warning("broker unavailable; the sweeper will send this task", extra={"task_id": task_id})

    transaction.on_commit(send)

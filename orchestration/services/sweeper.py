"""The sweeper: PostgreSQL is the source of truth, the broker only a wake-up call.

Run by Celery beat every few seconds. It re-sends every task that is due, not held by a live lease, and
whose last message is overdue, so a flushed or restarted broker, a lost message or a dead worker loses
nothing. Duplicate messages are harmless: a worker that cannot take the lease does nothing.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from orchestration.models import RUNNABLE_STATES, Task
from orchestration.services.scheduling import task_enqueue

SWEEP_BATCH = 500


def tasks_sweep() -> int:
    """Send every due task whose message seems lost; return how many were sent."""
    now = timezone.now()
    overdue_before = now - timedelta(seconds=settings.SWEEP_REQUEUE_AFTER_SECONDS)
    due = (
        Task.objects.filter(state__in=RUNNABLE_STATES, next_run_at__lte=now)
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
        .filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=overdue_before))
        .order_by("next_run_at")
        .only("pk", "trace_id")[:SWEEP_BATCH]
    )
    sent = 0
    with transaction.atomic():
        for task in due:
            task_enqueue(task=task)
            sent += 1
    return sent

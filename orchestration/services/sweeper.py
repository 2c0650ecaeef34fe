"""The sweeper: PostgreSQL is the source of truth, the broker only a wake-up call.

Run by Celery beat every few seconds. It re-sends every task that is due, not held by a live lease, and
whose last message is overdue, so a flushed or restarted broker, a lost message or a dead worker loses
nothing. Duplicate messages are harmless: a worker that cannot take the lease does nothing.

While messages wait in the broker's queue (a backlog: workers busy), an overdue task's message is most likely
still in that queue, so only tasks overdue for much longer (BACKLOG_PATIENCE times) are sent again; otherwise
every sweep would add a copy of the whole backlog to it.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from orchestration import metrics
from orchestration.models import RUNNABLE_STATES, Step, StepState, Task
from orchestration.services.lost_steps import step_abandoned_close
from orchestration.services.scheduling import task_enqueue

SWEEP_BATCH = 500
BACKLOG_PATIENCE = 10

logger = logging.getLogger(__name__)


def broker_backlog() -> int:
    """Messages waiting in the default queue (0 if the broker cannot tell or does not answer)."""
    try:
        with current_app.connection_for_write() as conn:
            queue = current_app.conf.task_default_queue
            declared = conn.default_channel.queue_declare(queue=queue, passive=True)  # type: ignore[attr-defined]
            return int(declared.message_count)
    except Exception:
        logger.warning("cannot read the broker's queue depth; sweeping as if it were empty")
        return 0


def tasks_sweep() -> int:
    """Send every due task whose message seems lost; return how many were sent."""
    now = timezone.now()
    patience = settings.SWEEP_REQUEUE_AFTER_SECONDS * (BACKLOG_PATIENCE if broker_backlog() else 1)
    overdue_before = now - timedelta(seconds=patience)
    due = (
        Task.objects.filter(state__in=RUNNABLE_STATES, next_run_at__lte=now)
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
        .filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=overdue_before))
        .order_by("next_run_at")
        .only("pk", "trace_id", "state")[:SWEEP_BATCH]  # state too: django-fsm reads it on every row
    )
    sent = 0
    with transaction.atomic():
        for task in due:
            task_enqueue(task=task)
            sent += 1
    steps_abandoned_close()
    metrics.sweep_count()
    return sent


def steps_abandoned_close() -> int:
    """Close steps still RUNNING on tasks that have ended (cancelled mid-step, then its worker died) once their
    deadline is well past: nobody else will, and a RUNNING step would claim work is in flight. Returns how many."""
    now = timezone.now()
    past_deadline = Q(deadline_at__lt=now - timedelta(seconds=settings.STEP_DEADLINE_GRACE_SECONDS)) | Q(
        deadline_at__isnull=True, started_at__lt=now - timedelta(seconds=settings.STEP_LEASE_SECONDS)
    )
    abandoned = Step.objects.filter(past_deadline, state=StepState.RUNNING).exclude(task__state__in=RUNNABLE_STATES)
    closed = 0
    for step_id, task_id in abandoned.values_list("pk", "task_id")[:SWEEP_BATCH]:
        with transaction.atomic():
            task = Task.objects.select_for_update().get(pk=task_id)  # the task first, as every writer of steps
            step = Step.objects.select_for_update().get(pk=step_id)
            if step.state != StepState.RUNNING:
                continue
            step_abandoned_close(task=task, step=step, actor="sweeper")
            closed += 1
    return closed

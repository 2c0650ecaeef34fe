"""Leases: which worker runs a task right now, until when. Taken by compare-and-swap, checked at every write.

A lease is what makes a redelivered or duplicated message harmless (it finds the task owned, or not due, and
does nothing) and what lets the sweeper take back a task whose worker died: the lease simply expires.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from orchestration.models import RUNNABLE_STATES, Task

logger = logging.getLogger(__name__)


class LeaseLost(Exception):
    """The task was taken back (lease expired, task cancelled) while this worker ran it."""


@dataclass(frozen=True)
class Lease:
    task_id: str
    token: uuid.UUID
    owner: str


def _expiry(seconds: float) -> datetime:
    return timezone.now() + timedelta(seconds=seconds)


def task_lease_acquire(*, task_id: str, owner: str) -> Lease | None:
    """Take the task if it is runnable, due, and nobody holds a live lease on it."""
    now = timezone.now()
    token = uuid.uuid4()
    taken = (
        Task.objects.filter(pk=task_id, state__in=RUNNABLE_STATES, next_run_at__lte=now)
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
        .update(lease_token=token, lease_owner=owner, lease_expires_at=_expiry(settings.STEP_LEASE_SECONDS))
    )
    return Lease(task_id=str(task_id), token=token, owner=owner) if taken else None


LOCKED_TASK_DEFERS = ("goal", "input", "metadata", "result", "request_hash")
"""What a run's step transactions never read on the locked task: left in the database, they are neither decoded
on every lock nor written back on every save (a deferred field is saved only once it is assigned)."""


def task_row_locked(task_id: str) -> Task:
    """The task row, locked for this transaction, without its submission's payload."""
    return Task.objects.select_for_update().defer(*LOCKED_TASK_DEFERS).get(pk=task_id)


def task_locked_for(lease: Lease) -> Task:
    """The task row, locked for this transaction, if this lease still holds it."""
    task = task_row_locked(lease.task_id)
    if task.lease_token != lease.token:
        raise LeaseLost(f"task {lease.task_id} is no longer leased to {lease.owner}")
    return task


def task_locked_or_none(lease: Lease) -> Task | None:
    """The task row, locked for this transaction, or None if this lease no longer holds it."""
    try:
        return task_locked_for(lease)
    except LeaseLost:
        return None


def task_under_lease(lease: Lease, work: Callable[[Task], None], *, if_lost: str) -> bool:
    """Run `work` on the task, locked in a transaction of its own, if this lease still holds it.

    Otherwise log `if_lost` and give up: whoever holds the task now (or the next run) settles it. True if done.
    """
    try:
        with transaction.atomic():
            work(task_locked_for(lease))
    except LeaseLost:
        logger.warning(if_lost, extra={"task_id": lease.task_id})
        return False
    return True


def task_lease_renew(task: Task, *, step_deadline_seconds: float = 0) -> None:
    """Extend the lease of a locked task; the caller saves.

    Before a step: to the step's deadline plus STEP_DEADLINE_GRACE_SECONDS, so a worker that dies or hangs in
    the step loses the task soon after the deadline, and a slow call inside its timeout keeps it. Between steps
    (replaying, deciding): STEP_LEASE_SECONDS.
    """
    if step_deadline_seconds > 0:
        task.lease_expires_at = _expiry(step_deadline_seconds + settings.STEP_DEADLINE_GRACE_SECONDS)
    else:
        task.lease_expires_at = _expiry(settings.STEP_LEASE_SECONDS)


def task_lease_release(task: Task) -> None:
    task.lease_token = None
    task.lease_owner = ""
    task.lease_expires_at = None

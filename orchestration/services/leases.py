"""Leases: which worker runs a task right now, until when. Taken by compare-and-swap, checked at every write.

A lease is what makes a redelivered or duplicated message harmless (it finds the task owned, or not due, and
does nothing) and what lets the sweeper take back a task whose worker died: the lease simply expires.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from orchestration.models import RUNNABLE_STATES, Task

LEASE_GRACE_SECONDS = 5.0


class LeaseLost(Exception):
    """The task was taken back (lease expired, task cancelled) while this worker ran it."""


@dataclass(frozen=True)
class Lease:
    task_id: str
    token: uuid.UUID
    owner: str


def _expiry(step_deadline_seconds: float = 0) -> datetime:
    # Never shorter than the step's own deadline: a slow call inside its timeout must not look abandoned.
    seconds = max(settings.STEP_LEASE_SECONDS, step_deadline_seconds + LEASE_GRACE_SECONDS)
    return timezone.now() + timedelta(seconds=seconds)


def task_lease_acquire(*, task_id: str, owner: str) -> Lease | None:
    """Take the task if it is runnable, due, and nobody holds a live lease on it."""
    now = timezone.now()
    token = uuid.uuid4()
    taken = (
        Task.objects.filter(pk=task_id, state__in=RUNNABLE_STATES, next_run_at__lte=now)
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
        .update(lease_token=token, lease_owner=owner, lease_expires_at=_expiry())
    )
    return Lease(task_id=str(task_id), token=token, owner=owner) if taken else None


def task_locked_for(lease: Lease) -> Task:
    """The task row, locked for this transaction, if this lease still holds it."""
    task = Task.objects.select_for_update().get(pk=lease.task_id)
    if task.lease_token != lease.token:
        raise LeaseLost(f"task {lease.task_id} is no longer leased to {lease.owner}")
    return task


def task_lease_renew(task: Task, *, step_deadline_seconds: float = 0) -> None:
    """Extend the lease of a locked task before a step starts, to cover that step's deadline; the caller saves."""
    task.lease_expires_at = _expiry(step_deadline_seconds)


def task_lease_release(task: Task) -> None:
    task.lease_token = None
    task.lease_owner = ""
    task.lease_expires_at = None

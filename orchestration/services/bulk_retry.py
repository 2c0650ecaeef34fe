"""Bulk retry after an incident: every task handed off for one reason since a given time, each retried on its
own like a single retry (so one refusal does not stop the others)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from orchestration.models import Task, TaskState
from orchestration.policy.operator_actions import RETRIABLE_HANDOFFS
from orchestration.services.queue import (
    WORK_PERMISSION,
    QueueActionRefused,
    require_note,
    require_permission,
    task_retry_now,
)


@dataclass(frozen=True)
class BulkRetry:
    retried: list[str]
    """Ids of the tasks that resume now."""
    refused: list[tuple[str, str]]
    """(task id, why) of those left in the queue: held by someone else, or moved meanwhile."""


def tasks_for_bulk_retry(*, reason: str, since: datetime) -> QuerySet[Task]:
    """The tasks a bulk retry would act on: waiting for `reason` since `since` or later, oldest first."""
    return Task.objects.filter(state=TaskState.MANUAL_REVIEW, handoff_reason=reason, handed_off_at__gte=since).order_by(
        "handed_off_at"
    )


def tasks_retry_bulk(*, user: AbstractBaseUser, reason: str, since: datetime, note: str) -> BulkRetry:
    """After an incident: retry now every task handed off for `reason` since `since`, each in its own transaction
    (one refusal does not stop the others), each audited like a single retry."""
    require_permission(user, WORK_PERMISSION, "retrying tasks needs the 'Can claim and act on tasks' permission")
    require_note(note)
    if reason not in RETRIABLE_HANDOFFS:
        raise QueueActionRefused(
            f"a retry cannot mend tasks handed off for {reason}", code="invalid", field_errors={"reason": [reason]}
        )
    retried, refused = [], []
    for task_id, handed_off_at in tasks_for_bulk_retry(reason=reason, since=since).values_list("pk", "handed_off_at"):
        try:
            task_retry_now(
                task_id=task_id,
                user=user,
                note=f"bulk retry: {note}",
                seen_handoff_at=handed_off_at,  # handed off again meanwhile (perhaps for another reason): not this
                respect_claims=True,
            )
            retried.append(str(task_id))
        except QueueActionRefused as refusal:
            refused.append((str(task_id), str(refusal)))
    return BulkRetry(retried=retried, refused=refused)

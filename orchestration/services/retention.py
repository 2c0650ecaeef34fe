"""Retention: finished tasks older than a configurable age leave the database, in small batches, archived first
if an archive directory is given (`orchestration.services.retention_archive`).

Only terminal tasks go (COMPLETED, TOOL_FAILED_FATAL, CANCELLED: never MANUAL_REVIEW or a runnable one), by
`finished_at`, and never one with a step still RUNNING (cancelled mid-step: its worker may still write; the
sweeper closes such steps, and the next run prunes the task). Each batch is one short transaction that:

- locks its task rows with `FOR UPDATE SKIP LOCKED`, so a row a writer holds is passed over (it goes on a later
  run), walking the table in primary-key order from where the last batch stopped, so no batch rescans what
  earlier ones passed;
- bounds its own waits with `lock_timeout` and `statement_timeout` (SET LOCAL: this transaction only). A batch
  that meets a lock (a writer holding one of its steps, say) gives way, rolls back whole, and its tasks are left
  for the next run; the run goes on with the next batch. A writer waits at most one batch for a row of a task
  being pruned;
- archives, then deletes the tasks; deleting a task cascades to every row with a foreign key to it (steps,
  transitions, approvals, recovery decisions, operator actions, spans), and the task's own vault entries go too.

What stays, on purpose:
- Sessions, their writes and session-scoped vault entries: a session outlives its tasks (its memory was merged
  when each task settled; `SessionWrite.task_id` is a plain id, the record of that merge).
- The tools' idempotency ledger (`ToolCallRecord`, no foreign key to a task; archived as a copy). A call's key is
  derived from its task's idempotency key, and once the task is gone the client may submit the same key again:
  the new task's calls then replay the recorded results instead of refunding twice. The shop's own rows (refunds,
  notes), keyed the same way, are business records and stay in any case. A late redelivered message for a pruned
  task is harmless either way: it cannot take a lease on a task that is not there.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import OperationalError, connection, models, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from memory.models import VaultedValue
from memory.vault import task_scope
from orchestration.models import (
    TERMINAL_STATES,
    Step,
    StepState,
    Task,
    WebhookAttempt,
    WebhookAuditEntry,
    WebhookDelivery,
    WebhookDeliveryState,
)
from orchestration.services.retention_archive import (
    Appended,
    ArchiveFile,
    relation_model,
    task_lines,
    task_relations,
)

logger = logging.getLogger(__name__)

# A batch waits this long for a row lock before it gives way: writers never queue long behind retention.
LOCK_TIMEOUT_MS = 1000
# And no statement of a batch runs longer than this (a bad plan must not hold its locks for minutes).
STATEMENT_TIMEOUT_MS = 10_000
# SQLSTATEs of a batch that gave way to a writer: it rolls back and its tasks wait for the next run.
_GAVE_WAY = {"55P03": "lock timeout", "57014": "statement timeout", "40P01": "deadlock"}


@dataclass(frozen=True)
class PruneBatch:
    number: int
    tasks: int
    steps: int
    rows: int
    """Every row deleted, over all tables (tasks, steps, transitions, ..., vault entries)."""
    archived_bytes: int
    """Compressed bytes this batch added to the archive (0 without one)."""
    json_bytes: int
    """The same lines before compression."""
    seconds: float
    gave_way: str = ""
    """Why the batch rolled back (lock timeout, statement timeout, deadlock); empty when it was pruned."""


@dataclass
class PruneResult:
    finished_before: datetime
    dry_run: bool
    archive: Path | None
    tasks: int = 0
    steps: int = 0
    rows: int = 0
    archived_bytes: int = 0
    json_bytes: int = 0
    """The archive's lines before compression."""
    batches: int = 0
    batches_gave_way: int = 0
    seconds: float = 0.0
    stopped_early: bool = False
    """The run reached its time limit after a batch; what is left goes on the next run."""
    batch_log: list[PruneBatch] = field(default_factory=list)


def prunable_tasks(*, finished_before: datetime) -> QuerySet[Task]:
    """Tasks that may leave the database: terminal, finished before the cutoff, with no step still running."""
    running = Step.objects.filter(task=OuterRef("pk"), state=StepState.RUNNING)
    return Task.objects.filter(state__in=TERMINAL_STATES, finished_at__lt=finished_before).filter(~Exists(running))


def tasks_prune(
    *,
    older_than: timedelta,
    batch_size: int = 500,
    archive_dir: Path | None = None,
    dry_run: bool = False,
    pause_seconds: float = 0.1,
    max_seconds: float | None = None,
    on_batch: Callable[[PruneBatch], None] | None = None,
) -> PruneResult:
    """Archive (if `archive_dir`) and delete every prunable task that finished more than `older_than` ago.

    Batches of `batch_size` tasks, each in its own transaction, `pause_seconds` apart so writers get the database
    between them; `on_batch` hears of each. `dry_run` counts what would go and changes nothing. With `max_seconds`
    the run stops after the batch that crosses it (a periodic run must end within its task's time limit).
    """
    if batch_size < 1 or older_than <= timedelta(0):
        raise ValueError("batch_size and older_than must be positive")
    cutoff = timezone.now() - older_than  # fixed for the run: tasks finishing meanwhile are not chased
    archive = ArchiveFile(archive_dir) if archive_dir is not None and not dry_run else None
    result = PruneResult(finished_before=cutoff, dry_run=dry_run, archive=archive.path if archive else None)
    if dry_run:
        return _counted(result, batch_size=batch_size)
    started = time.monotonic()
    after: UUID | None = None
    while True:
        batch, after = _batch_prune(
            number=result.batches + 1, finished_before=cutoff, after=after, size=batch_size, archive=archive
        )
        if batch is None:
            break
        _add(result, batch)
        if on_batch is not None:
            on_batch(batch)
        if max_seconds is not None and time.monotonic() - started >= max_seconds:
            result.stopped_early = True
            break
        time.sleep(pause_seconds)
    result.seconds = round(time.monotonic() - started, 3)
    if archive is not None and not archive.path.exists():
        result.archive = None  # nothing was archived: no file was written
    return result


def tasks_prune_scheduled() -> PruneResult | None:
    """The periodic run (Celery beat): the settings' age, batch size, pause and archive; None when retention is
    off. It stops well within the Celery task's time limit; the next run goes on where it left off."""
    if not settings.TASK_RETENTION_DAYS:
        return None
    archive_dir = Path(settings.TASK_RETENTION_ARCHIVE_DIR) if settings.TASK_RETENTION_ARCHIVE_DIR else None
    result = tasks_prune(
        older_than=timedelta(days=settings.TASK_RETENTION_DAYS),
        batch_size=settings.TASK_RETENTION_BATCH_SIZE,
        archive_dir=archive_dir,
        pause_seconds=settings.TASK_RETENTION_PAUSE_SECONDS,
        max_seconds=settings.CELERY_TASK_SOFT_TIME_LIMIT / 2,
    )
    logger.info(
        "finished tasks pruned",
        extra={
            "tasks": result.tasks,
            "steps": result.steps,
            "batches": result.batches,
            "batches_gave_way": result.batches_gave_way,
            "archive": str(result.archive or ""),
            "finished_before": result.finished_before.isoformat(),
        },
    )
    return result


def _counted(result: PruneResult, *, batch_size: int) -> PruneResult:
    """A dry run: what a run now would prune (rows a writer holds included: a real run would pass over them)."""
    prunable = prunable_tasks(finished_before=result.finished_before)
    result.tasks = prunable.count()
    result.steps = Step.objects.filter(task__in=prunable).count()
    result.batches = math.ceil(result.tasks / batch_size)
    return result


def _add(result: PruneResult, batch: PruneBatch) -> None:
    result.batch_log.append(batch)
    result.batches += 1
    if batch.gave_way:
        result.batches_gave_way += 1
        return
    result.tasks += batch.tasks
    result.steps += batch.steps
    result.rows += batch.rows
    result.archived_bytes += batch.archived_bytes
    result.json_bytes += batch.json_bytes


def _batch_prune(
    *, number: int, finished_before: datetime, after: UUID | None, size: int, archive: ArchiveFile | None
) -> tuple[PruneBatch | None, UUID | None]:
    """One batch in one transaction; (None, _) when nothing is left. Returns where the next batch starts."""
    started = time.monotonic()
    appended: Appended | None = None
    task_ids: list[UUID] = []
    try:
        with transaction.atomic():
            _waits_bounded()
            task_ids = _batch_lock(finished_before=finished_before, after=after, size=size)
            if not task_ids:
                return None, after
            if archive is not None:
                appended = archive.append(task_lines(task_ids))  # on disk before the delete commits
            steps, rows = _delete(task_ids)
    except OperationalError as error:
        if appended is not None and archive is not None:
            archive.undo(appended)
        reason = _GAVE_WAY.get(getattr(error.__cause__, "sqlstate", None) or "")
        if reason is None or not task_ids:
            raise
        logger.warning("a retention batch gave way to a writer", extra={"reason": reason, "tasks": len(task_ids)})
        return _batch(number, task_ids, started, gave_way=reason), max(task_ids)
    except BaseException:
        if appended is not None and archive is not None:
            archive.undo(appended)
        raise
    return _batch(number, task_ids, started, steps=steps, rows=rows, appended=appended), max(task_ids)


def _batch(
    number: int,
    task_ids: list[UUID],
    started: float,
    *,
    steps: int = 0,
    rows: int = 0,
    appended: Appended | None = None,
    gave_way: str = "",
) -> PruneBatch:
    return PruneBatch(
        number=number,
        tasks=len(task_ids),
        steps=steps,
        rows=rows,
        archived_bytes=appended.compressed_bytes if appended else 0,
        json_bytes=appended.json_bytes if appended else 0,
        seconds=round(time.monotonic() - started, 3),
        gave_way=gave_way,
    )


def _waits_bounded() -> None:
    """This transaction's lock and statement timeouts (set_config(..., true) is SET LOCAL, with parameters)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)",
            [f"{LOCK_TIMEOUT_MS}ms", f"{STATEMENT_TIMEOUT_MS}ms"],
        )


def _batch_lock(*, finished_before: datetime, after: UUID | None, size: int) -> list[UUID]:
    """The next batch's task ids, locked; rows other transactions hold are skipped, not waited for."""
    candidates = prunable_tasks(finished_before=finished_before)
    if after is not None:
        candidates = candidates.filter(pk__gt=after)
    locked = candidates.order_by("pk").select_for_update(skip_locked=True, of=("self",))
    return list(locked.values_list("pk", flat=True)[:size])


def _delete(task_ids: list[UUID]) -> tuple[int, int]:
    """Delete the locked tasks, every row pointing at them and their own vault entries: (steps, rows deleted).

    One DELETE a table by task id: first the models nothing points at, then those others point at (steps), then
    the tasks. Not `QuerySet.delete()`: its collector loads each row as a model instance, and django-fsm then
    fetches a deferred state one query a row (4,000 queries for 500 tasks). Foreign keys are checked at commit
    (Django makes them DEFERRABLE INITIALLY DEFERRED), so a row of a model this missed fails the batch loudly
    instead of being left dangling."""
    scopes = [task_scope(str(task_id)) for task_id in task_ids]
    vaulted, _ = VaultedValue.objects.filter(scope__in=scopes).delete()  # nothing points at it: one DELETE
    relations = sorted(task_relations(), key=lambda rel: bool(relation_model(rel)._meta.related_objects))
    deleted: dict[type[models.Model], int] = {}
    with connection.cursor() as cursor:
        for rel in relations:
            deleted[relation_model(rel)] = _delete_where(cursor, relation_model(rel), rel.field.column, task_ids)
        webhooks = _settled_webhooks_delete(cursor, task_ids)
        tasks = _delete_where(cursor, Task, Task._meta.pk.column, task_ids)
    return deleted.get(Step, 0), vaulted + sum(deleted.values()) + webhooks + tasks


def _settled_webhooks_delete(cursor: CursorWrapper, task_ids: list[UUID]) -> int:
    """The tasks' delivered and failed webhook deliveries, with their attempts and audit. A pending one stays: its
    outcome is still owed to the client (its payload holds everything it sends), so it carries no foreign key."""
    quote = connection.ops.quote_name
    settled = f"SELECT id FROM {quote(WebhookDelivery._meta.db_table)} WHERE task_id = ANY(%s) AND state = ANY(%s)"
    params: list[Any] = [task_ids, [WebhookDeliveryState.DELIVERED.value, WebhookDeliveryState.FAILED.value]]
    rows = 0
    for model in (WebhookAttempt, WebhookAuditEntry):
        cursor.execute(f"DELETE FROM {quote(model._meta.db_table)} WHERE delivery_id IN ({settled})", params)
        rows += cursor.rowcount
    cursor.execute(f"DELETE FROM {quote(WebhookDelivery._meta.db_table)} WHERE id IN ({settled})", params)
    return rows + cursor.rowcount


def _delete_where(cursor: CursorWrapper, model: type[models.Model], column: str, task_ids: list[UUID]) -> int:
    quote = connection.ops.quote_name
    cursor.execute(f"DELETE FROM {quote(model._meta.db_table)} WHERE {quote(column)} = ANY(%s)", [task_ids])
    return cursor.rowcount

"""The retention archive: each pruned task as one JSON line with everything that hangs off it, gzip-compressed.

A run writes one file, `tasks-<UTC time>-<pid>-<random>.jsonl.gz`; each batch appends one gzip member (a reader
such as `gzip.open` or `zcat` sees one stream of lines) and fsyncs it before the batch's delete commits. A batch
that rolls back takes its member off again (the file is cut back to its size before). A crash between the fsync
and the commit leaves lines of tasks that are still in the database and are archived again by the next run: the
archive is at-least-once, and a reader keeps the last line of each task id.

A line is `{"format": 1, "task": {...}, "<relation>": [...], ..., "vaulted_values": [...], "ledger": [...]}`:
the task's row, then the rows of every model with a foreign key to Task under its related name (steps,
transitions, approvals, recovery_decisions, operator_actions, spans: found from the models, so a new one is
archived without a change here), the task's own vault entries (still encrypted: the archive never holds a
revealed value, and is exactly as sensitive as the vault table), and a copy of its tool calls' ledger entries,
which stay in the database (see `orchestration.services.retention`). Each row is as PostgreSQL's `row_to_json`
writes it, keyed by column name: timestamps ISO 8601 to the microsecond, numerics exact, JSON columns as stored.
"""

from __future__ import annotations

import gzip
import json
import os
import secrets
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from uuid import UUID

from django.db import connection, models
from django.db.models import ForeignObjectRel
from django.utils import timezone

from memory.models import VaultedValue
from memory.vault import task_scope
from orchestration.models import Step, StepKind, Task
from tools.models import ToolCallRecord

ARCHIVE_FORMAT = 1


def task_relations() -> list[ForeignObjectRel]:
    """Every model with a foreign key to Task: deleting a task deletes (cascades to) their rows."""
    return [rel for rel in Task._meta.related_objects if rel.one_to_many or rel.one_to_one]


def relation_model(rel: ForeignObjectRel) -> type[models.Model]:
    """The model on the far side of a relation (a class by now: the app registry is ready)."""
    return cast("type[models.Model]", rel.related_model)


def task_lines(task_ids: Sequence[UUID]) -> list[str]:
    """One JSON line per task, in `task_ids` order, with one query per table (not one per task).

    PostgreSQL writes every row (`row_to_json`): nothing is converted on the way through Python, which only joins
    the pieces (and it is several times faster than decoding and encoding each JSON column)."""
    ids = list(task_ids)
    tasks = _rows_by(Task, "id", ids)
    related = {
        rel.get_accessor_name() or rel.name: _rows_by(relation_model(rel), rel.field.column, ids)
        for rel in task_relations()
    }
    scopes = {task_scope(str(task_id)): task_id for task_id in ids}
    vaulted = _rows_by(VaultedValue, "scope", list(scopes))
    related["vaulted_values"] = {scopes[scope]: rows for scope, rows in vaulted.items()}
    related["ledger"] = _ledger_rows(ids)
    return [
        f'{{"format":{ARCHIVE_FORMAT},"task":{tasks[task_id][0]}'
        + "".join(f',"{name}":[{",".join(rows.get(task_id, ()))}]' for name, rows in related.items())
        + "}"
        for task_id in ids
        if task_id in tasks
    ]


def _rows_by(model: type[models.Model], column: str, keys: list[Any]) -> dict[Any, list[str]]:
    """The rows of `model` whose `column` is one of `keys`, as JSON text, grouped by that column, in id order."""
    table, quote = model._meta.db_table, connection.ops.quote_name
    return _grouped(
        f"SELECT t.{quote(column)}, row_to_json(t)::text FROM {quote(table)} t WHERE t.{quote(column)} = ANY(%s) "
        f"ORDER BY t.{quote(model._meta.pk.column)}",
        [keys],
    )


def _ledger_rows(task_ids: list[UUID]) -> dict[Any, list[str]]:
    """The ledger entries of the tasks' tool calls (a call's ledger key is its step's idempotency key)."""
    return _grouped(
        f"SELECT s.task_id, row_to_json(t)::text FROM {ToolCallRecord._meta.db_table} t "
        f"JOIN {Step._meta.db_table} s ON s.idempotency_key = t.idempotency_key "
        "WHERE s.task_id = ANY(%s) AND s.kind = %s ORDER BY t.id",
        [task_ids, StepKind.TOOL_CALL.value],
    )


def _grouped(sql: str, params: list[Any]) -> dict[Any, list[str]]:
    grouped: defaultdict[Any, list[str]] = defaultdict(list)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for key, row in cursor.fetchall():
            grouped[key].append(row)
    return grouped


@dataclass(frozen=True)
class Appended:
    offset: int
    """The file's size before this member: where `ArchiveFile.undo` cuts it back to."""
    compressed_bytes: int
    json_bytes: int


class ArchiveFile:
    """One run's archive file, created on the first append (a run that prunes nothing leaves no file)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)  # fails before the first batch if the place is unusable
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        self.path = directory / f"tasks-{stamp}-{os.getpid()}-{secrets.token_hex(3)}.jsonl.gz"

    def append(self, lines: Sequence[str]) -> Appended:
        """The lines as one gzip member at the end of the file, on disk (fsynced) when this returns."""
        data = "".join(f"{line}\n" for line in lines).encode()
        member = gzip.compress(data, mtime=0)
        created = not self.path.exists()
        with self.path.open("ab") as archive:
            offset = archive.tell()
            archive.write(member)
            archive.flush()
            os.fsync(archive.fileno())
        if created:
            _fsync_directory(self.path.parent)  # the new file's name survives a crash too
        return Appended(offset=offset, compressed_bytes=len(member), json_bytes=len(data))

    def undo(self, appended: Appended) -> None:
        """Take a member off again: its batch rolled back, its tasks are still in the database."""
        os.truncate(self.path, appended.offset)
        if appended.offset == 0:
            self.path.unlink()


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def archive_read(path: Path) -> list[dict[str, Any]]:
    """The documents of an archive file, in the order written (for a restore, an audit, and the tests)."""
    with gzip.open(path, "rt", encoding="utf-8") as archive:
        return [json.loads(line) for line in archive if line.strip()]

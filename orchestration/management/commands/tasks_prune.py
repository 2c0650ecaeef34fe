"""Archive and delete finished tasks older than an age, in batches that never hold locks for long.

    manage.py tasks_prune --archive-dir /var/archive/tasks          # TASK_RETENTION_DAYS (30) and older
    manage.py tasks_prune --older-than-days 90 --batch-size 200 --archive-dir ...
    manage.py tasks_prune --dry-run                                  # counts only

Without --archive-dir the tasks are deleted without a copy (it says so). One line per batch, then a summary;
plain text, flushed line by line, so it reads the same in a terminal, a log file or a pipe.
"""

from __future__ import annotations

from argparse import ArgumentParser
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from orchestration.services.retention import PruneBatch, PruneResult, tasks_prune


class Command(BaseCommand):
    help = "Archive (with --archive-dir) and delete finished tasks older than an age, in short batches."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--older-than-days",
            type=int,
            default=None,
            help=f"age of the tasks to prune, by when they finished (default TASK_RETENTION_DAYS, now "
            f"{settings.TASK_RETENTION_DAYS}; 0 there means retention is off)",
        )
        parser.add_argument(
            "--batch-size", type=int, default=settings.TASK_RETENTION_BATCH_SIZE, help="tasks per transaction"
        )
        parser.add_argument(
            "--archive-dir", type=Path, default=None, help="write each task as a JSON line (gzip) here first"
        )
        parser.add_argument(
            "--pause-seconds",
            type=float,
            default=settings.TASK_RETENTION_PAUSE_SECONDS,
            help="sleep between batches, so writers get the database",
        )
        parser.add_argument("--dry-run", action="store_true", help="count what would go; change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["older_than_days"] if options["older_than_days"] is not None else settings.TASK_RETENTION_DAYS
        if days < 1:
            raise CommandError("retention is off (TASK_RETENTION_DAYS=0): pass --older-than-days N (1 or more)")
        if options["batch_size"] < 1 or options["pause_seconds"] < 0:
            raise CommandError("--batch-size must be at least 1 and --pause-seconds at least 0")
        archive_dir: Path | None = options["archive_dir"]
        if archive_dir is None and not options["dry_run"]:
            self._line("no --archive-dir: tasks are deleted without an archive")
        result = tasks_prune(
            older_than=timedelta(days=days),
            batch_size=options["batch_size"],
            archive_dir=archive_dir,
            dry_run=options["dry_run"],
            pause_seconds=options["pause_seconds"],
            on_batch=self._batch_line,
        )
        self._line(self._summary(result, days=days, archive_dir=archive_dir))

    def _line(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()  # a pipe or file sees each batch as it ends, not all at exit

    def _batch_line(self, batch: PruneBatch) -> None:
        if batch.gave_way:
            self._line(
                f"batch {batch.number}: {batch.tasks} tasks left for the next run ({batch.gave_way}: a writer holds "
                f"one of their rows), {batch.seconds:.2f} s"
            )
            return
        archived = f", {batch.archived_bytes} bytes archived" if batch.archived_bytes else ""
        self._line(
            f"batch {batch.number}: {batch.tasks} tasks, {batch.steps} steps, {batch.rows} rows deleted{archived}, "
            f"{batch.seconds:.2f} s"
        )

    def _summary(self, result: PruneResult, *, days: int, archive_dir: Path | None) -> str:
        cutoff = result.finished_before.isoformat(timespec="seconds")
        if result.dry_run:
            return (
                f"dry run: {result.tasks} tasks ({result.steps} steps) finished before {cutoff} ({days} days) would "
                f"go in {_batches(result.batches)}; nothing was changed"
            )
        where = f"archived to {result.archive} ({result.archived_bytes} bytes)" if result.archive else "not archived"
        if archive_dir is not None and result.archive is None:
            where = f"nothing to archive in {archive_dir}"
        gave_way = (
            f", {result.batches_gave_way} gave way to writers (their tasks go next run)"
            if result.batches_gave_way
            else ""
        )
        return (
            f"pruned {result.tasks} tasks ({result.steps} steps, {result.rows} rows) finished before {cutoff} "
            f"({days} days) in {_batches(result.batches)}{gave_way}, {result.seconds:.1f} s; {where}"
        )


def _batches(count: int) -> str:
    return f"{count} batch" if count == 1 else f"{count} batches"

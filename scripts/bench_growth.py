"""Database growth: what a task and a step cost in PostgreSQL, and what retention gives back.

N demo tasks ("Look up order A-1001": model turn, tool call, model turn, the offline model) run in this process on
the worker's own code path (`task_run`), in a fresh database (`bench_growth`; DATABASE_URL overrides). Sizes come
from PostgreSQL, per table, indexes and TOAST included, each read after VACUUM ANALYZE:

- on disk: the growth of `pg_total_relation_size`. Files grow a page (8 KiB) at a time and a task's row is
  rewritten several times while it runs (each update a new row version until VACUUM reclaims it), so the figure
  includes the free space those updates leave inside pages, and it means something only over many tasks (1,000);
- row data: `pg_column_size` of each live row, as stored (TOASTed values compressed): the floor, without pages,
  row headers or indexes.

Retention then prunes the older half (`tasks_prune`, archiving to a temporary directory): its time and batches,
and what it frees. Deleting rows does not shrink files (only VACUUM FULL or pg_repack does, under an exclusive
lock): the files are measured right after the pass (unchanged), after VACUUM (the space is marked free,
`pg_freespacemap`), and after running as many new tasks again, whose growth shows how much of it was reused.

    python scripts/bench_growth.py --tasks 500      # prints one JSON document
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GOAL, INPUT = "Look up order A-1001", {"order_number": "A-1001"}
TOP_TABLES = 8

SIZES = """
    SELECT c.relname, pg_total_relation_size(c.oid), pg_relation_size(c.oid), pg_indexes_size(c.oid),
           COALESCE(pg_total_relation_size(NULLIF(c.reltoastrelid, 0::oid)), 0)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind = 'r'
"""


def growth(*, tasks: int) -> dict[str, Any]:
    """Bytes per task and per step, by table; then a retention pass over the older half and what it freed."""
    from django.contrib.auth.models import User

    from orchestration.models import Step, Task
    from shop.services import orders_seed_demo

    orders_seed_demo()
    owner, _ = User.objects.get_or_create(username="bench-growth")
    _run_tasks(owner, 3)  # first-use rows (agent, contracts, prices) are not a task's cost
    before, free_before = _sizes(), _free_bytes()
    ran = _run_tasks(owner, tasks)
    after, free_after = _sizes(), _free_bytes()
    steps = Step.objects.filter(task_id__in=ran).count()
    tables = _by_table(before, after, tasks=tasks)
    total = sum(table["disk_bytes"] for table in tables.values())
    row_bytes = sum(table["row_bytes"] for table in tables.values())
    figures: dict[str, Any] = {
        "tasks": tasks,
        "steps": steps,
        "steps_per_task": round(steps / tasks, 2),
        "disk_bytes_per_task": round(total / tasks),
        # Less the free space the run's own updates left in the pages (VACUUM marked it; later tasks fill it):
        # what a task keeps occupying once the database is in a steady state.
        "occupied_bytes_per_task": round((total - (free_after - free_before)) / tasks)
        if free_before is not None and free_after is not None
        else None,
        "disk_bytes_per_step_all_tables": round(total / steps),
        "row_bytes_per_task": round(row_bytes / tasks),
        "disk_bytes_per_step_step_table": round(tables.get(Step._meta.db_table, {}).get("disk_bytes", 0) / steps),
        "top_tables": dict(sorted(tables.items(), key=lambda item: -item[1]["disk_bytes"])[:TOP_TABLES]),
    }
    finished = list(Task.objects.filter(pk__in=ran).order_by("finished_at").values_list("finished_at", flat=True))
    last_to_go = finished[tasks // 2 - 1]
    figures["retention"] = _retention(owner, last_to_go, after, first_growth_per_task=total / tasks)
    return figures


def _run_tasks(owner: Any, count: int) -> list[uuid.UUID]:
    from orchestration.services.execution import task_run
    from orchestration.services.submission import task_submit
    from orchestration.tracing import new_trace_id

    ids = []
    for _ in range(count):
        task = task_submit(
            owner=owner, goal=GOAL, task_input=dict(INPUT), session_id="", agent="default", metadata={},
            idempotency_key=f"bench-{uuid.uuid4().hex}", trace_id=new_trace_id(),
        ).task  # fmt: skip
        task_run(task_id=str(task.pk), worker="bench")
        ids.append(task.pk)
    return ids


def _retention(
    owner: Any, last_to_go: datetime, measured: dict[str, dict[str, int]], *, first_growth_per_task: float
) -> dict[str, Any]:
    """Prune every task that finished by `last_to_go` (the older half, and the warm-up tasks), see what the files
    do, then run as many new tasks again: what they grow the files by, against what as many grew them by before."""
    from django.utils import timezone

    from orchestration.services.retention import tasks_prune

    free_before = _free_bytes()  # `measured` was read after a VACUUM: the free space map is current
    with tempfile.TemporaryDirectory() as archive_dir:
        started = time.perf_counter()
        result = tasks_prune(
            older_than=timezone.now() - last_to_go - timedelta(microseconds=1), archive_dir=Path(archive_dir),
            batch_size=500, pause_seconds=0,
        )  # fmt: skip
        seconds = time.perf_counter() - started
    right_after = _sizes(vacuum=False)
    vacuumed = _sizes()
    free_after = _free_bytes()
    regrown = _run_tasks(owner, result.tasks)
    regrown_sizes = _sizes()
    pruned = max(result.tasks, 1)
    return {
        "tasks_pruned": result.tasks,
        "steps_pruned": result.steps,
        "rows_deleted": result.rows,
        "batches": result.batches,
        "seconds": round(seconds, 2),
        "tasks_per_second": round(result.tasks / seconds) if seconds else None,
        "archive_bytes_per_task": round(result.archived_bytes / pruned),
        "archive_json_bytes_per_task": round(result.json_bytes / pruned),
        "rows_deleted_by_table": {
            name: table["rows"] - right_after[name]["rows"]
            for name, table in measured.items()
            if right_after[name]["rows"] != table["rows"]
        },
        "disk_bytes_before": _total(measured),
        "disk_bytes_right_after": _total(right_after),
        "disk_bytes_after_vacuum": _total(vacuumed),
        "free_bytes_before": free_before,
        "free_bytes_after_vacuum": free_after,
        "regrowth": {
            "tasks": len(regrown),
            "disk_bytes_grown": _total(regrown_sizes) - _total(vacuumed),
            "as_many_grew_them_the_first_time": round(first_growth_per_task * len(regrown)),
        },
    }


def _sizes(*, vacuum: bool = True) -> dict[str, dict[str, int]]:
    """Every table: on disk (all of it, heap, indexes, TOAST), its live rows and their data."""
    from django.db import connection

    with connection.cursor() as cursor:
        if vacuum:
            cursor.execute("VACUUM (ANALYZE)")  # dead row versions reclaimed, free space map current
        cursor.execute(SIZES)
        sizes = {
            name: {"disk_bytes": total, "heap_bytes": heap, "index_bytes": indexes, "toast_bytes": toast}
            for name, total, heap, indexes, toast in cursor.fetchall()
        }
        for name, table in sizes.items():
            cursor.execute(f'SELECT count(*), COALESCE(sum(pg_column_size(t.*)), 0) FROM "{name}" t')
            table["rows"], row_bytes = cursor.fetchone()
            table["row_bytes"] = int(row_bytes)
    return sizes


def _total(sizes: dict[str, dict[str, int]]) -> int:
    return sum(table["disk_bytes"] for table in sizes.values())


def _by_table(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], *, tasks: int) -> dict[str, Any]:
    """Each table that grew: by how much on disk (and heap, indexes, TOAST), its new rows and their data."""
    grown = {}
    for name, now in after.items():
        was = before.get(name, dict.fromkeys(now, 0))
        delta = {key: now[key] - was[key] for key in now}
        if delta["disk_bytes"] > 0 or delta["rows"] > 0:
            grown[name] = {**delta, "disk_bytes_per_task": round(delta["disk_bytes"] / tasks)}
    return grown


def _free_bytes() -> int | None:
    """Free space PostgreSQL will reuse in the tables' heaps and TOAST (pg_freespacemap), or None without it."""
    from django.db import DatabaseError, connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_freespacemap")
            cursor.execute(
                "SELECT COALESCE(sum(f.avail), 0) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, "
                "LATERAL pg_freespace(c.oid) f WHERE n.nspname IN ('public', 'pg_toast') AND c.relkind IN ('r', 't')"
            )
            return int(cursor.fetchone()[0])
    except DatabaseError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    tasks = parser.parse_args().tasks
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/13")
    from scripts.bench_setup import bench_django

    bench_django("bench_growth")
    try:
        print(json.dumps({"benchmark": "database growth", **growth(tasks=tasks)}, indent=2))
    finally:
        import redis

        redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()  # the submissions' wake-up messages


if __name__ == "__main__":
    main()

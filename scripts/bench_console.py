"""`make bench-console`: how fast the operator console answers on a big table, on PostgreSQL.

Seeds a database of its own (`bench_console`, dropped and created afresh; DATABASE_URL overrides) with TASKS tasks, some
of them waiting in the manual queue for several reasons, and one task of STEPS steps; then times the queue page
(unfiltered and filtered), a search, and that task's page through Django's whole request path (middleware,
admin, templates) in this process, and prints one JSON document plus a table. Figures, not assertions: the
machine is shared. The CI suite runs it small, as a smoke check (tests/test_bench_console.py).

    make bench-console                    # 100,000 tasks, a 200-step task, 30 requests a page
    BENCH_TASKS=20000 make bench-console
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REASONS = ["retries_exhausted", "approval_needed", "agent_asked", "dictionary_handoff", "model_unavailable"]
TOOLS = ["refund_order", "update_shipping_address", "lookup_order", "", "add_order_note"]
CODES = ["ORDER_LOCKED", "APPROVAL_REQUIRED", "", "ORDER_ALREADY_SHIPPED", ""]


def seed(*, tasks: int, queued: int, steps: int) -> str:
    """Tasks in bulk (the queue's share in MANUAL_REVIEW), and one queued task of `steps` steps; its id."""
    from django.contrib.auth.models import User
    from django.utils import timezone

    from orchestration.models import RecoveryDecision, Step, StepKind, StepState, Task, TaskState, TaskTransition

    owner, _ = User.objects.get_or_create(username="bench-client")
    now = timezone.now()
    batch: list[Task] = []
    for n in range(tasks):
        batch.append(Task(owner=owner, **_task_fields(n, queued=n < queued, now=now)))
        if len(batch) == 5000:
            Task.objects.bulk_create(batch)
            batch.clear()
    Task.objects.bulk_create(batch)
    long = Task.objects.filter(owner=owner, state=TaskState.MANUAL_REVIEW).order_by("handed_off_at").first()
    assert long is not None
    snapshot = {"input": [{"role": "user", "content": "x" * 400}] * 3}
    Step.objects.bulk_create(
        Step(
            task=long,
            seq=seq,
            kind=StepKind.MODEL_TURN if seq % 2 else StepKind.TOOL_CALL,
            ref=f"bench:{seq}",
            name="offline" if seq % 2 else "lookup_order",
            idempotency_key=f"bench-{long.pk}-{seq}",
            trace_id=long.trace_id,
            input=snapshot,
            output={"ok": True, "data": {"n": seq}},
            started_at=now,
            finished_at=now,
            duration_ms=5,
            state=StepState.SUCCEEDED if seq < steps else StepState.FAILED,
        )
        for seq in range(1, steps + 1)
    )
    TaskTransition.objects.bulk_create(
        TaskTransition(task=long, name="start_tool", from_state="PLANNED", to_state="TOOL_RUNNING", actor="bench")
        for _ in range(steps // 2)
    )
    RecoveryDecision.objects.bulk_create(
        RecoveryDecision(task=long, event="tool_error", action="retry", what="bench", rule="bench", actor="bench")
        for _ in range(20)
    )
    return str(long.pk)


def _task_fields(n: int, *, queued: bool, now: Any) -> dict[str, Any]:
    kind = n % len(REASONS)
    fields: dict[str, Any] = {
        "idempotency_key": f"bench-{uuid.uuid4().hex}",
        "request_hash": "0" * 64,
        "trace_id": uuid.uuid4().hex,
        "goal": f"Bench task {n}: refund order A-{1000 + n % 9000}",
        "input": {"order_number": f"A-{1000 + n % 9000}"},
        "agent": "default",
        "state_reason": "bench",
    }
    if not queued:
        return {**fields, "state": "COMPLETED", "result": {"output": "done"}}
    return {
        **fields,
        "state": "MANUAL_REVIEW",
        "handoff_reason": REASONS[kind],
        "handoff_tool": TOOLS[kind],
        "handoff_error_code": CODES[kind],
        "handed_off_at": now - timedelta(minutes=n % 600),
    }


def measure(*, requests: int, long_task: str) -> dict[str, Any]:
    """p50/p95 in milliseconds per page, for an operator logged in through the real session middleware."""
    from django.contrib.auth.models import Group, User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    operator, created = User.objects.get_or_create(username="bench-operator", defaults={"is_staff": True})
    if created:
        operator.groups.add(Group.objects.get(name="operators"))
    client = Client(HTTP_HOST="localhost")
    client.force_login(operator)
    pages = {
        "queue": "/admin/orchestration/queuetask/",
        "queue, one reason": "/admin/orchestration/queuetask/?handoff_reason__exact=retries_exhausted",
        "queue, search": "/admin/orchestration/queuetask/?q=A-1042",
        "task page": f"/admin/orchestration/task/{long_task}/change/",
    }
    figures: dict[str, Any] = {}
    for name, url in pages.items():
        assert client.get(url).status_code == 200, url  # warm caches and templates
        timings = []
        for _ in range(requests):
            started = time.perf_counter()
            with CaptureQueriesContext(connection) as queries:
                response = client.get(url)
            timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, url
        timings.sort()
        figures[name] = {
            "p50_ms": round(statistics.median(timings), 1),
            "p95_ms": round(timings[min(len(timings) - 1, int(len(timings) * 0.95))], 1),
            "queries": len(queries),
            "bytes": len(response.content),
        }
    return figures


def figures_for(*, tasks: int, steps: int = 200, requests: int = 30) -> dict[str, Any]:
    """Seed a database of `tasks` tasks (a fiftieth of them queued) and a `steps`-step task, and time the pages."""
    from django.db import connection

    queued = max(1, tasks // 50)
    started = time.perf_counter()
    long_task = seed(tasks=tasks, queued=queued, steps=steps)
    seeded = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    pages = measure(requests=requests, long_task=long_task)
    return {
        "tasks": tasks, "queued": queued, "steps_on_task_page": steps, "requests_per_page": requests,
        "seed_seconds": round(seeded, 1), **pages,
    }  # fmt: skip


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from scripts.bench_setup import bench_django

    bench_django("bench_console")
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        postgres = cursor.fetchone()[0].split(",")[0]
    figures = figures_for(
        tasks=int(os.environ.get("BENCH_TASKS", "100000")),
        steps=int(os.environ.get("BENCH_STEPS", "200")),
        requests=int(os.environ.get("BENCH_REQUESTS", "30")),
    )
    machine = {"cores": os.cpu_count(), "python": platform.python_version(), "postgres": postgres}
    print(json.dumps({"benchmark": "operator console", **figures, "machine": machine}, indent=2))
    print(f"\n{'page':<20}{'p50 ms':>10}{'p95 ms':>10}{'queries':>10}")
    for name, page in figures.items():
        if isinstance(page, dict):
            print(f"{name:<20}{page['p50_ms']:>10}{page['p95_ms']:>10}{page['queries']:>10}")


if __name__ == "__main__":
    main()

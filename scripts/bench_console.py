"""`make bench-console`: how fast the operator console answers on a big table, on PostgreSQL.

Seeds a database of its own (`bench_console`, dropped and created afresh; DATABASE_URL overrides) with TASKS tasks of
STEPS_PER_TASK steps each, some of them waiting in the manual queue for several reasons (with the recovery decisions
that sent them there), every task's transitions, and one queued task of STEPS steps. The rows are written by
set-based SQL (INSERT ... SELECT over generate_series, a batch of tasks a statement): a million steps in under a
minute on two cores, where the ORM would take many. Then it times the queue page (unfiltered and filtered), a
search, three task pages (the long task, an ordinary queued one, an ordinary completed one) and the task list
(unfiltered, filtered, searched) through Django's whole request path (middleware, admin, templates) in this process,
and prints one JSON document plus a table. Figures, not assertions: the machine is shared. The CI suite runs it
small, as a smoke check (tests/test_bench_console.py).

    make bench-console                    # 100,000 tasks x 10 steps (1,000,000 steps), a 200-step task, 30 requests
    BENCH_TASKS=20000 make bench-console  # also BENCH_STEPS_PER_TASK, BENCH_STEPS, BENCH_REQUESTS
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
REASONS = ["retries_exhausted", "approval_needed", "agent_asked", "dictionary_handoff", "model_unavailable"]
TOOLS = ["refund_order", "update_shipping_address", "lookup_order", "", "add_order_note"]
CODES = ["ORDER_LOCKED", "APPROVAL_REQUIRED", "", "ORDER_ALREADY_SHIPPED", ""]
STEP_TOOLS = ["lookup_order", "update_shipping_address", "add_order_note", "refund_order"]
BATCH_TASKS = 10_000  # tasks per statement: 100,000 step rows at 10 steps a task, a few seconds each

# Tasks 0 .. queued-1 wait in the manual queue (handed off up to ten hours ago), the rest completed over the last 30
# days, newest first. Tokens and cost are those of the model turns their steps below record (roughly).
TASKS_SQL = """
INSERT INTO orchestration_task (
    id, owner_id, idempotency_key, request_hash, trace_id, goal, input, session_id, agent, metadata, state,
    state_reason, result, handoff_reason, handoff_tool, handoff_error_code, handed_off_at, input_tokens,
    output_tokens, cost, replans, lease_owner, created_at, updated_at, finished_at
)
SELECT
    gen_random_uuid(), %(owner)s, 'bench-' || n, md5(n::text) || md5((-n)::text), md5('trace:' || n),
    'Bench task ' || n || ': refund order A-' || (1000 + n %% 9000),
    jsonb_build_object('order_number', 'A-' || (1000 + n %% 9000)), '', 'default', '{}', q.state,
    CASE WHEN q.queued THEN 'handed off: ' || q.reason ELSE 'the model gave its final answer' END,
    CASE WHEN q.queued THEN NULL ELSE '{"output": "done"}'::jsonb END,
    CASE WHEN q.queued THEN q.reason ELSE '' END,
    CASE WHEN q.queued THEN (%(tools)s::text[])[1 + n %% 5] ELSE '' END,
    CASE WHEN q.queued THEN (%(codes)s::text[])[1 + n %% 5] ELSE '' END,
    q.handed_off_at, %(turns)s * 900, %(turns)s * 60, %(turns)s * 0.000456, 0, '', q.created_at,
    coalesce(q.handed_off_at, f.finished_at), f.finished_at
FROM generate_series(0, %(tasks)s - 1) AS n
CROSS JOIN LATERAL (
    SELECT
        n < %(queued)s AS queued,
        CASE WHEN n < %(queued)s THEN 'MANUAL_REVIEW' ELSE 'COMPLETED' END AS state,
        (%(reasons)s::text[])[1 + n %% 5] AS reason,
        CASE WHEN n < %(queued)s THEN %(now)s - (n %% 600) * interval '1 minute' END AS handed_off_at,
        CASE
            WHEN n < %(queued)s THEN %(now)s - (n %% 600) * interval '1 minute' - interval '10 minutes'
            ELSE %(now)s - (n + 1) * (interval '30 days' / %(tasks)s)
        END AS created_at
) AS q
CROSS JOIN LATERAL (
    SELECT CASE WHEN NOT q.queued THEN q.created_at + %(run)s * interval '1 second' END AS finished_at
) AS f
"""

# `steps` steps for each task of a batch: model turns and tool calls alternating (two calls of one turn where the
# count needs it), 1.5 s apart from the task's creation. A completed task ends with its final model turn; a queued one
# with the failed tool call that sent it to a human. One tool call in 25 elsewhere failed and went back to the model.
STEPS_SQL = """
INSERT INTO orchestration_step (
    task_id, seq, kind, ref, name, state, attempt, idempotency_key, trace_id, input, output, started_at, deadline_at,
    finished_at, duration_ms, input_tokens, output_tokens, cost, retries_forgiven, decided_by
)
SELECT
    t.id, s.seq, c.kind, c.ref, c.name, CASE WHEN c.failed THEN 'FAILED' ELSE 'SUCCEEDED' END,
    CASE WHEN k.handed_off AND t.handoff_reason = 'retries_exhausted' THEN 3 ELSE 1 END,
    'u' || t.owner_id || ':' || t.idempotency_key || ':' || c.ref, t.trace_id,
    CASE
        WHEN k.model THEN jsonb_build_object(
            'model', 'offline', 'turn', s.seq / 2 + 1,
            'input', jsonb_build_array(jsonb_build_object('role', 'user', 'content', t.goal))
        )
        ELSE t.input
    END,
    CASE
        WHEN k.model AND s.seq = %(steps)s THEN
            jsonb_build_object('output_text', 'Refunded ' || (t.input->>'order_number'))
        WHEN k.model THEN jsonb_build_object('output', jsonb_build_array(
            jsonb_build_object('type', 'function_call', 'name', c.name, 'call_id', 'call_' || (s.seq + 1))
        ))
        WHEN c.failed THEN jsonb_build_object(
            'ok', false, 'data', NULL, 'error_code', coalesce(nullif(t.handoff_error_code, ''), 'ORDER_LOCKED'),
            'error_message', 'the order is locked by another process', 'retryable', true
        )
        ELSE jsonb_build_object(
            'ok', true, 'data', jsonb_build_object('order_number', t.input->>'order_number', 'status', 'shipped'),
            'error_code', NULL, 'error_message', NULL, 'retryable', false
        )
    END,
    c.started_at, c.started_at + CASE WHEN k.model THEN interval '60 seconds' ELSE interval '30 seconds' END,
    c.started_at + c.duration_ms * interval '1 millisecond', c.duration_ms,
    CASE WHEN k.model THEN 600 + 150 * (s.seq / 2) ELSE 0 END, CASE WHEN k.model THEN 40 + r.h %% 80 ELSE 0 END,
    CASE WHEN k.model THEN (600 + 150 * (s.seq / 2)) * 0.0000004 + (40 + r.h %% 80) * 0.0000016 ELSE 0 END, 0, ''
FROM orchestration_task AS t
CROSS JOIN LATERAL (SELECT hashtext(t.id::text) & 65535 AS h) AS r
CROSS JOIN generate_series(1, %(steps)s) AS s(seq)
CROSS JOIN LATERAL (
    SELECT
        t.state = 'MANUAL_REVIEW' AND s.seq = %(steps)s AS handed_off,
        CASE
            WHEN t.state = 'MANUAL_REVIEW' THEN s.seq %% 2 = 1 AND s.seq < %(steps)s
            ELSE s.seq %% 2 = 1 OR s.seq = %(steps)s
        END AS model
) AS k
CROSS JOIN LATERAL (
    SELECT
        CASE WHEN k.model THEN 'model_turn' ELSE 'tool_call' END AS kind,
        CASE WHEN k.model THEN 'turn:' || (s.seq / 2 + 1) ELSE 'call:' || (s.seq / 2) || ':call_' || s.seq END AS ref,
        CASE
            WHEN k.model THEN 'offline'
            WHEN k.handed_off THEN coalesce(nullif(t.handoff_tool, ''), 'lookup_order')
            ELSE (%(tools)s::text[])[1 + (r.h + s.seq / 2) %% 4]
        END AS name,
        k.handed_off OR (NOT k.model AND (r.h + s.seq) %% 25 = 0) AS failed,
        t.created_at + (s.seq - 1) * interval '1500 milliseconds' AS started_at,
        CASE WHEN k.model THEN 300 + (r.h + 37 * s.seq) %% 700 ELSE 20 + (r.h + 13 * s.seq) %% 180 END AS duration_ms
) AS c
WHERE t.id = ANY(%(ids)s)
ORDER BY t.created_at, s.seq
"""

# Five per task: submitted, planned, one tool call, and how it ended (completed, or handed off by a failed call).
TRANSITIONS_SQL = """
INSERT INTO orchestration_tasktransition (task_id, name, from_state, to_state, actor, reason, created_at)
SELECT t.id, m.name, m.from_state, m.to_state, m.actor, m.reason, m.at
FROM orchestration_task AS t
CROSS JOIN LATERAL (VALUES
    ('submit', '', 'RECEIVED', 'user:bench-client', '', t.created_at),
    ('plan', 'RECEIVED', 'PLANNED', 'worker:bench:1', '', t.created_at + interval '1 second'),
    ('start_tool', 'PLANNED', 'TOOL_RUNNING', 'worker:bench:1', '', t.created_at + interval '2 seconds'),
    ('finish_tool', 'TOOL_RUNNING', 'PLANNED', 'worker:bench:1', '', t.created_at + interval '3 seconds'),
    (
        CASE WHEN t.state = 'MANUAL_REVIEW' THEN 'hand_off' ELSE 'complete' END,
        CASE WHEN t.state = 'MANUAL_REVIEW' THEN 'TOOL_RUNNING' ELSE 'PLANNED' END,
        t.state, 'worker:bench:1', t.state_reason, t.updated_at
    )
) AS m(name, from_state, to_state, actor, reason, at)
WHERE t.id = ANY(%(ids)s)
ORDER BY t.created_at, m.at
"""

# What sent each queued task to a human, as the recovery policy recorded it on the failed call: two retries and a
# handoff when retries ran out, one handoff otherwise. The long task has decisions of its own (seed()).
DECISIONS_SQL = """
INSERT INTO orchestration_recoverydecision (
    task_id, step_id, event, action, what, rule, attempt, attempt_started_at, next_attempt_at, envelope, actor,
    created_at
)
SELECT
    t.id, s.id, CASE WHEN t.handoff_reason = 'model_unavailable' THEN 'model_error' ELSE 'tool_error' END,
    CASE WHEN a.attempt < s.attempt THEN 'retry' ELSE 'handoff' END,
    s.name || ' failed: ' || (s.output->>'error_code'),
    CASE
        WHEN a.attempt < s.attempt THEN 'retryable error: retry after a backoff'
        ELSE 'hand off: ' || t.handoff_reason
    END,
    a.attempt, s.started_at, CASE WHEN a.attempt < s.attempt THEN s.finished_at + a.attempt * interval '2 seconds' END,
    s.output, 'worker:bench:1', s.finished_at + a.attempt * interval '1 millisecond'
FROM orchestration_task AS t
JOIN orchestration_step AS s ON s.task_id = t.id AND s.state = 'FAILED' AND s.seq = %(steps)s
CROSS JOIN LATERAL generate_series(1, s.attempt) AS a(attempt)
WHERE t.owner_id = %(owner)s AND t.state = 'MANUAL_REVIEW' AND t.id <> %(long)s
ORDER BY t.created_at, a.attempt
"""


class Seeded(NamedTuple):
    """What the pages are timed on, and what seeding wrote. (A named tuple, not a dataclass: the suite loads this
    script without registering it in sys.modules, which dataclasses need.)"""

    long_task: str  # queued, the oldest in the queue, with `steps` steps
    queued_task: str  # queued, with steps_per_task steps
    completed_task: str  # completed, with steps_per_task steps
    steps: int  # rows in the step table
    transitions: int
    decisions: int
    task_seconds: float
    step_seconds: float  # steps, transitions and decisions


def seed(*, tasks: int, queued: int, steps: int, steps_per_task: int = 10) -> Seeded:
    """`tasks` tasks (the first `queued` in MANUAL_REVIEW) of `steps_per_task` steps each, their transitions and
    the queued ones' recovery decisions; the oldest queued task gets `steps` steps instead."""
    from django.contrib.auth.models import User
    from django.db import connection
    from django.utils import timezone

    from orchestration.models import RecoveryDecision, Step, Task, TaskState, TaskTransition

    assert 0 < queued < tasks and steps > 0 and steps_per_task > 0, "queued and completed tasks, with steps"
    owner, _ = User.objects.get_or_create(username="bench-client")
    started = time.perf_counter()
    run = steps_per_task * 1.5 + 1  # seconds from submission to the final answer, as the steps below take
    with connection.cursor() as cursor:
        cursor.execute(
            TASKS_SQL,
            {
                "owner": owner.pk, "tasks": tasks, "queued": queued, "now": timezone.now(),
                "turns": steps_per_task // 2 + 1, "run": run, "reasons": REASONS, "tools": TOOLS,
                "codes": CODES,
            },
        )  # fmt: skip
    task_seconds = time.perf_counter() - started
    mine = Task.objects.filter(owner=owner)
    long = mine.filter(state=TaskState.MANUAL_REVIEW).order_by("handed_off_at", "pk").first()
    assert long is not None
    started = time.perf_counter()
    ids = list(mine.exclude(pk=long.pk).order_by("created_at", "pk").values_list("pk", flat=True))
    with connection.cursor() as cursor:
        cursor.execute(STEPS_SQL, {"ids": [long.pk], "steps": steps, "tools": STEP_TOOLS})
        for at in range(0, len(ids), BATCH_TASKS):
            batch = ids[at : at + BATCH_TASKS]
            cursor.execute(STEPS_SQL, {"ids": batch, "steps": steps_per_task, "tools": STEP_TOOLS})
            cursor.execute(TRANSITIONS_SQL, {"ids": batch})
        cursor.execute(TRANSITIONS_SQL, {"ids": [long.pk]})
        cursor.execute(DECISIONS_SQL, {"owner": owner.pk, "long": long.pk, "steps": steps_per_task})
    # The long task's own story: many tool calls, and a long run of retries before it was handed off.
    TaskTransition.objects.bulk_create(
        TaskTransition(task=long, name="start_tool", from_state="PLANNED", to_state="TOOL_RUNNING", actor="bench")
        for _ in range(steps // 2)
    )
    RecoveryDecision.objects.bulk_create(
        RecoveryDecision(task=long, event="tool_error", action="retry", what="bench", rule="bench", actor="bench")
        for _ in range(20)
    )
    step_seconds = time.perf_counter() - started
    queued_task = mine.filter(state=TaskState.MANUAL_REVIEW).exclude(pk=long.pk).order_by("handed_off_at").first()
    completed_task = mine.filter(state=TaskState.COMPLETED).order_by("created_at")[(tasks - queued) // 2]
    assert queued_task is not None
    return Seeded(
        long_task=str(long.pk),
        queued_task=str(queued_task.pk),
        completed_task=str(completed_task.pk),
        steps=Step.objects.count(),
        transitions=TaskTransition.objects.count(),
        decisions=RecoveryDecision.objects.count(),
        task_seconds=task_seconds,
        step_seconds=step_seconds,
    )


def measure(*, requests: int, seeded: Seeded) -> dict[str, Any]:
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
    pages = pages_of(seeded)
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


def pages_of(seeded: Seeded) -> dict[str, str]:
    """The pages timed, by name. There is no step list in the admin: a task's steps are shown on its page."""
    task_page = "/admin/orchestration/task/{}/change/"
    return {
        "queue": "/admin/orchestration/queuetask/",
        "queue, one reason": "/admin/orchestration/queuetask/?handoff_reason__exact=retries_exhausted",
        "queue, search": "/admin/orchestration/queuetask/?q=A-1042",
        "task page": task_page.format(seeded.long_task),
        "task page, queued": task_page.format(seeded.queued_task),
        "task page, completed": task_page.format(seeded.completed_task),
        "task list": "/admin/orchestration/task/",
        "task list, one state": "/admin/orchestration/task/?state__exact=COMPLETED",
        "task list, search": "/admin/orchestration/task/?q=A-1042",
    }


def figures_for(*, tasks: int, steps: int = 200, requests: int = 30, steps_per_task: int = 10) -> dict[str, Any]:
    """Seed a database of `tasks` tasks of `steps_per_task` steps (a fiftieth of them queued) and a `steps`-step
    task, and time the pages. Every dict in the result is a page's figures (scripts/bench.py tabulates them)."""
    from django.db import connection

    from orchestration.models import Step, Task

    queued = max(1, tasks // 50)
    seeded = seed(tasks=tasks, queued=queued, steps=steps, steps_per_task=steps_per_task)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        cursor.execute(
            "SELECT pg_total_relation_size(%s), pg_total_relation_size(%s)", [Step._meta.db_table, Task._meta.db_table]
        )
        step_bytes, task_bytes = cursor.fetchone()
    analyzed = time.perf_counter() - started
    pages = measure(requests=requests, seeded=seeded)
    return {
        "tasks": tasks, "queued": queued, "steps_per_task": steps_per_task, "steps": seeded.steps,
        "transitions": seeded.transitions, "recovery_decisions": seeded.decisions, "steps_on_task_page": steps,
        "requests_per_page": requests,
        "seed_seconds": round(seeded.task_seconds + seeded.step_seconds + analyzed, 1),
        "seed_tasks_seconds": round(seeded.task_seconds, 1), "seed_steps_seconds": round(seeded.step_seconds, 1),
        "analyze_seconds": round(analyzed, 1), "step_table_bytes": step_bytes, "task_table_bytes": task_bytes,
        **pages,
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
        steps_per_task=int(os.environ.get("BENCH_STEPS_PER_TASK", "10")),
    )
    machine = {"cores": os.cpu_count(), "python": platform.python_version(), "postgres": postgres}
    print(json.dumps({"benchmark": "operator console", **figures, "machine": machine}, indent=2))
    print(f"\n{'page':<22}{'p50 ms':>10}{'p95 ms':>10}{'queries':>10}")
    for name, page in figures.items():
        if isinstance(page, dict):
            print(f"{name:<22}{page['p50_ms']:>10}{page['p95_ms']:>10}{page['queries']:>10}")


if __name__ == "__main__":
    main()

"""Worker SIGKILL at random points: 20 tasks, the worker (and its pool) killed and restarted again and again.

Every tool call attempt lingers a little before or after its effect (the plan), so kills land inside steps and
between an effect and its record. Each step that was running at a kill must come back as a lost step (a retryable
failure) and run again under its key; at the end every task has settled and no effect happened twice.
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection

from orchestration.models import RecoveryEvent, Step, StepKind, StepState
from orchestration.services.sweeper import tasks_sweep
from shop.services import orders_seed_demo
from tests.factories import submit_task
from tests.faults.checks import (
    all_settled,
    decisions_of,
    effect_problems,
    nothing_lost_problems,
    outcomes,
    reloaded,
    worker_log_alarms,
)
from tests.faults.report import FaultFigures, record_figures
from tests.workers import StartWorker, WorkerProcess, wait_until
from tools.models import ToolContract
from tools.services.contracts import contract_update

pytestmark = pytest.mark.worker

SCALE = int(os.environ.get("FAULT_SUITE_SCALE", "1"))
TASKS, KILLS = 20 * SCALE, 6 * SCALE
SEED = int(os.environ.get("FAULT_SUITE_SEED", "20261125"))
PLAN = {
    "seed": SEED,
    "tools": {
        "*": [{"fault": "hang", "seconds": 0.4, "probability": 0.5}, {"fault": "hang_after_effect", "seconds": 0.4}]
    },
}
# Short deadlines so a lost step is noticed within seconds: tool timeouts of 2 s (set on the contracts below),
# model calls of 5 s, 2 s of grace; between steps the lease is 3 s.
WORKER_ENV = {
    "FAULT_PLAN": json.dumps(PLAN),
    "STEP_LEASE_SECONDS": "3",
    "STEP_DEADLINE_GRACE_SECONDS": "2",
    "MODEL_CALL_TIMEOUT_SECONDS": "5",
}
GOALS: list[tuple[str, dict[str, Any]]] = [
    ("Look up order A-1001 and add an order note that the parcel is late.", {"order_number": "A-1001", "note": "late"}),
    ("Refund order A-1002", {"order_number": "A-1002", "amount_cents": 100, "currency": "USD", "reason": "late"}),
    ("Look up order A-1003 and refund order A-1003", {"order_number": "A-1003", "amount_cents": 50, "currency": "GBP",
                                                      "reason": "late"}),
]  # fmt: skip


def _open_transactions() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND state = 'idle in transaction'"
        )
        return int(cursor.fetchone()[0])


def _other_sessions() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"
        )
        return int(cursor.fetchone()[0])


def _run_then_kill(worker: WorkerProcess, seconds: float) -> int:
    """Let the worker run (acting as beat meanwhile), then SIGKILL it; returns open transactions just before.

    Returns once PostgreSQL has ended the killed worker's sessions: a COMMIT it sent just before it died is then
    applied (or a transaction it left open rolled back), so what is RUNNING now stays RUNNING."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        tasks_sweep()
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    in_transaction = _open_transactions()
    worker.kill()
    wait_until(lambda: _other_sessions() == 0, timeout=30, describe="the killed worker's database sessions ended")
    return in_transaction


def test_random_sigkills_lose_nothing_and_apply_no_effect_twice(start_worker: StartWorker) -> None:
    orders_seed_demo()
    for tool in ("lookup_order", "add_order_note", "refund_order"):
        contract_update(contract=ToolContract.objects.get(name=tool), values={"timeout_seconds": 2.0}, user=None)
    owner = User.objects.create_user("sigkill-client")
    rng = random.Random(SEED)
    submitted = [submit_task(owner, goal=goal, task_input=dict(data)) for goal, data in (GOALS * TASKS)[:TASKS]]

    workers: list[WorkerProcess] = []
    interrupted: dict[tuple[int, int], Step] = {}  # (step, attempt): a step can stay lost across several kills
    in_transaction = 0
    for _ in range(KILLS):
        worker = start_worker(concurrency=2, **WORKER_ENV)
        workers.append(worker)
        in_transaction += _run_then_kill(worker, rng.uniform(0.5, 3.0))
        # Nothing runs now: the steps still RUNNING are exactly the ones the kill interrupted.
        for step in Step.objects.filter(task__in=submitted, state=StepState.RUNNING):
            interrupted[(step.pk, step.attempt)] = step
    workers.append(start_worker(concurrency=2, **WORKER_ENV))
    wait_until(lambda: all_settled(submitted), sweep=True, timeout=180 * SCALE, describe="every task settled")

    tasks = reloaded(submitted)
    problems = nothing_lost_problems(tasks) + worker_log_alarms(workers)
    for step in interrupted.values():
        lost = [d for d in decisions_of(step) if d.event == RecoveryEvent.STEP_LOST and d.attempt == step.attempt]
        if not lost:
            problems.append(f"step {step.idempotency_key} attempt {step.attempt} was killed but never taken back")
    duplicates, _ = effect_problems(tasks)
    record_figures(
        FaultFigures(
            "worker SIGKILL at random points",
            len(tasks),
            KILLS,
            outcomes(tasks),
            duplicates,
            {
                "steps interrupted": len(interrupted),
                "tool calls interrupted": sum(step.kind == StepKind.TOOL_CALL for step in interrupted.values()),
                "kills inside an open transaction": in_transaction,
            },
        )
    )
    assert not problems, "\n".join(problems[:30])
    assert interrupted, "no kill landed inside a step: the test proved nothing"

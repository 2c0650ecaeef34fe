"""PostgreSQL drops a worker's connection mid-step (its backend is terminated, as a failover or an operator
would): the worker hands the task back over a new connection, the step runs again under its key, and the task
completes, with one effect."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection

from orchestration.models import (
    RecoveryDecision,
    RecoveryEvent,
    Step,
    StepKind,
    StepState,
    Task,
    TaskState,
)
from shop.models import OrderNote
from shop.services import orders_seed_demo
from tests.factories import submit_task
from tests.faults.checks import effect_problems, nothing_lost_problems, outcomes, reloaded, worker_log_alarms
from tests.faults.report import FaultFigures, record_figures
from tests.workers import StartWorker, wait_until
from tools.errors import RecoveryAction

pytestmark = pytest.mark.worker


def _backends(where: str) -> int:
    """Worker backends on the test database (never this process's own) in the state `where` says."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            f"AND backend_type = 'client backend' AND {where}"
        )
        return int(cursor.fetchone()[0])


def _terminate_worker_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        return int(cursor.fetchone()[0])


def _run_and_drop(start_worker: StartWorker, plan: dict[str, Any], running: str, where: str) -> Task:
    orders_seed_demo()
    worker = start_worker(FAULT_PLAN=json.dumps(plan), STEP_DEADLINE_GRACE_SECONDS="2")
    task = submit_task(User.objects.create_user("pg-client"))
    wait_until(
        lambda: Step.objects.filter(task=task, ref=running, state=StepState.RUNNING).exists() and _backends(where) > 0,
        describe=f"{running} running",
    )
    assert _terminate_worker_backends() > 0
    wait_until(
        lambda: Task.objects.get(pk=task.pk).state == TaskState.COMPLETED,
        sweep=True,
        timeout=60,
        describe="the task completed",
        watch=[worker],
    )
    [task] = reloaded([task])
    problems = nothing_lost_problems([task]) + worker_log_alarms([worker])
    assert not problems, "\n".join(problems)
    duplicates, _ = effect_problems([task])
    record_figures(FaultFigures(f"PostgreSQL connection dropped ({running})", 1, 1, outcomes([task]), duplicates))
    return task


def _events(task: Task) -> list[tuple[str, str]]:
    return list(RecoveryDecision.objects.filter(task=task).order_by("id").values_list("event", "action"))


def test_connection_dropped_inside_a_tool_call_transaction(start_worker: StartWorker) -> None:
    # The note is written inside the call's transaction, then the call lingers: the connection dies right there.
    plan = {"tools": {"add_order_note": [{"fault": "hang_after_effect", "seconds": 3, "attempts": [1]}]}}
    task = _run_and_drop(start_worker, plan, "call:2:call_2_add_order_note", "state = 'idle in transaction'")
    note = Step.objects.get(task=task, name="add_order_note")
    assert (note.attempt, note.state) == (2, StepState.SUCCEEDED)
    assert OrderNote.objects.filter(idempotency_key=note.idempotency_key).count() == 1
    assert _events(task) == [
        (RecoveryEvent.DATABASE_ERROR, RecoveryAction.RESUME),
        (RecoveryEvent.STEP_LOST, RecoveryAction.RETRY),
    ]
    assert "terminating connection" in RecoveryDecision.objects.filter(task=task).first().what  # type: ignore[union-attr]


def test_connection_dropped_while_the_model_answers(start_worker: StartWorker) -> None:
    plan = {"model": [{"fault": "hang", "seconds": 3, "turns": [2], "attempts": [1]}]}
    task = _run_and_drop(start_worker, plan, "turn:2", "state = 'idle'")
    turns = Counter(Step.objects.filter(task=task, kind=StepKind.MODEL_TURN).values_list("ref", "attempt"))
    assert turns == Counter({("turn:1", 1): 1, ("turn:2", 2): 1, ("turn:3", 1): 1})
    assert OrderNote.objects.count() == 1
    assert _events(task) == [
        (RecoveryEvent.DATABASE_ERROR, RecoveryAction.RESUME),
        (RecoveryEvent.STEP_LOST, RecoveryAction.RETRY),
    ]

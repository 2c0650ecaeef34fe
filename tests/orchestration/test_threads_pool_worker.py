"""Concurrency as a design property, through a real worker of Celery's threads pool against a loopback
OpenAI-compatible endpoint: a task waiting on its model holds no process and no database connection (Django's
psycopg pool, a connection borrowed per journal transaction), and a tool's deadline holds off the main thread."""

from __future__ import annotations

import json

import pytest
from django.conf import settings

from orchestration.models import RecoveryDecision, Step, StepKind, Task, TaskState
from tests import workers
from tests.benches import bench_script
from tools.errors import ErrorCode
from tools.models import ToolContract
from tools.services.contracts import contract_update

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

POOL_SIZE = 4


def test_forty_tasks_wait_on_their_model_at_once_on_a_few_connections() -> None:
    figures = bench_script("bench_concurrency").concurrency(
        database_url=workers.test_database_url(),
        redis_url=settings.REDIS_URL,
        tasks=40,
        delay=8.0,  # long enough that every task's first request is out before the first answer comes back
        pools=[("threads", 40)],
        worker_env={"DATABASE_POOL_MAX_SIZE": str(POOL_SIZE)},
    )
    run = figures["configurations"]["threads -c 40"]
    assert run["settled_in_time"] and run["states"] == {TaskState.COMPLETED: 40}
    assert run["model_calls"]["in_flight_max"] >= 30, run["model_calls"]
    assert 1 <= run["pg_connections"]["worker_max"] <= POOL_SIZE, run["pg_connections"]


def test_a_hung_tool_times_out_at_its_deadline_on_a_threads_pool_worker() -> None:
    contract_update(contract=ToolContract.objects.get(name="lookup_order"), values={"timeout_seconds": 1}, user=None)
    hang = {"tools": {"lookup_order": [{"fault": "hang", "seconds": 60, "attempts": [1]}]}}
    figures = bench_script("bench_concurrency").concurrency(
        database_url=workers.test_database_url(),
        redis_url=settings.REDIS_URL,
        tasks=2,
        delay=0.1,
        pools=[("threads", 4)],
        worker_env={"FAULT_PLAN": json.dumps(hang)},
    )
    assert figures["configurations"]["threads -c 4"]["settled_in_time"]
    for task in Task.objects.all():
        assert task.state == TaskState.COMPLETED, task.state_reason
        lookup = Step.objects.get(task=task, kind=StepKind.TOOL_CALL)
        assert lookup.attempt == 2, "attempt 1 was cut at its deadline and retried, not waited for (60 s)"
        timed_out = RecoveryDecision.objects.get(task=task)
        assert timed_out.envelope["error_code"] == ErrorCode.TIMEOUT  # type: ignore[index]

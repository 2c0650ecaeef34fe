"""End to end on the real parts: HTTP in, a real Celery worker process over Redis, PostgreSQL as the truth."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User

from orchestration.models import Step, StepKind, StepState, Task, TaskState
from shop.models import OrderNote
from shop.services import orders_seed_demo
from tests.factories import LOOKUP_AND_NOTE, api_key, submit_task
from tests.workers import StartWorker, wait_until

pytestmark = pytest.mark.worker

HAPPY_PATH = [
    ("", "RECEIVED"),
    ("RECEIVED", "PLANNED"),
    ("PLANNED", "TOOL_RUNNING"),
    ("TOOL_RUNNING", "PLANNED"),
    ("PLANNED", "TOOL_RUNNING"),
    ("TOOL_RUNNING", "PLANNED"),
    ("PLANNED", "COMPLETED"),
]


def _post(url: str, token: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json", **headers},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.load(response)


def _get(url: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _state(task_id: object) -> str:
    return str(Task.objects.values_list("state", flat=True).get(pk=task_id))


def test_http_submission_runs_to_completed_on_a_worker_process(live_server: Any, start_worker: StartWorker) -> None:
    orders_seed_demo()
    user = User.objects.create_user("http-client")
    token = api_key(user)
    worker = start_worker()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"

    status, created = _post(
        f"{live_server.url}/api/v1/tasks/",
        token,
        LOOKUP_AND_NOTE,
        {"Idempotency-Key": "e2e-1", "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
    )
    assert status == 201
    assert created["state"] == "RECEIVED"
    assert created["trace_id"] == trace_id
    wait_until(lambda: _state(created["id"]) == TaskState.COMPLETED, describe="task COMPLETED")

    task = _get(f"{live_server.url}/api/v1/tasks/{created['id']}/", token)
    assert task["state"] == "COMPLETED"
    assert task["usage"]["input_tokens"] > 0 and task["usage"]["output_tokens"] > 0
    assert [step["kind"] for step in task["steps"]] == [
        "model_turn", "tool_call", "model_turn", "tool_call", "model_turn",
    ]  # fmt: skip
    for step in task["steps"]:
        assert step["trace_id"] == trace_id
        assert step["idempotency_key"].startswith(f"u{user.pk}:e2e-1:")
        assert step["state"] == "SUCCEEDED" and step["attempt"] == 1
        assert step["started_at"] and step["finished_at"] and step["duration_ms"] is not None
    assert len({step["idempotency_key"] for step in task["steps"]}) == len(task["steps"])
    assert [(t["from_state"], t["to_state"]) for t in task["transitions"]] == HAPPY_PATH
    assert all(t["actor"].startswith("worker:") for t in task["transitions"][1:])
    assert task["transitions"][0]["actor"] == "user:http-client"
    assert OrderNote.objects.count() == 1

    # The trace id rode in the Celery message headers and is on the worker's structured log lines.
    logged = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    assert any(entry.get("trace_id") == trace_id and entry.get("task_id") == created["id"] for entry in logged)


def test_flushed_redis_loses_no_task(start_worker: StartWorker) -> None:
    orders_seed_demo()
    owner = User.objects.create_user("flush-client")
    tasks = [submit_task(owner) for _ in range(5)]
    broker = redis.Redis.from_url(settings.REDIS_URL)
    assert broker.llen("celery") == 5, "each submission should have sent one message"
    broker.flushdb()

    start_worker()
    time.sleep(2)
    assert set(Task.objects.values_list("state", flat=True)) == {TaskState.RECEIVED}, "messages were flushed"

    wait_until(
        lambda: Task.objects.filter(state=TaskState.COMPLETED).count() == len(tasks),
        sweep=True,
        describe="all tasks COMPLETED after the sweeper re-sent them",
    )
    assert OrderNote.objects.count() == len(tasks)


def test_worker_killed_mid_step_completes_without_rerunning_finished_steps(start_worker: StartWorker) -> None:
    orders_seed_demo()
    owner = User.objects.create_user("kill-client")
    doomed = start_worker(
        FAULT_PLAN=json.dumps({"tools": {"add_order_note": [{"fault": "hang", "seconds": 60}]}}), STEP_LEASE_SECONDS="3"
    )
    task = submit_task(owner)
    wait_until(
        lambda: Step.objects.filter(task=task, name="add_order_note", state=StepState.RUNNING).exists(),
        describe="the second tool call to be running",
    )
    finished_before = {
        step.ref: (step.attempt, step.started_at, step.output)
        for step in Step.objects.filter(task=task, state=StepState.SUCCEEDED)
    }
    assert len(finished_before) == 3  # turn 1, lookup_order, turn 2
    doomed.kill()

    start_worker(STEP_LEASE_SECONDS="3", STEP_DEADLINE_GRACE_SECONDS="2")
    wait_until(lambda: _state(task.pk) == TaskState.COMPLETED, sweep=True, timeout=90, describe="recovery")

    for ref, before in finished_before.items():
        step = Step.objects.get(task=task, ref=ref)
        assert (step.attempt, step.started_at, step.output) == before, f"{ref} ran again"
    note_step = Step.objects.get(task=task, name="add_order_note")
    assert note_step.attempt == 2 and note_step.state == StepState.SUCCEEDED
    assert OrderNote.objects.filter(order__number="A-1001").count() == 1
    assert not Step.objects.filter(task=task, state=StepState.RUNNING).exists()
    path = list(task.transitions.values_list("from_state", "to_state", "reason"))
    lost = [row for row in path if row[1] == TaskState.TOOL_FAILED_RETRYABLE]
    assert len(lost) == 1 and "STEP_LOST" in lost[0][2]
    assert Step.objects.filter(task=task, kind=StepKind.MODEL_TURN).count() == 3

"""A worker killed mid-task over a real (scripted) HTTP endpoint: recorded turns are never requested again."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User

from agent_runtime.models import AgentConfig
from agent_runtime.services import agent_update
from orchestration.models import Step, StepKind, StepState, Task, TaskState
from shop.models import OrderNote
from shop.services import orders_seed_demo
from tests.agent_runtime.fake_openai import responses_call, responses_message
from tests.agent_runtime.fake_openai_server import scripted_server
from tests.factories import submit_task
from tests.workers import StartWorker, wait_until

pytestmark = pytest.mark.worker

NOTE = {"order_number": "A-1001", "note": "customer called"}
FOUR_TURNS = [
    responses_call("lookup_order", {"order_number": "A-1001"}, "call_1", (100, 10)),
    responses_call("add_order_note", NOTE, "call_2", (150, 12)),
    responses_call("lookup_order", {"order_number": "A-1003"}, "call_3", (200, 11)),
    responses_message("Both orders checked and the note added.", (250, 9)),
]


def test_killed_after_the_second_turn_resumes_without_new_requests_or_reruns(start_worker: StartWorker) -> None:
    orders_seed_demo()
    agent_update(agent=AgentConfig.objects.get(name="default"), values={"model": "gpt-test"}, user=None)
    with scripted_server(FOUR_TURNS) as endpoint:
        env = {
            "OPENAI_BASE_URL": endpoint.base_url,
            "OPENAI_API_KEY": "sk-test",
            "STEP_LEASE_SECONDS": "3",
            "STEP_DEADLINE_GRACE_SECONDS": "2",
        }
        doomed = start_worker(
            FAULT_PLAN=json.dumps({"tools": {"add_order_note": [{"fault": "hang", "seconds": 60}]}}), **env
        )
        task = submit_task(User.objects.create_user("c"), goal="Check orders", task_input={})
        wait_until(
            lambda: Step.objects.filter(task=task, name="add_order_note", state=StepState.RUNNING).exists(),
            describe="the tool call of turn two to be running",
        )
        assert len(endpoint.requests) == 2
        doomed.kill()

        start_worker(**env)
        wait_until(lambda: Task.objects.get(pk=task.pk).state == TaskState.COMPLETED, sweep=True, timeout=90)

    assert len(endpoint.requests) == 4, "turns one and two must be replayed, not requested again"
    turns = Step.objects.filter(task=task, kind=StepKind.MODEL_TURN).order_by("seq")
    assert [turn.attempt for turn in turns] == [1, 1, 1, 1]
    assert [(t.input_tokens, t.output_tokens) for t in turns] == [(100, 10), (150, 12), (200, 11), (250, 9)]
    assert Step.objects.get(task=task, ref="call:1:call_1").attempt == 1
    assert Step.objects.get(task=task, ref="call:2:call_2").attempt == 2
    assert OrderNote.objects.count() == 1
    task = Task.objects.get(pk=task.pk)
    assert (task.input_tokens, task.output_tokens) == (700, 42)
    # The third request carried both recorded tool results, so the model saw the same history.
    outputs = [item for item in endpoint.requests[2]["input"] if item.get("type") == "function_call_output"]
    assert [item["call_id"] for item in outputs] == ["call_1", "call_2"]

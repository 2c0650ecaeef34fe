"""A model that keeps getting it wrong is handed to a human after the task's re-plan cap, with the reason."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from agent_runtime.models import AgentConfig
from agent_runtime.services import agent_update
from orchestration.models import Step, StepKind, Task, TaskState
from orchestration.services.execution import task_run
from tests.agent_runtime.fake_openai import FakeEndpoint, responses_call, responses_message, use_endpoint
from tests.factories import submit_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def endpoint_model(settings: Any, demo_orders: None) -> None:
    agent_update(agent=AgentConfig.objects.get(name="default"), values={"model": "gpt-test"}, user=None)
    settings.OPENAI_API_KEY = "sk-test"
    settings.AGENT_REPLAN_CAP = 3


def _run() -> Task:
    task = submit_task(User.objects.create(username="c"), goal="Look up order A-1001", task_input={})
    task_run(task_id=str(task.pk), worker="worker:test")
    task.refresh_from_db()
    return task


def test_always_invalid_arguments_end_in_manual_review(endpoint_model: None, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = [responses_call("lookup_order", {"order_number": "nope"}, f"c{n}", (10, 2)) for n in range(10)]
    endpoint = FakeEndpoint(bad)
    use_endpoint(monkeypatch, endpoint)
    task = _run()
    assert task.state == TaskState.MANUAL_REVIEW
    assert "re-planned 3 times (cap 3)" in task.state_reason and "INVALID_ARGUMENTS" in task.state_reason
    assert len(endpoint.requests) == 4
    assert Step.objects.filter(task=task, kind=StepKind.TOOL_CALL).count() == 4


def test_always_unknown_tools_end_in_manual_review(endpoint_model: None, monkeypatch: pytest.MonkeyPatch) -> None:
    ghost = [responses_call("delete_everything", {}, f"g{n}", (10, 2)) for n in range(10)]
    endpoint = FakeEndpoint(ghost)
    use_endpoint(monkeypatch, endpoint)
    task = _run()
    assert task.state == TaskState.MANUAL_REVIEW
    assert "'delete_everything', which this agent does not have" in task.state_reason
    assert len(endpoint.requests) == 4
    # The model was told, in the SDK's words, each time.
    fed_back = [i for i in endpoint.requests[1]["input"] if i.get("type") == "function_call_output"]
    assert "not found" in fed_back[0]["output"]


def test_one_mistake_is_forgiven(endpoint_model: None, monkeypatch: pytest.MonkeyPatch) -> None:
    script = [
        responses_call("delete_everything", {}, "g1", (10, 2)),
        responses_call("lookup_order", {"order_number": "A-1001"}, "c1", (10, 2)),
        responses_message("Shipped.", (10, 2)),
    ]
    use_endpoint(monkeypatch, FakeEndpoint(script))
    task = _run()
    assert task.state == TaskState.COMPLETED and task.replans == 1

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client

from agent_runtime.models import AgentConfig, AgentVersion
from orchestration.models import Task
from tests.factories import agent_form, submit_task

pytestmark = pytest.mark.django_db


def test_editing_an_agent_creates_a_version_for_new_tasks_only(operator: Client) -> None:
    agent = AgentConfig.objects.get(name="default")
    earlier = submit_task(User.objects.create(username="c"))
    response = operator.post(f"/admin/agent_runtime/agentconfig/{agent.pk}/change/", agent_form(model="gpt-4.1-mini"))
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.current is not None and (agent.current.number, agent.current.model) == (2, "gpt-4.1-mini")
    later = submit_task(User.objects.get(username="c"))
    assert Task.objects.get(pk=earlier.pk).agent_version.number == 1
    assert Task.objects.get(pk=later.pk).agent_version.number == 2


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"model_settings": json.dumps({"temprature": 0.2})}, "model_settings"),
        ({"tools": json.dumps(["no_such_tool"])}, "tools"),
        ({"instructions": "  "}, "instructions"),
        ({"max_turns": 0}, "max_turns"),
        ({"memory_summary_tokens": 600}, "memory_summary_tokens"),
        ({"memory_window_turns": 2}, "memory_window_turns"),
        ({"model_settings": json.dumps({"retry": {"max_retries": 2}})}, "model_settings"),
    ],
)
def test_invalid_agent_edits_are_refused(operator: Client, changes: dict[str, object], field: str) -> None:
    agent = AgentConfig.objects.get(name="default")
    response = operator.post(f"/admin/agent_runtime/agentconfig/{agent.pk}/change/", agent_form(**changes))
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert AgentVersion.objects.count() == 1

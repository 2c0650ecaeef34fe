"""With a real model the summary's facts are written by the model: one small request per turn, a durable step with
its tokens and cost counted, replayed (not asked again) when the run resumes, and a failure of it is a failed
model request like any other."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx2
import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from agent_runtime.models import AgentConfig, ModelPrice
from agent_runtime.services import agent_update
from agent_runtime.summarizer import INSTRUCTIONS
from memory.models import Session
from orchestration.models import Step, StepKind, Task, TaskState
from orchestration.services.execution import task_run
from tests.agent_runtime.fake_openai import FakeEndpoint, responses_call, responses_message, use_endpoint
from tests.memory.test_sessions import _submit

pytestmark = pytest.mark.django_db


def _facts(*facts: str) -> dict[str, Any]:
    return responses_message(json.dumps(list(facts)), (40, 8))


@pytest.fixture
def model_summaries(settings: Any, demo_orders: None) -> None:
    agent_update(agent=AgentConfig.objects.get(name="default"), values={"model": "gpt-test"}, user=None)
    ModelPrice.objects.create(model="gpt-test", input_usd_per_million=Decimal("2"), output_usd_per_million=Decimal("8"))
    settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL, settings.OPENAI_API_STYLE = "sk-test", "", "responses"
    settings.MEMORY_SUMMARIZER = "model"


def _run(task: Task) -> Task:
    task_run(task_id=str(task.pk), worker="worker:test")
    task.refresh_from_db()
    return task


def test_the_model_writes_the_facts_each_turn_as_a_counted_durable_step(
    model_summaries: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = FakeEndpoint(
        [
            _facts("The customer Ann Lee asked about order A-1001"),
            responses_call("lookup_order", {"order_number": "A-1001"}, "call_1", (100, 10)),
            _facts("Order A-1001 is SHIPPED"),
            httpx2.Response(500, json={"error": {"message": "upstream exploded"}}),  # turn 2's answer fails
            responses_message("Order A-1001 has shipped.", (120, 9)),
        ]
    )
    use_endpoint(monkeypatch, endpoint)
    task = _submit(User.objects.create(username="c"), "Where is order A-1001?", "ann", {"order_number": "A-1001"})
    task = _run(task)
    assert task.state == TaskState.PLANNED and "HTTP 500" in task.state_reason, "turn 2's answer failed: a backoff"
    Task.objects.filter(pk=task.pk).update(next_run_at=timezone.now())
    task = _run(task)
    assert task.state == TaskState.COMPLETED, task.state_reason

    assert len(endpoint.requests) == 5, "the summaries were replayed on the second run, not asked again"
    assert endpoint.requests[0]["instructions"] == INSTRUCTIONS and endpoint.requests[0]["max_output_tokens"] == 400
    summaries = Step.objects.filter(task=task, kind=StepKind.SUMMARY).order_by("seq")
    assert [(s.ref, s.attempt, s.input_tokens, s.output_tokens) for s in summaries] == [
        ("summary:1", 1, 40, 8),
        ("summary:2", 1, 40, 8),
    ]
    assert (task.input_tokens, task.output_tokens) == (40 + 100 + 40 + 120, 8 + 10 + 8 + 9), "all counted"
    assert task.cost == sum((step.cost for step in Step.objects.filter(task=task)), Decimal("0"))
    second = Step.objects.get(task=task, ref="turn:2").input["memory"]
    assert [fact["text"] for fact in second["learnt"]] == ["Order A-1001 is SHIPPED"]
    facts = [fact["text"] for fact in Session.objects.get(session_id="ann").facts]
    assert "The customer Ann Lee asked about order A-1001" in facts and "Order A-1001 is SHIPPED" in facts


def test_a_summarizer_that_ignores_the_format_still_gives_facts(
    model_summaries: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = FakeEndpoint(
        [
            responses_message("- Customer wants order A-1001 checked\n- Nothing promised yet", (30, 6)),
            responses_message("Nothing to do.", (50, 4)),
        ]
    )
    use_endpoint(monkeypatch, endpoint)
    task = _run(_submit(User.objects.create(username="c"), "Check order A-1001", "bob"))
    assert task.state == TaskState.COMPLETED
    learnt = Step.objects.get(task=task, ref="turn:1").input["memory"]["learnt"]
    assert [fact["text"] for fact in learnt] == ["Customer wants order A-1001 checked", "Nothing promised yet"]

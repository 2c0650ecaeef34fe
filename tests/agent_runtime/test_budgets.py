"""Budgets: a task that would cross its token or cost budget stops before the model is asked, and a human takes over."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from agent_runtime.catalog import Budget, budget_for, current_agent_version_id
from agent_runtime.models import AgentConfig, ModelPrice
from agent_runtime.services import AgentInvalid, agent_update
from orchestration.models import HandoffReason, RecoveryDecision, RecoveryEvent, Step, StepKind, Task, TaskState
from orchestration.services.execution import task_run
from orchestration.services.submission import task_submit
from orchestration.tracing import new_trace_id
from tests.agent_runtime.fake_openai import FakeEndpoint, responses_call, use_endpoint

pytestmark = pytest.mark.django_db

LOOKUP = {"order_number": "A-1001"}
CALL_USAGE = (1500, 50)
MAX_OUTPUT = 100


@pytest.fixture
def looping_model(settings: Any, demo_orders: None, monkeypatch: pytest.MonkeyPatch) -> FakeEndpoint:
    """A real OpenAI Responses model class whose endpoint asks for the same lookup forever."""
    values = {"model": "gpt-test", "max_turns": 100, "model_settings": {"max_tokens": MAX_OUTPUT}}
    agent_update(agent=AgentConfig.objects.get(name="default"), values=values, user=None)
    ModelPrice.objects.create(model="gpt-test", input_usd_per_million=Decimal("2"), output_usd_per_million=Decimal("8"))
    settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL, settings.OPENAI_API_STYLE = "sk-test", "", "responses"
    endpoint = FakeEndpoint([responses_call("lookup_order", LOOKUP, f"call_{n}", CALL_USAGE) for n in range(500)])
    use_endpoint(monkeypatch, endpoint)
    return endpoint


def _submit(budget: Budget | None = None) -> Task:
    return task_submit(
        owner=User.objects.get_or_create(username="client")[0],
        goal="Look up order A-1001",
        task_input=LOOKUP,
        session_id="",
        agent="default",
        metadata={},
        idempotency_key=f"budget-{uuid.uuid4().hex}",
        trace_id=new_trace_id(),
        budget=budget,
    ).task


def _run(task: Task) -> Task:
    task_run(task_id=str(task.pk), worker="worker:test")
    task.refresh_from_db()
    return task


def test_a_task_that_loops_forever_stops_within_one_call_of_its_token_budget(looping_model: FakeEndpoint) -> None:
    task = _run(_submit(Budget(tokens=20_000)))
    assert task.state == TaskState.MANUAL_REVIEW
    assert task.handoff_reason == HandoffReason.BUDGET_EXCEEDED
    assert task.state_reason.startswith("budget exceeded: ")
    spent, per_call = task.input_tokens + task.output_tokens, sum(CALL_USAGE)
    requests = len(looping_model.requests)
    assert requests == Step.objects.filter(task=task, kind=StepKind.MODEL_TURN).count()
    assert spent == requests * per_call, "every request the endpoint received was recorded"
    assert spent <= 20_000 + per_call, "at most one call past the budget"
    assert requests >= (20_000 - 2 * per_call) // per_call, "it did not stop long before the budget"
    ruling = RecoveryDecision.objects.get(task=task, event=RecoveryEvent.BUDGET)
    assert "20,000" in ruling.what and "maximum output" in ruling.rule
    # Run again (a redelivered message): it stays with the human, and the model is not asked again.
    _run(task)
    assert len(looping_model.requests) == requests


def test_the_cost_budget_stops_a_task_before_the_request_that_could_cross_it(looping_model: FakeEndpoint) -> None:
    # Each request costs 1500 * 2 + 50 * 8 = 3,400 micro-USD; the budget allows about 10 of them.
    task = _run(_submit(Budget(cost_usd=Decimal("0.035"))))
    assert task.handoff_reason == HandoffReason.BUDGET_EXCEEDED
    assert task.cost <= Decimal("0.035") + Decimal("0.0034")
    assert len(looping_model.requests) >= 9
    assert "USD" in task.state_reason


def test_the_reserved_output_is_what_the_endpoint_is_told_it_may_write(
    looping_model: FakeEndpoint, settings: Any
) -> None:
    task = _run(_submit(Budget(tokens=5_000)))
    assert {request["max_output_tokens"] for request in looping_model.requests} == {MAX_OUTPUT}, "the agent's own"
    agent_update(agent=AgentConfig.objects.get(name="default"), values={"model_settings": {}}, user=None)
    settings.MODEL_OUTPUT_RESERVE_TOKENS = 321
    looping_model.requests.clear()
    task = _run(_submit(Budget(tokens=5_000)))
    assert looping_model.requests, task.state_reason
    assert {request["max_output_tokens"] for request in looping_model.requests} == {321}, "the reserve, enforced"


def test_budgets_come_from_the_submission_then_the_agent_then_the_settings(settings: Any) -> None:
    settings.TASK_TOKEN_BUDGET, settings.TASK_COST_BUDGET_USD = 1000, Decimal("0")
    version_id = current_agent_version_id("default")
    assert budget_for(version_id) == Budget(tokens=1000, cost_usd=None), "0 in settings means no limit"
    agent_update(agent=AgentConfig.objects.get(name="default"), values={"token_budget": 50}, user=None)
    version_id = current_agent_version_id("default")
    assert budget_for(version_id) == Budget(tokens=50, cost_usd=None)
    assert budget_for(version_id, Budget(cost_usd=Decimal("1"))) == Budget(tokens=50, cost_usd=Decimal("1"))
    assert budget_for(version_id, Budget(tokens=7)).tokens == 7
    assert budget_for(version_id, Budget(tokens=10**9)).tokens == 50, "a client may ask for less, never more"
    for refused_values in ({"cost_budget_usd": "-1"}, {"cost_budget_usd": "0.00001"}, {"token_budget": 2**63}):
        with pytest.raises(AgentInvalid) as refused:
            agent_update(agent=AgentConfig.objects.get(name="default"), values=refused_values, user=None)
        assert set(refused_values) <= set(refused.value.problems)


def test_the_api_takes_a_budget_and_shows_spent_and_remaining(api: APIClient) -> None:
    body = {"goal": "Look up order A-1001", "input": LOOKUP, "budget": {"tokens": 5000, "cost_usd": "0.25"}}
    created = api.post("/api/v1/tasks/", body, format="json", HTTP_IDEMPOTENCY_KEY="budget-1")
    assert created.status_code == 201, created.json()
    assert created.json()["budget"] == {
        "tokens": 5000,
        "tokens_spent": 0,
        "tokens_remaining": 5000,
        "cost_usd": 0.25,
        "cost_spent_usd": 0.0,
        "cost_remaining_usd": 0.25,
    }
    again = api.post(
        "/api/v1/tasks/", {**body, "budget": {"tokens": 6000}}, format="json", HTTP_IDEMPOTENCY_KEY="budget-1"
    )
    assert again.status_code == 422, "another budget is another request"


@pytest.mark.parametrize(
    ("budget", "field"),
    [({"tokens": 0}, "tokens"), ({"tokens": "many"}, "tokens"), ({"cost_usd": "abc"}, "cost_usd"),
     ({"cost_usd": -1}, "cost_usd"), ({"token": 5}, "token"), ("lots", "non_field_errors")],
)  # fmt: skip
def test_a_bad_budget_is_a_field_error(api: APIClient, budget: Any, field: str) -> None:
    body = {"goal": "Look up order A-1001", "input": LOOKUP, "budget": budget}
    response = api.post("/api/v1/tasks/", body, format="json", HTTP_IDEMPOTENCY_KEY=f"bad-{field}")
    assert response.status_code == 400
    assert field in str(response.json())

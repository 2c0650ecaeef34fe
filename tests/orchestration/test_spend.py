"""Spend in the admin: a task's budget on its page, and tokens and cost rolled up by client, agent and version."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.test import Client

from agent_runtime.catalog import Budget
from orchestration.models import Task
from orchestration.spend import spend_rollup
from tests.factories import submit_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def spent() -> list[Task]:
    alice, bob = User.objects.create(username="alice"), User.objects.create(username="bob")
    tasks = [submit_task(alice), submit_task(alice), submit_task(bob)]
    for task, (tokens, cost) in zip(tasks, [(100, "0.10"), (50, "0.05"), (10, "0.01")], strict=True):
        Task.objects.filter(pk=task.pk).update(input_tokens=tokens, output_tokens=tokens, cost=Decimal(cost))
    Task.objects.filter(pk=tasks[0].pk).update(state="COMPLETED")
    return tasks


def test_spend_rolls_up_by_client_agent_and_version(spent: list[Task]) -> None:
    by_client = spend_rollup("client", since=None)
    assert [(row.group, row.tasks, row.input_tokens, row.cost) for row in by_client] == [
        ("alice", 2, 150, Decimal("0.150000")),
        ("bob", 1, 10, Decimal("0.010000")),
    ]
    assert by_client[0].cost_per_completed_task == Decimal("0.150000")
    assert by_client[1].cost_per_completed_task is None
    assert [(row.group, row.tasks) for row in spend_rollup("agent version", since=None)] == [("default v1", 3)]


def test_the_spend_page_and_the_task_budget_in_the_admin(operator: Client, spent: list[Task]) -> None:
    page = operator.get("/admin/orchestration/task/spend/?period=all")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="spend-by-client"' in html and "alice" in html and "default v1" in html
    assert operator.get("/admin/orchestration/task/spend/?period=nonsense").status_code == 200
    assert "spend-link" in operator.get("/admin/orchestration/task/").content.decode()
    Task.objects.filter(pk=spent[2].pk).update(token_budget=1000, cost_budget=Decimal("0.5"))
    task_page = operator.get(f"/admin/orchestration/task/{spent[2].pk}/change/").content.decode()
    assert "20 of 1000 tokens spent, 980 left" in task_page
    assert "of $0.5000 spent, $0.490000 left" in task_page


def test_spend_needs_the_view_permission(client: Client) -> None:
    staff = User.objects.create_user("staff", password="unused-password-1", is_staff=True)
    client.force_login(staff)
    assert client.get("/admin/orchestration/task/spend/").status_code == 403


def test_a_submitted_budget_is_fixed_on_the_task(spent: list[Task]) -> None:
    from orchestration.services.submission import task_submit
    from orchestration.tracing import new_trace_id

    task = task_submit(
        owner=User.objects.get(username="bob"), goal="g", task_input={}, session_id="", agent="default",
        metadata={}, idempotency_key="fixed-budget", trace_id=new_trace_id(), budget=Budget(tokens=321),
    ).task  # fmt: skip
    assert (task.token_budget, task.cost_budget) == (321, Decimal("5"))

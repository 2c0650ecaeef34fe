"""Calls the contract holds for a human: the task waits, an operator decides once, the run resumes."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from rest_framework.test import APIClient

from orchestration.models import Approval, ApprovalDecision, Step, StepKind, Task, TaskState
from orchestration.services.execution import task_run
from shop.models import Order, Refund
from tests.factories import api_key, every_scope, submit_task

pytestmark = pytest.mark.django_db

BIG_REFUND = {"order_number": "A-1002", "amount_cents": 90000, "currency": "USD", "reason": "goodwill"}


def _client(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key(user, every_scope())}")
    return client


@pytest.fixture
def operator() -> User:
    user = User.objects.create_user("operator", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="decide_approval"))
    return User.objects.get(pk=user.pk)  # fresh permission cache


@pytest.fixture
def held_task(demo_orders: None) -> Task:
    task = submit_task(User.objects.create(username="client"), goal="Refund order A-1002", task_input=BIG_REFUND)
    return _run(task)


def _run(task: Task) -> Task:
    task_run(task_id=str(task.pk), worker="worker:test")
    task.refresh_from_db()
    return task


def _decide(user: User, task: Task, decision: str, message: str = "") -> Any:
    return _client(user).post(
        f"/api/v1/tasks/{task.pk}/approval/", {"decision": decision, "message": message}, format="json"
    )


def test_a_held_call_waits_in_manual_review_with_the_pending_call_shown(held_task: Task, operator: User) -> None:
    assert held_task.state == TaskState.MANUAL_REVIEW
    assert "awaiting approval" in held_task.state_reason and "90000 is above 50000" in held_task.state_reason
    assert not Refund.objects.exists()
    body = _client(operator).get(f"/api/v1/tasks/{held_task.pk}/").json()
    pending = body["pending_approval"]
    assert pending["tool"] == "refund_order" and pending["arguments"]["amount_cents"] == 90000
    assert {k: body["handoff"][k] for k in ("reason", "tool", "error_code")} == {
        "reason": "approval_needed",
        "tool": "refund_order",
        "error_code": "APPROVAL_REQUIRED",
    }


def test_approval_resumes_and_runs_the_call_once(held_task: Task, operator: User) -> None:
    response = _decide(operator, held_task, "approve")
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "PLANNED" and response.json()["pending_approval"] is None
    assert response.json()["handoff"] is None, "a resumed task no longer waits for a human"
    task = _run(held_task)
    assert task.state == TaskState.COMPLETED
    assert Refund.objects.count() == 1
    assert Order.objects.get(number="A-1002").refunded_cents == 90000
    approval = Approval.objects.get(task=task)
    assert approval.decided_by == operator and approval.used_at is not None
    step = Step.objects.get(task=task, kind=StepKind.TOOL_CALL)
    assert step.attempt == 2 and step.output["ok"] is True

    _run(task)  # a duplicate message changes nothing
    assert Refund.objects.count() == 1
    again = _decide(operator, task, "approve")
    assert again.status_code == 409 and again.json()["error"]["code"] == "no_pending_approval"


def test_rejection_resumes_and_the_model_sees_the_message(held_task: Task, operator: User) -> None:
    assert _decide(operator, held_task, "reject", "too generous, offer 100.00 instead").status_code == 200
    task = _run(held_task)
    assert not Refund.objects.exists()
    step = Step.objects.get(task=task, name="refund_order")
    assert step.output["error_code"] == "REJECTED_BY_OPERATOR"
    last_turn = Step.objects.filter(task=task, kind=StepKind.MODEL_TURN).order_by("-seq").first()
    assert last_turn is not None and "too generous, offer 100.00 instead" in str(last_turn.input)
    # The offline model cannot negotiate, so it hands the task back to a human, quoting the rejection.
    assert task.state == TaskState.MANUAL_REVIEW and "too generous" in task.state_reason
    assert Approval.objects.get(task=task).decision == ApprovalDecision.REJECTED


def test_a_user_without_the_permission_cannot_decide(held_task: Task) -> None:
    staff_without = User.objects.create_user("intern", is_staff=True)
    response = _decide(staff_without, held_task, "approve")
    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"
    held_task.refresh_from_db()
    assert held_task.state == TaskState.MANUAL_REVIEW
    assert Approval.objects.get(task=held_task).decision == ApprovalDecision.PENDING


def test_an_invalid_decision_is_a_400(held_task: Task, operator: User) -> None:
    response = _decide(operator, held_task, "maybe")
    assert response.status_code == 400 and "decision" in response.json()["error"]["fields"]

"""The manual queue over the API: the same services and permissions as the admin, structured refusals."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone
from rest_framework.test import APIClient

from orchestration.models import Task, TaskState
from orchestration.services.execution import task_run
from shop.models import Order
from tests.factories import api_key, every_scope, submit_task

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("queue_groups", "demo_orders")]

REFUND = {"order_number": "A-1002", "amount_cents": 2000, "currency": "USD", "reason": "damaged box"}


def _client_for(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_key(user, every_scope())}")
    return client


def _operator(name: str) -> APIClient:
    user = User.objects.create_user(name, is_staff=True)
    user.groups.add(Group.objects.get(name="operators"))
    return _client_for(user)


@pytest.fixture
def owner() -> User:
    return User.objects.create_user("client")


@pytest.fixture
def exhausted(owner: User) -> Task:
    Order.objects.filter(number="A-1002").update(settlement_locked_until=timezone.now() + timedelta(hours=1))
    task = submit_task(owner, goal="Refund order A-1002", task_input=REFUND)
    for _ in range(4):
        Task.objects.filter(pk=task.pk).update(next_run_at=timezone.now())
        task_run(task_id=str(task.pk), worker="worker:test")
    task.refresh_from_db()
    assert task.state == TaskState.MANUAL_REVIEW
    return task


def _url(task: Task, action: str) -> str:
    return f"/api/v1/tasks/{task.pk}/{action}/"


def test_claim_then_a_colleagues_claim_is_refused(exhausted: Task) -> None:
    alice, bob = _operator("alice"), _operator("bob")
    claimed = alice.post(_url(exhausted, "claim"))
    assert claimed.status_code == 200, claimed.content
    assert claimed.json()["claimed_by"] == "alice" and claimed.json()["claim_expires_at"]
    refused = bob.post(_url(exhausted, "claim"))
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "held_elsewhere" and "alice holds" in refused.json()["error"]["message"]


def test_a_client_without_the_permission_cannot_act_even_on_its_own_task(exhausted: Task, owner: User) -> None:
    response = _client_for(owner).post(_url(exhausted, "retry"), {"note": "please"}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "not_permitted"
    stranger = _client_for(User.objects.create_user("stranger"))
    assert stranger.post(_url(exhausted, "retry"), {"note": "x"}, format="json").status_code == 404


def test_retry_resumes_and_the_audit_log_shows_it(exhausted: Task) -> None:
    alice = _operator("alice")
    seen = alice.get(f"/api/v1/tasks/{exhausted.pk}/").json()["handoff"]["since"]
    response = alice.post(
        _url(exhausted, "retry"), {"note": "upstream is back", "seen_handoff_at": seen}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["state"] == "PLANNED" and body["handoff"] is None and body["claimed_by"] is None
    assert [(a["kind"], a["actor"], a["note"]) for a in body["operator_actions"]] == [
        ("retry", "alice", "upstream is back")
    ]
    assert body["recovery"][-1]["event"] == "operator" and body["recovery"][-1]["action"] == "retry"


def test_a_result_that_breaks_the_schema_is_a_field_error_and_changes_nothing(exhausted: Task) -> None:
    response = _operator("alice").post(
        _url(exhausted, "resolve"), {"note": "by hand", "result": {"refund_id": "nope"}}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid" and "result" in response.json()["error"]["fields"]
    assert Task.objects.get(pk=exhausted.pk).state == TaskState.MANUAL_REVIEW


def test_a_decision_needs_a_note(exhausted: Task) -> None:
    response = _operator("alice").post(_url(exhausted, "close"), {"output": "done"}, format="json")
    assert response.status_code == 400 and "note" in response.json()["error"]["fields"]


def test_close_and_then_every_action_is_refused_because_the_task_moved(exhausted: Task) -> None:
    alice = _operator("alice")
    closed = alice.post(_url(exhausted, "close"), {"note": "called", "output": "Refunded by hand."}, format="json")
    assert closed.status_code == 200 and closed.json()["result"] == {
        "output": "Refunded by hand.",
        "written_by": "user:alice",
    }
    again = alice.post(_url(exhausted, "retry"), {"note": "again"}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "task_moved"


def test_assigning_needs_its_permission(exhausted: Task) -> None:
    _operator("bob")
    response = _operator("alice").post(_url(exhausted, "assign"), {"assignee": "bob", "note": "yours"}, format="json")
    assert response.status_code == 403


def test_notes_are_kept_on_the_task(exhausted: Task) -> None:
    response = _operator("alice").post(_url(exhausted, "notes"), {"note": "customer prefers email"}, format="json")
    assert response.status_code == 200
    assert response.json()["operator_actions"][-1]["note"] == "customer prefers email"


def test_send_back_over_the_api(owner: User) -> None:
    task = submit_task(owner, goal="Escalate to a human", task_input={"order_number": "A-1001"})
    task_run(task_id=str(task.pk), worker="worker:test")
    body = {"note": "status only", "instruction": "Look up order A-1001 and report its status"}
    response = _operator("alice").post(_url(task, "send-back"), body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "PLANNED"
    steps = response.json()["steps"]
    assert steps[-1]["kind"] == "operator_instruction" and steps[-1]["output"]["before_turn"] == 2
    again = _operator("bob").post(_url(task, "send-back"), body, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "task_moved"


def test_a_bulk_retry_counts_then_retries_what_was_counted(owner: User, exhausted: Task) -> None:
    alice = _operator("alice")
    since = (timezone.now() - timedelta(hours=1)).isoformat()
    body = {"reason": "retries_exhausted", "since": since, "note": "settlement fixed"}
    counted = alice.post("/api/v1/queue/bulk-retry/", body, format="json")
    assert counted.status_code == 200 and counted.json() == {"count": 1, "retried": [], "refused": []}
    unbound = alice.post("/api/v1/queue/bulk-retry/", {**body, "confirm": True}, format="json")
    assert unbound.status_code == 400 and "expected_count" in unbound.json()["error"]["fields"]
    stale = alice.post("/api/v1/queue/bulk-retry/", {**body, "confirm": True, "expected_count": 5}, format="json")
    assert stale.status_code == 409 and Task.objects.get(pk=exhausted.pk).state == TaskState.MANUAL_REVIEW
    done = alice.post("/api/v1/queue/bulk-retry/", {**body, "confirm": True, "expected_count": 1}, format="json")
    assert done.status_code == 200 and done.json()["retried"] == [str(exhausted.pk)]
    assert Task.objects.get(pk=exhausted.pk).state == TaskState.PLANNED
    client = _client_for(owner).post("/api/v1/queue/bulk-retry/", body, format="json")
    assert client.status_code == 403


def test_a_client_sees_its_task_but_not_the_operators_notes_or_who_holds_it(exhausted: Task, owner: User) -> None:
    alice = _operator("alice")
    alice.post(_url(exhausted, "claim"))
    alice.post(_url(exhausted, "notes"), {"note": "the customer was rude"}, format="json")
    seen = _client_for(owner).get(f"/api/v1/tasks/{exhausted.pk}/").json()
    assert seen["operator_actions"] == [] and seen["claimed_by"] is None
    assert alice.get(f"/api/v1/tasks/{exhausted.pk}/").json()["claimed_by"] == "alice"


def test_cancelling_another_clients_task_needs_the_queue_permission(exhausted: Task) -> None:
    engineer = User.objects.create_user("erin", is_staff=True)
    engineer.groups.add(Group.objects.get(name="platform engineers"))
    response = _client_for(engineer).post(_url(exhausted, "cancel"))
    assert response.status_code == 403 and Task.objects.get(pk=exhausted.pk).state == TaskState.MANUAL_REVIEW

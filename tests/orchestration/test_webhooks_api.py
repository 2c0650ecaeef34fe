"""A client's webhook endpoints over the API: its own only (anyone else's is a 404), the secret shown once, rotation,
recent deliveries with their attempts, refusals as structured 400s, and a scope declared for every method."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from rest_framework.test import APIClient

from access.scopes import Scope
from orchestration.api import webhook_views
from orchestration.models import Task, Transition, WebhookEndpoint
from orchestration.services.transitions import task_transition
from orchestration.services.webhook_delivery import webhooks_deliver_due
from tests.factories import submit_task
from tests.orchestration.test_webhooks_receiver import Answer, receivers_started

pytestmark = pytest.mark.django_db
receiver_factory = pytest.fixture(receivers_started, name="receiver_factory")
URL = "/api/v1/webhooks/"


@pytest.fixture(autouse=True)
def _local_receivers(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True


def _client(username: str) -> tuple[APIClient, User]:
    user = User.objects.create_user(username)
    client = APIClient()
    client.force_authenticate(user=user)
    return client, user


def _register(client: APIClient, url: str = "https://hooks.example.com/in", **extra: Any) -> Any:
    return client.post(URL, {"url": url, "events": ["task.completed"], **extra}, format="json")


def test_register_list_change_rotate_and_delete_an_endpoint() -> None:
    client, user = _client("client-a")
    created = _register(client)
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["enabled"] is True
    endpoint_id = body["id"]
    assert [e["id"] for e in client.get(URL).json()] == [endpoint_id]
    assert "secret" not in client.get(f"{URL}{endpoint_id}/").json(), "shown once, at registration"

    changed = client.patch(
        f"{URL}{endpoint_id}/", {"events": ["task.completed", "task.manual_review"], "enabled": False}, format="json"
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["events"] == ["task.completed", "task.manual_review"]
    assert changed.json()["enabled"] is False and "disabled by user:client-a" in changed.json()["disabled_reason"]
    assert client.patch(f"{URL}{endpoint_id}/", {"enabled": True}, format="json").json()["enabled"] is True

    rotated = client.post(f"{URL}{endpoint_id}/rotate-secret/")
    assert rotated.status_code == 200
    assert rotated.json()["secret"] not in (body["secret"], "") and rotated.json()["previous_secret_valid_until"]

    assert client.delete(f"{URL}{endpoint_id}/").status_code == 204
    assert not WebhookEndpoint.objects.filter(owner=user).exists()


def test_another_clients_endpoint_is_not_found() -> None:
    owner_client, _ = _client("client-a")
    endpoint_id = _register(owner_client).json()["id"]
    intruder, _ = _client("client-b")
    assert intruder.get(URL).json() == []
    detail = f"{URL}{endpoint_id}/"
    assert intruder.get(detail).status_code == 404
    assert intruder.get(detail).json()["error"]["code"] == "not_found"
    assert intruder.patch(detail, {"enabled": False}, format="json").status_code == 404
    assert intruder.delete(detail).status_code == 404
    assert intruder.post(f"{detail}rotate-secret/").status_code == 404
    assert intruder.get(f"{detail}deliveries/").status_code == 404
    assert WebhookEndpoint.objects.get(pk=endpoint_id).enabled


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "https://hooks.example.com/in", "events": ["task.exploded"]}, "events"),
        ({"url": "https://hooks.example.com/in", "events": []}, "events"),
        ({"url": 42, "events": ["task.completed"]}, "url"),
        ({"url": "https://hooks.example.com/in", "events": ["task.completed"], "secret": "mine"}, "secret"),
    ],
)
def test_a_bad_body_is_a_structured_400(body: dict[str, Any], field: str) -> None:
    client, _ = _client("client-a")
    refused = client.post(URL, body, format="json")
    assert refused.status_code == 400
    assert field in refused.json()["error"]["fields"]


def test_an_internal_address_is_refused_at_registration(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    client, _ = _client("client-a")
    refused = _register(client, url="https://169.254.169.254/latest")
    assert refused.status_code == 400
    assert "link-local" in refused.json()["error"]["fields"]["url"][0]
    assert _register(client, url="http://hooks.example.com/in").status_code == 400, "https required"


def test_recent_deliveries_show_their_attempts(receiver_factory: Any) -> None:
    receiver = receiver_factory(Answer(503), default=Answer(200))
    client, user = _client("client-a")
    endpoint_id = _register(client, url=receiver.url).json()["id"]
    task = submit_task(user)
    with transaction.atomic():
        locked = Task.objects.select_for_update().get(pk=task.pk)
        task_transition(task=locked, transition=Transition.COMPLETE, actor="test")
    webhooks_deliver_due()
    [delivery] = client.get(f"{URL}{endpoint_id}/deliveries/").json()
    assert delivery["task_id"] == str(task.pk) and delivery["webhook_id"].startswith("msg_")
    assert delivery["state"] == "PENDING" and delivery["attempt_count"] == 1
    assert [(a["number"], a["outcome"], a["status_code"]) for a in delivery["attempts"]] == [(1, "failed", 503)]


def test_every_webhook_view_declares_the_scope_of_each_method() -> None:
    views: list[Any] = [
        webhook_views.WebhookListCreateView,
        webhook_views.WebhookDetailView,
        webhook_views.WebhookRotateSecretView,
        webhook_views.WebhookDeliveriesView,
    ]
    for view in views:
        methods = {name.upper() for name in ("get", "post", "patch", "put", "delete") if hasattr(view, name)}
        assert set(view.required_scopes) == methods, view
        assert set(view.required_scopes.values()) == {Scope.WEBHOOKS_MANAGE}

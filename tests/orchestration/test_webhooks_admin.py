"""Webhooks in the admin: the pages render, an endpoint is added with a validated URL and its secret shown once,
secrets rotate, endpoints disable and enable, deliveries are redelivered (action and button) and never hand-made."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client
from django.urls import reverse

from orchestration.models import (
    Task,
    Transition,
    WebhookAuditAction,
    WebhookDelivery,
    WebhookDeliveryState,
    WebhookEndpoint,
)
from orchestration.services.transitions import task_transition
from orchestration.services.webhook_delivery import webhooks_deliver_due
from orchestration.services.webhooks import webhook_endpoint_register
from tests.factories import submit_task
from tests.orchestration.test_webhooks_receiver import Answer, receivers_started

pytestmark = pytest.mark.django_db
receiver_factory = pytest.fixture(receivers_started, name="receiver_factory")


@pytest.fixture(autouse=True)
def _local_receivers(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True


def _delivered(receiver_url: str) -> WebhookDelivery:
    owner = User.objects.create(username="client")
    webhook_endpoint_register(owner=owner, url=receiver_url, events=["task.completed"], actor="test")
    task = submit_task(owner)
    with transaction.atomic():
        locked = Task.objects.select_for_update().get(pk=task.pk)
        task_transition(task=locked, transition=Transition.COMPLETE, actor="test")
    webhooks_deliver_due()
    return WebhookDelivery.objects.get(task_id=task.pk)


def _messages(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_the_webhook_pages_render_with_attempts(operator: Client, receiver_factory: Any) -> None:
    delivery = _delivered(receiver_factory(Answer(500, body=b"upstream broke")).url)
    for name, args in [
        ("admin:orchestration_webhookendpoint_changelist", []),
        ("admin:orchestration_webhookendpoint_change", [delivery.endpoint_id]),
        ("admin:orchestration_webhookendpoint_add", []),
        ("admin:orchestration_webhookdelivery_changelist", []),
    ]:
        assert operator.get(reverse(name, args=args)).status_code == 200, name
    page = operator.get(reverse("admin:orchestration_webhookdelivery_change", args=[delivery.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    assert delivery.message_id in text and "upstream broke" in text and "Redeliver" in text
    assert reverse("admin:orchestration_task_change", args=[delivery.task_id]) in text


def test_deliveries_are_not_added_edited_or_deleted_by_hand(operator: Client, receiver_factory: Any) -> None:
    delivery = _delivered(receiver_factory().url)
    assert operator.get(reverse("admin:orchestration_webhookdelivery_add")).status_code == 403
    change = reverse("admin:orchestration_webhookdelivery_change", args=[delivery.pk])
    operator.post(change, {"payload": "forged"})
    assert WebhookDelivery.objects.get(pk=delivery.pk).payload == delivery.payload
    assert operator.get(reverse("admin:orchestration_webhookdelivery_delete", args=[delivery.pk])).status_code == 403


def test_adding_an_endpoint_validates_the_url_and_shows_the_secret_once(operator: Client, settings: Any) -> None:
    owner = User.objects.create(username="client")
    add = reverse("admin:orchestration_webhookendpoint_add")
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    refused = operator.post(add, {"owner": owner.pk, "url": "https://127.0.0.1/in", "events": ["task.completed"]})
    assert refused.status_code == 200 and "Refused: this URL" in refused.content.decode()
    assert not WebhookEndpoint.objects.exists()
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    added = operator.post(
        add, {"owner": owner.pk, "url": "https://hooks.example.com/in", "events": ["task.completed"]}, follow=True
    )
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.events == ["task.completed"] and endpoint.audit.get().action == WebhookAuditAction.REGISTERED
    assert any("shown this once" in message and "whsec_" in message for message in _messages(added))


def test_rotate_disable_and_enable_actions(operator: Client) -> None:
    owner = User.objects.create(username="client")
    endpoint, _ = webhook_endpoint_register(
        owner=owner, url="https://hooks.example.com/in", events=["task.completed"], actor="t"
    )
    changelist = reverse("admin:orchestration_webhookendpoint_changelist")
    before = endpoint.secret_encrypted
    rotated = operator.post(changelist, {"action": "rotate_secret", "_selected_action": [endpoint.pk]}, follow=True)
    assert any("whsec_" in message for message in _messages(rotated))
    endpoint.refresh_from_db()
    assert endpoint.secret_encrypted != before and endpoint.previous_secret_encrypted == before
    operator.post(changelist, {"action": "disable_endpoints", "_selected_action": [endpoint.pk]})
    endpoint.refresh_from_db()
    assert not endpoint.enabled and endpoint.disabled_reason == "disabled by user:ops"
    listed = operator.get(changelist).content.decode()
    assert "disabled by user:ops" in listed
    operator.post(changelist, {"action": "enable_endpoints", "_selected_action": [endpoint.pk]})
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.disabled_reason == ""
    actions = list(endpoint.audit.values_list("action", flat=True))
    assert actions == ["registered", "secret_rotated", "disabled", "enabled"]


def test_redeliver_action_and_button_keep_the_webhook_id(operator: Client, receiver_factory: Any) -> None:
    receiver = receiver_factory()
    delivery = _delivered(receiver.url)
    assert delivery.state == WebhookDeliveryState.DELIVERED
    changelist = reverse("admin:orchestration_webhookdelivery_changelist")
    operator.post(changelist, {"action": "redeliver", "_selected_action": [delivery.pk]})
    assert WebhookDelivery.objects.get(pk=delivery.pk).state == WebhookDeliveryState.PENDING
    webhooks_deliver_due()
    button = reverse("admin:orchestration_webhookdelivery_redeliver", args=[delivery.pk])
    assert operator.get(button).status_code == 405
    assert operator.post(button).status_code == 302
    webhooks_deliver_due()
    delivery.refresh_from_db()
    assert delivery.state == WebhookDeliveryState.DELIVERED and delivery.attempts == 3
    assert receiver.ids() == [delivery.message_id] * 3
    assert delivery.audit.filter(action=WebhookAuditAction.REDELIVERED, actor="user:ops").count() == 2


def test_redelivering_needs_its_permission(receiver_factory: Any) -> None:
    delivery = _delivered(receiver_factory().url)
    staff = User.objects.create_user("viewer", is_staff=True)
    staff.user_permissions.add(*_permissions("view_webhookdelivery"))
    client = Client()
    client.force_login(staff)
    assert client.get(reverse("admin:orchestration_webhookdelivery_change", args=[delivery.pk])).status_code == 200
    assert client.post(reverse("admin:orchestration_webhookdelivery_redeliver", args=[delivery.pk])).status_code == 403
    assert WebhookDelivery.objects.get(pk=delivery.pk).state == WebhookDeliveryState.DELIVERED


def _permissions(*codenames: str) -> list[Any]:
    from django.contrib.auth.models import Permission

    return list(Permission.objects.filter(content_type__app_label="orchestration", codename__in=codenames))

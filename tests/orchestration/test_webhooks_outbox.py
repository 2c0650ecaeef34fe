"""The outbox: deliveries written in the transaction of the state change, and signatures that a receiver verifies
with the standardwebhooks library over the exact bytes it received, through a secret rotation."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from orchestration.models import Task, TaskState, Transition, WebhookDelivery, WebhookEndpoint
from orchestration.services.transitions import task_transition
from orchestration.services.webhook_delivery import webhook_deliver
from orchestration.services.webhooks import (
    webhook_endpoint_disable,
    webhook_endpoint_register,
    webhook_endpoint_rotate_secret,
)
from tests.factories import submit_task
from tests.orchestration.test_webhooks_receiver import receivers_started

pytestmark = pytest.mark.django_db
receiver_factory = pytest.fixture(receivers_started, name="receiver_factory")


@pytest.fixture(autouse=True)
def _local_receivers(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True


def _move(task: Task, transition: Transition) -> None:
    task_transition(task=Task.objects.select_for_update().get(pk=task.pk), transition=transition, actor="test")


def _register(owner: User, events: list[str], url: str = "http://127.0.0.1:9/hook") -> tuple[WebhookEndpoint, str]:
    return webhook_endpoint_register(owner=owner, url=url, events=events, actor="test")


def test_a_rolled_back_transition_writes_no_delivery() -> None:
    owner = User.objects.create(username="client")
    _register(owner, ["task.completed"])
    task = submit_task(owner)
    with pytest.raises(RuntimeError), transaction.atomic():
        _move(task, Transition.COMPLETE)
        assert WebhookDelivery.objects.filter(task_id=task.pk).count() == 1, "written inside the transaction"
        raise RuntimeError("the worker's transaction fails after the move")
    assert Task.objects.get(pk=task.pk).state == TaskState.RECEIVED
    assert not WebhookDelivery.objects.exists()


def test_an_outcome_writes_one_delivery_per_enabled_subscribed_endpoint_of_its_owner() -> None:
    owner, other = User.objects.create(username="client"), User.objects.create(username="other")
    wanted, _ = _register(owner, ["task.completed", "task.cancelled"])
    _register(owner, ["task.manual_review"])  # not subscribed to completions
    disabled, _ = _register(owner, ["task.completed"])
    webhook_endpoint_disable(endpoint_id=disabled.pk, actor="test", reason="test")
    _register(other, ["task.completed"])  # someone else's
    task = submit_task(owner)
    with transaction.atomic():
        _move(task, Transition.PLAN)
    assert not WebhookDelivery.objects.exists(), "not an outcome"
    with transaction.atomic():
        _move(task, Transition.COMPLETE)
    delivery = WebhookDelivery.objects.get()
    assert delivery.endpoint == wanted and delivery.event == "task.completed"
    assert delivery.message_id.startswith("msg_") and delivery.next_attempt_at is not None
    body = json.loads(delivery.payload)
    assert body["type"] == "task.completed" and body["timestamp"].endswith("Z")
    assert body["data"] == {
        "task_id": str(task.pk),
        "state": "COMPLETED",
        "result": None,
        "reason": "",
        "handoff_reason": None,
        "trace_id": task.trace_id,
    }


def test_entering_manual_review_is_an_event() -> None:
    owner = User.objects.create(username="client")
    _register(owner, ["task.manual_review"])
    task = submit_task(owner)
    with transaction.atomic():
        _move(task, Transition.HAND_OFF)
    assert WebhookDelivery.objects.get().event == "task.manual_review"


def test_the_secret_is_stored_encrypted() -> None:
    endpoint, secret = _register(User.objects.create(username="client"), ["task.completed"])
    assert secret.startswith("whsec_")
    stored = WebhookEndpoint.objects.filter(pk=endpoint.pk).values_list("secret_encrypted", flat=True).get()
    assert secret not in stored and secret.removeprefix("whsec_") not in stored


def _delivered_to(receiver: Any, owner: User) -> tuple[bytes, dict[str, str]]:
    task = submit_task(owner)
    with transaction.atomic():
        _move(task, Transition.COMPLETE)
    delivery = WebhookDelivery.objects.get(task_id=task.pk)
    assert webhook_deliver(delivery_id=delivery.pk)
    received = receiver.received[-1]
    assert received.body == delivery.payload.encode(), "the stored bytes are the bytes sent"
    return received.body, received.headers


def test_a_delivery_verifies_with_the_secret_over_the_exact_bytes_received(receiver_factory: Any) -> None:
    receiver = receiver_factory()
    endpoint, secret = _register(User.objects.create(username="client"), ["task.completed"], url=receiver.url)
    body, headers = _delivered_to(receiver, endpoint.owner)
    assert Webhook(secret).verify(body, headers)["type"] == "task.completed"
    assert headers["webhook-signature"].startswith("v1,") and " " not in headers["webhook-signature"]
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"COMPLETED", b"CANCELLED"), headers)


def test_during_a_rotation_both_secrets_verify_and_after_it_only_the_new_one(receiver_factory: Any) -> None:
    receiver = receiver_factory()
    endpoint, old = _register(User.objects.create(username="client"), ["task.completed"], url=receiver.url)
    new = webhook_endpoint_rotate_secret(endpoint_id=endpoint.pk, actor="test")
    assert new != old
    body, headers = _delivered_to(receiver, endpoint.owner)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)

    past = timezone.now() - timedelta(seconds=1)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(previous_secret_until=past)  # the overlap is over
    body, headers = _delivered_to(receiver, endpoint.owner)
    assert len(headers["webhook-signature"].split(" ")) == 1
    Webhook(new).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(body, headers)

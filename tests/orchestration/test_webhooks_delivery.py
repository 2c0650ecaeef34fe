"""Delivering webhooks against a real local receiver: retries on the schedule, every attempt recorded, no redirect
followed, an endpoint disabled when a delivery exhausts its schedule, redelivery under the same webhook-id, the
SSRF guard at registration and at delivery time, an attempt lost with its worker."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from orchestration.models import (
    Task,
    Transition,
    WebhookAttemptOutcome,
    WebhookAuditAction,
    WebhookDelivery,
    WebhookDeliveryState,
    WebhookEndpoint,
)
from orchestration.services.transitions import task_transition
from orchestration.services.webhook_delivery import NextMove, delivery_next_move, webhook_deliver, webhooks_deliver_due
from orchestration.services.webhooks import (
    WebhookRefused,
    webhook_delivery_redeliver,
    webhook_endpoint_enable,
    webhook_endpoint_register,
)
from tests.factories import submit_task
from tests.orchestration.test_webhooks_receiver import Answer, receivers_started

pytestmark = pytest.mark.django_db
receiver_factory = pytest.fixture(receivers_started, name="receiver_factory")
ALL_EVENTS = ["task.completed", "task.failed", "task.cancelled", "task.manual_review"]


@pytest.fixture(autouse=True)
def _local_receivers(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True  # the receivers listen on loopback
    settings.WEBHOOK_RETRY_SCHEDULE_SECONDS = [5, 300]
    settings.WEBHOOK_TIMEOUT_SECONDS = 2.0


def finish(task: Task, transition: Transition = Transition.COMPLETE) -> None:
    with transaction.atomic():
        task_transition(task=Task.objects.select_for_update().get(pk=task.pk), transition=transition, actor="test")


def registered(owner: User, url: str, events: list[str] | None = None) -> tuple[WebhookEndpoint, str]:
    return webhook_endpoint_register(owner=owner, url=url, events=events or ALL_EVENTS, actor="test")


def outcome_delivery(owner: User) -> WebhookDelivery:
    task = submit_task(owner)
    finish(task)
    return WebhookDelivery.objects.get(task_id=task.pk)


def make_due(delivery: WebhookDelivery) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())


@pytest.mark.parametrize(
    ("succeeded", "attempts", "expected"),
    [
        (True, 1, NextMove(delivered=True)),
        (True, 3, NextMove(delivered=True)),
        (False, 1, NextMove(retry_in_seconds=5.5)),
        (False, 2, NextMove(retry_in_seconds=330.0)),
        (False, 3, NextMove(give_up=True)),
    ],
)
def test_what_follows_an_attempt(succeeded: bool, attempts: int, expected: NextMove) -> None:
    assert (
        delivery_next_move(succeeded=succeeded, attempts_in_round=attempts, schedule=[5, 300], jitter=0.1) == expected
    )


def test_a_failure_is_retried_on_the_schedule_and_every_attempt_is_recorded(receiver_factory: Any) -> None:
    receiver = receiver_factory(Answer(500, body=b"boom: database down"), Answer(200, body=b"thanks"))
    endpoint, _ = registered(User.objects.create(username="client"), receiver.url)
    delivery = outcome_delivery(endpoint.owner)

    before = timezone.now()
    assert webhook_deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.state == WebhookDeliveryState.PENDING and delivery.attempts == 1
    assert delivery.last_outcome == "HTTP 500"
    assert delivery.next_attempt_at is not None
    assert timedelta(seconds=5) <= delivery.next_attempt_at - before <= timedelta(seconds=5.5 + 1)
    assert webhooks_deliver_due() == 0, "not due for 5 s"

    make_due(delivery)
    assert webhooks_deliver_due() == 1
    delivery.refresh_from_db()
    assert delivery.state == WebhookDeliveryState.DELIVERED and delivery.delivered_at is not None
    attempts = list(delivery.attempt_log.order_by("number"))
    assert [(a.number, a.outcome, a.status_code) for a in attempts] == [
        (1, WebhookAttemptOutcome.FAILED, 500),
        (2, WebhookAttemptOutcome.SUCCEEDED, 200),
    ]
    assert attempts[0].response_excerpt == "boom: database down" and attempts[1].response_excerpt == "thanks"
    assert all(a.duration_ms is not None and a.started_at for a in attempts)
    assert receiver.ids() == [delivery.message_id] * 2, "the webhook-id is stable across retries"
    assert {r.body for r in receiver.received} == {delivery.payload.encode()}, "the same bytes every time"
    endpoint.refresh_from_db()
    assert endpoint.last_success_at is not None and endpoint.last_failure_at is not None


def test_a_redirect_is_not_followed_and_counts_as_a_failure(receiver_factory: Any) -> None:
    elsewhere = receiver_factory()
    receiver = receiver_factory(Answer(302, headers={"Location": elsewhere.url}))
    endpoint, _ = registered(User.objects.create(username="client"), receiver.url)
    delivery = outcome_delivery(endpoint.owner)
    webhook_deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.state == WebhookDeliveryState.PENDING and delivery.last_outcome == "HTTP 302"
    assert len(receiver.received) == 1 and elsewhere.received == []


def test_an_exhausted_schedule_disables_the_endpoint_and_keeps_its_other_deliveries(receiver_factory: Any) -> None:
    receiver = receiver_factory(default=Answer(500))
    endpoint, _ = registered(User.objects.create(username="client"), receiver.url)
    doomed, waiting = outcome_delivery(endpoint.owner), outcome_delivery(endpoint.owner)
    WebhookDelivery.objects.filter(pk=waiting.pk).update(next_attempt_at=timezone.now() + timedelta(hours=1))
    for _ in range(3):  # the first attempt and the schedule's two retries
        make_due(doomed)
        assert webhook_deliver(delivery_id=doomed.pk)
    doomed.refresh_from_db()
    endpoint.refresh_from_db()
    assert doomed.state == WebhookDeliveryState.FAILED and doomed.failed_at is not None
    assert not endpoint.enabled and endpoint.disabled_at is not None
    assert endpoint.disabled_reason.startswith("disabled at ")
    assert f"delivery {doomed.message_id} failed 3 attempts since " in endpoint.disabled_reason
    assert endpoint.disabled_reason.endswith("; last: HTTP 500")
    assert endpoint.audit.filter(action=WebhookAuditAction.DISABLED).exists()

    make_due(waiting)
    assert webhooks_deliver_due() == 0, "a disabled endpoint's deliveries are kept, not attempted"
    assert WebhookDelivery.objects.get(pk=waiting.pk).state == WebhookDeliveryState.PENDING
    assert len(receiver.received) == 3

    receiver.default = Answer(200)
    webhook_endpoint_enable(endpoint_id=endpoint.pk, actor="user:ops")
    assert webhooks_deliver_due() == 1, "re-enabled: its pending delivery is due at once"
    assert WebhookDelivery.objects.get(pk=waiting.pk).state == WebhookDeliveryState.DELIVERED
    assert WebhookDelivery.objects.get(pk=doomed.pk).state == WebhookDeliveryState.FAILED, "until redelivered"


def test_redelivery_keeps_the_webhook_id_and_is_audited(receiver_factory: Any) -> None:
    receiver = receiver_factory()
    endpoint, _ = registered(User.objects.create(username="client"), receiver.url)
    delivery = outcome_delivery(endpoint.owner)
    webhook_deliver(delivery_id=delivery.pk)
    webhook_delivery_redeliver(delivery_id=delivery.pk, actor="user:ops", note="client lost it")
    delivery.refresh_from_db()
    assert delivery.state == WebhookDeliveryState.PENDING and delivery.round_started_at_attempt == 1
    assert webhooks_deliver_due() == 1
    delivery.refresh_from_db()
    assert delivery.state == WebhookDeliveryState.DELIVERED and delivery.attempts == 2
    assert receiver.ids() == [delivery.message_id, delivery.message_id]
    entry = delivery.audit.get(action=WebhookAuditAction.REDELIVERED)
    assert (entry.actor, entry.note) == ("user:ops", "client lost it")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://127.0.0.1/hook", "loopback, private"),
        ("https://10.1.2.3/hook", "loopback, private"),
        ("https://169.254.169.254/latest/meta-data", "loopback, private"),
        ("https://[::1]/hook", "loopback, private"),
        ("https://[::ffff:192.168.0.1]/hook", "loopback, private"),
        ("https://0.0.0.0/hook", "loopback, private"),
        ("http://93.184.215.14/hook", "must use https"),
        ("ftp://93.184.215.14/hook", "http(s) URL"),
        ("https://user:pw@93.184.215.14/hook", "credentials"),
    ],
)
def test_internal_addresses_are_refused_at_registration(settings: Any, url: str, why: str) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    with pytest.raises(WebhookRefused, match=why.replace("(", r"\(").replace(")", r"\)")):
        registered(User.objects.create(username="client"), url)
    assert not WebhookEndpoint.objects.exists()


def test_an_internal_address_is_refused_again_at_delivery_time(settings: Any, receiver_factory: Any) -> None:
    receiver = receiver_factory()
    endpoint, _ = registered(User.objects.create(username="client"), receiver.url)
    delivery = outcome_delivery(endpoint.owner)
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False  # e.g. production settings, or a name that now resolves inside
    webhook_deliver(delivery_id=delivery.pk)
    attempt = delivery.attempt_log.get()
    assert attempt.outcome == WebhookAttemptOutcome.FAILED and attempt.status_code is None
    assert attempt.error.startswith("refused: url must use https")
    assert receiver.received == []


def test_a_timeout_is_a_recorded_failure(settings: Any, receiver_factory: Any) -> None:
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    receiver = receiver_factory(Answer(200, delay=2.0))
    endpoint, _ = registered(User.objects.create(username="client"), receiver.url)
    delivery = outcome_delivery(endpoint.owner)
    webhook_deliver(delivery_id=delivery.pk)
    attempt = delivery.attempt_log.get()
    assert attempt.outcome == WebhookAttemptOutcome.FAILED and "Timeout" in attempt.error


def test_an_attempt_lost_with_its_worker_is_retried_after_its_lease(receiver_factory: Any) -> None:
    from orchestration.services.webhook_delivery import _claim

    receiver = receiver_factory()
    endpoint, _ = registered(User.objects.create(username="client"), receiver.url)
    delivery = outcome_delivery(endpoint.owner)
    assert _claim(delivery_id=delivery.pk) is not None  # claimed, then the worker "dies" before posting
    assert not webhook_deliver(delivery_id=delivery.pk), "the lease still holds it"
    WebhookDelivery.objects.filter(pk=delivery.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert webhooks_deliver_due() == 1
    delivery.refresh_from_db()
    assert delivery.state == WebhookDeliveryState.DELIVERED
    outcomes = list(delivery.attempt_log.order_by("number").values_list("number", "outcome"))
    assert outcomes == [(1, WebhookAttemptOutcome.LOST), (2, WebhookAttemptOutcome.SUCCEEDED)]
    assert receiver.ids() == [delivery.message_id]

"""Webhooks on a real worker: tasks finish while the worker delivering their outcomes is SIGKILLed mid-POST; a new
worker and the beat sweep deliver every outcome (0 lost). Duplicates at the receiver (a POST that arrived, whose
answer died with the worker) are allowed, and counted: the webhook-id lets the receiver drop them."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from celery import current_app
from django.contrib.auth.models import User
from django.db import transaction
from standardwebhooks.webhooks import Webhook

from orchestration.models import Task, Transition, WebhookAttempt, WebhookDelivery, WebhookDeliveryState
from orchestration.services.transitions import task_transition
from orchestration.services.webhooks import webhook_endpoint_register
from tests.factories import submit_task
from tests.orchestration.test_webhooks_receiver import Answer, scripted_receiver
from tests.workers import StartWorker, wait_until

pytestmark = pytest.mark.worker

TASKS = 30
KILL_AFTER_REQUESTS = 8
WORKER_ENV = {
    "WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true",
    "WEBHOOK_RETRY_SCHEDULE_SECONDS": "1,1,1,1,1,1",
    "WEBHOOK_TIMEOUT_SECONDS": "1",  # a lease of 2 x 1 + 5 s: a killed worker's delivery is taken back within 7 s
}


def _complete(task: Task) -> None:
    with transaction.atomic():
        locked = Task.objects.select_for_update().get(pk=task.pk)
        task_transition(task=locked, transition=Transition.COMPLETE, actor="test")


def _delivered() -> int:
    return WebhookDelivery.objects.filter(state=WebhookDeliveryState.DELIVERED).count()


def test_a_killed_delivery_worker_loses_no_outcome(start_worker: StartWorker, settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    # Every answer waits a little, so the kill lands inside a POST; every fifth answer is a 500, so some retry.
    receiver = scripted_receiver(
        *[Answer(500 if n % 5 == 4 else 200, delay=0.3) for n in range(4 * TASKS)], default=Answer(200)
    )
    owner = User.objects.create_user("webhook-client")
    _, secret = webhook_endpoint_register(owner=owner, url=receiver.url, events=["task.completed"], actor="test")
    tasks = [submit_task(owner) for _ in range(TASKS)]
    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # no run_task messages: this test finishes the tasks itself

    doomed = start_worker(concurrency=2, **WORKER_ENV)
    finished = 0
    while len(receiver.received) < KILL_AFTER_REQUESTS and finished < TASKS:
        _complete(tasks[finished])  # its deliver_webhook message goes out on commit
        finished += 1
    wait_until(lambda: len(receiver.received) >= KILL_AFTER_REQUESTS, timeout=30, describe="deliveries under way")
    doomed.kill()  # the last request arrived and waits for its answer: its worker dies mid-POST
    killed_in_flight = WebhookAttempt.objects.filter(outcome="in_flight").count()
    for task in tasks[finished:]:
        _complete(task)  # finished while no worker runs: the messages wait, or are lost with the broker's unacked

    start_worker(concurrency=2, **WORKER_ENV)

    def all_delivered() -> bool:
        current_app.send_task("orchestration.tasks.deliver_due_webhooks")  # as Celery beat would, every second
        return _delivered() == TASKS

    wait_until(all_delivered, timeout=45, describe="every outcome delivered")
    receiver.shutdown()

    deliveries = {d.message_id: d for d in WebhookDelivery.objects.all()}
    received_ids = receiver.ids()
    lost = set(deliveries) - set(received_ids)
    duplicates = receiver.duplicates()
    attempts = WebhookAttempt.objects.count()
    for request in receiver.received:
        Webhook(secret).verify(request.body, request.headers)  # every request, duplicates too, is signed
    reached = {Webhook(secret).verify(r.body, r.headers)["data"]["task_id"] for r in receiver.received}
    print(
        f"\nwebhooks: {len(deliveries)} deliveries, {attempts - len(deliveries)} retries, {duplicates} duplicates at "
        f"the receiver, {len(lost)} lost ({killed_in_flight} attempt(s) in flight at the kill, "
        f"{len(received_ids)} requests received)"
    )
    assert len(deliveries) == TASKS and not lost
    assert reached == {str(task.pk) for task in tasks}
    assert killed_in_flight >= 1, "the kill should land inside a POST"
    assert WebhookAttempt.objects.filter(outcome="lost").count() >= killed_in_flight

"""An endpoint that kept failing, in a real Chromium: the admin shows why it was disabled and every attempt; once
the client fixed its receiver, the endpoint is enabled and the delivery redelivered with the same webhook-id, and
it arrives. The delivery page is saved as a screenshot (the README shows it)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone
from playwright.sync_api import Page, expect

from orchestration.models import Task, Transition, WebhookDelivery, WebhookDeliveryState, WebhookEndpoint
from orchestration.services.transitions import task_transition
from orchestration.services.webhook_delivery import webhooks_deliver_due
from orchestration.services.webhooks import webhook_endpoint_register
from tests.browser.conftest import AdminLogin, Screenshot
from tests.factories import submit_task
from tests.orchestration.test_webhooks_receiver import Answer, receivers_started

PASSWORD = "browser-admin-password-1"
receiver_factory = pytest.fixture(receivers_started, name="receiver_factory")


def _in_thread(work: Any) -> None:
    """Deliveries run as a worker's would: in a thread of their own, since Playwright's event loop holds this one."""

    def run() -> None:
        try:
            work()
        finally:
            connection.close()

    runner = threading.Thread(target=run)
    runner.start()
    runner.join()


def _a_delivery_that_failed(receiver_url: str) -> WebhookDelivery:
    owner = User.objects.create(username="billing-service")
    webhook_endpoint_register(owner=owner, url=receiver_url, events=["task.completed"], actor="test")
    task = submit_task(owner, goal="Look up order A-1001")
    with transaction.atomic():
        locked = Task.objects.select_for_update().get(pk=task.pk)
        task_transition(task=locked, transition=Transition.COMPLETE, actor="test")
    for _ in range(2):  # the first attempt and its one retry both fail
        WebhookDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
        _in_thread(webhooks_deliver_due)
    delivery = WebhookDelivery.objects.get(task_id=task.pk)
    assert delivery.state == WebhookDeliveryState.FAILED
    return delivery


def test_an_operator_sees_why_and_redelivers_once_the_receiver_is_fixed(
    page: Page, admin_login: AdminLogin, screenshot: Screenshot, receiver_factory: Any, settings: Any
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES, settings.WEBHOOK_RETRY_SCHEDULE_SECONDS = True, [5]
    receiver = receiver_factory(Answer(500, body=b"upstream broke"), Answer(503, body=b"maintenance"))
    delivery = _a_delivery_that_failed(receiver.url)
    User.objects.create_superuser("admin", "admin@example.invalid", PASSWORD)
    admin_login("admin", PASSWORD)

    page.goto("/admin/orchestration/webhookendpoint/")
    expect(page.locator("#result_list")).to_contain_text("failed 2 attempts")
    page.goto(f"/admin/orchestration/webhookdelivery/{delivery.pk}/change/")
    expect(page.locator("body")).to_contain_text(delivery.message_id)
    expect(page.locator("body")).to_contain_text("upstream broke")
    expect(page.locator("body")).to_contain_text("maintenance")
    screenshot(page, "webhook-delivery")

    page.goto("/admin/orchestration/webhookendpoint/")
    page.locator("input[name=_selected_action]").first.check()
    page.select_option("select[name=action]", "enable_endpoints")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_be_visible()
    assert WebhookEndpoint.objects.get(pk=delivery.endpoint_id).enabled
    page.goto(f"/admin/orchestration/webhookdelivery/{delivery.pk}/change/")
    page.click("text=Redeliver (same webhook-id)")
    expect(page.locator(".messagelist")).to_contain_text(f"Redelivering 1 delivery(ies): {delivery.message_id}")

    WebhookDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    _in_thread(webhooks_deliver_due)
    delivery.refresh_from_db()
    assert delivery.state == WebhookDeliveryState.DELIVERED
    ids = [received.headers["webhook-id"] for received in receiver.received]
    assert ids == [delivery.message_id] * 3  # two failures and the redelivery: one id throughout
    page.reload()
    expect(page.locator("body")).to_contain_text("DELIVERED")

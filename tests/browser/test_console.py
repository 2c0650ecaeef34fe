"""An operator works the manual queue in a real Chromium, against the live server and a real Celery worker:
claims a refund whose retries were used up, resolves the failed call with a result, and watches the task resume
and complete. The queue and the task page are saved as screenshots (the README shows them)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.utils import timezone
from playwright.sync_api import Page, expect

from orchestration.models import Step, StepState, Task, TaskState
from orchestration.services.execution import task_run
from shop.models import Order, Refund
from tests.browser.conftest import AdminLogin, Screenshot
from tests.factories import submit_task
from tests.workers import StartWorker, wait_until

pytestmark = pytest.mark.usefixtures("queue_groups", "demo_orders")

PASSWORD = "browser-operator-password-1"
REFUND = {"order_number": "A-1002", "amount_cents": 2000, "currency": "USD", "reason": "damaged box"}


def _run(task: Task) -> Task:
    """One run, as a worker would: in a thread of its own, since Playwright's event loop holds this one."""

    def work() -> None:
        try:
            task_run(task_id=str(task.pk), worker="worker:setup")
        finally:
            connection.close()

    Task.objects.filter(pk=task.pk).update(next_run_at=timezone.now())
    runner = threading.Thread(target=work)
    runner.start()
    runner.join()
    task.refresh_from_db()
    return task


def _queue_with_a_stuck_refund() -> Task:
    client = User.objects.create_user("shop-backend")
    Order.objects.filter(number="A-1002").update(settlement_locked_until=timezone.now() + timedelta(hours=1))
    refund = submit_task(client, goal="Refund order A-1002", task_input=REFUND)
    for _ in range(4):
        refund = _run(refund)
    assert refund.state == TaskState.MANUAL_REVIEW
    # Two more reasons to wait, so the queue looks as it does on a working day.
    _run(submit_task(client, goal="Escalate to a human", task_input={"reason": "VIP customer asks for a call"}))
    big = {**REFUND, "order_number": "A-1003", "amount_cents": 90000, "currency": "EUR"}
    _run(submit_task(client, goal="Refund order A-1003", task_input=big))
    return refund


def _operator() -> None:
    alice = User.objects.create_user("alice", password=PASSWORD, is_staff=True)
    alice.groups.add(Group.objects.get(name="operators"))


def _fill_the_refunds_result(page: Page) -> None:
    """What the operator read off the payment provider's dashboard, typed into the form the schema made."""
    order = Order.objects.get(number="A-1002")
    form = page.locator("#action-resolve")
    values = {
        "refund_id": "4711",
        "refunded__amount_cents": "2000",
        "refunded__currency": "USD",
        "order__order_number": "A-1002",
        "order__total__amount_cents": str(order.amount_cents),
        "order__total__currency": order.currency,
        "order__refunded__amount_cents": "2000",
        "order__refunded__currency": order.currency,
        "order__shipping_address__line1": order.shipping_address["line1"],
        "order__shipping_address__city": order.shipping_address["city"],
        "order__shipping_address__postal_code": order.shipping_address["postal_code"],
        "order__shipping_address__country": order.shipping_address["country"],
        "order__created_at": order.created_at.isoformat(),
        "order__updated_at": timezone.now().isoformat(),
        "created_at": timezone.now().isoformat(),
    }
    for name, value in values.items():
        form.locator(f"#id_result__{name}").fill(value)
    form.locator("#id_result__order__status").select_option(order.status)
    form.locator("#id_note").fill("Refunded by hand in the provider's dashboard; settlement lock was stuck")
    form.locator("#id_confirm").check()


def test_an_operator_resolves_a_stuck_refund_and_the_task_completes(
    admin_login: AdminLogin, screenshot: Screenshot, start_worker: StartWorker
) -> None:
    refund = _queue_with_a_stuck_refund()
    _operator()
    start_worker()  # a real worker takes the task up once the operator has decided
    page = admin_login("alice", PASSWORD)

    page.get_by_role("link", name="Manual queue").click()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(3)
    row = rows.filter(has_text=str(refund.pk)[:8])
    expect(row).to_contain_text("retries used up")
    expect(row).to_contain_text("ORDER_LOCKED")
    screenshot(page, "console-queue")

    row.get_by_role("link", name=str(refund.pk)[:8]).click()
    expect(page.locator("#handoff-reason")).to_contain_text("retries used up")
    page.locator("#claim").click()
    expect(page.locator("#held-by")).to_contain_text("alice (you)")
    _fill_the_refunds_result(page)
    screenshot(page, "console-task-waiting")
    page.locator("#submit-resolve").click()
    expect(page.locator(".messagelist")).to_contain_text("Resolved")

    wait_until(lambda: Task.objects.get(pk=refund.pk).state == TaskState.COMPLETED, timeout=60, describe="completed")
    page.reload()
    expect(page.locator("#task-state")).to_have_text("COMPLETED")
    expect(page.locator("#timeline")).to_contain_text("result entered by user:alice")
    expect(page.locator("#operator-actions")).to_contain_text("Refunded by hand")
    screenshot(page, "console-task-completed")
    step = Step.objects.get(task=refund, name="refund_order")
    assert (step.state, step.decided_by) == (StepState.SUCCEEDED, "user:alice")
    assert not Refund.objects.filter(order__number="A-1002").exists(), "the tool did not run again"


def test_an_operator_sends_a_task_back_with_an_instruction(
    admin_login: AdminLogin, screenshot: Screenshot, start_worker: StartWorker
) -> None:
    client = User.objects.create_user("shop-backend")
    task = _run(submit_task(client, goal="Escalate to a human", task_input={"order_number": "A-1001"}))
    assert task.handoff_reason == "agent_asked"
    _operator()
    start_worker()
    page = admin_login("alice", PASSWORD)
    page.goto(f"/admin/orchestration/task/{task.pk}/change/")
    expect(page.locator("#handoff-reason")).to_contain_text("the agent asked for a human")
    page.locator("#claim").click()
    form = page.locator("#action-send_back")
    form.locator("#id_instruction").fill("Look up order A-1001 and tell the customer its status")
    form.locator("#id_note").fill("The customer only wants the order's status")
    form.locator("#id_confirm").check()
    form.locator("#submit-send_back").click()
    expect(page.locator(".messagelist")).to_contain_text("Sent back")

    wait_until(lambda: Task.objects.get(pk=task.pk).state == TaskState.COMPLETED, timeout=60, describe="completed")
    page.reload()
    expect(page.locator("#task-state")).to_have_text("COMPLETED")
    expect(page.locator("#timeline")).to_contain_text("operator instruction")
    expect(page.locator("#timeline")).to_contain_text("lookup_order")
    expect(page.locator("#task-result")).to_contain_text("A-1001")
    screenshot(page, "console-sent-back")

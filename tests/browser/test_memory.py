"""An operator opens a later task of a customer's session and sees its memory: the session's summary, what this
task added, and each turn's facts with their relevance scores, in a real Chromium."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from playwright.sync_api import expect

from orchestration.models import Task
from orchestration.services.execution import task_run
from shop.services import orders_seed_demo
from tests.browser.conftest import AdminLogin, Screenshot
from tests.memory.test_sessions import _submit

PASSWORD = "browser-test-password-1"
pytestmark = pytest.mark.usefixtures("queue_groups")


def _run_elsewhere(task: Task) -> None:
    """Run the task on a thread of its own: Playwright's event loop holds this one (async_to_sync refuses it)."""

    def run() -> None:
        try:
            task_run(task_id=str(task.pk), worker="worker:test")
        finally:
            connection.close()  # this thread's own connection, or the test database could not be dropped

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(timeout=60)


def test_the_task_page_shows_what_memory_sent_each_turn(admin_login: AdminLogin, screenshot: Screenshot) -> None:
    orders_seed_demo()
    operator = User.objects.create_user("ops", "ops@example.invalid", PASSWORD, is_staff=True)
    operator.groups.add(Group.objects.get(name="operators"))
    client = User.objects.create_user("shop-frontend")
    _run_elsewhere(_submit(client, "Look up order A-1001", "customer-42", {"order_number": "A-1001"}))
    later = _submit(client, "Has order A-1001 shipped yet?", "customer-42")
    _run_elsewhere(later)

    page = admin_login("ops", PASSWORD)
    page.goto(f"/admin/orchestration/task/{later.pk}/change/")
    memory = page.locator("#memory")
    expect(memory).to_contain_text("Session customer-42: version 2")
    expect(memory).to_contain_text("this task recalled version 1")
    expect(page.locator("#memory-turns")).to_contain_text("lookup_order succeeded")
    memory.locator("summary").first.click()
    expect(memory.locator(".summary-facts li").first).to_be_visible()
    screenshot(page, "console-memory")

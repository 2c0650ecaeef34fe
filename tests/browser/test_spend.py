"""A platform engineer follows the task list's link to spend by client, agent and version, in a real Chromium."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import User
from playwright.sync_api import expect

from orchestration.models import Task, TaskState
from tests.browser.conftest import AdminLogin, Screenshot
from tests.factories import submit_task

PASSWORD = "browser-test-password-1"


def test_spend_by_client_agent_and_version(admin_login: AdminLogin, screenshot: Screenshot) -> None:
    User.objects.create_superuser("ops", "ops@example.invalid", PASSWORD)
    for client, spent in (("shop-frontend", ["0.0124", "0.0311", "0.0087"]), ("support-bot", ["0.0450"])):
        owner = User.objects.create_user(client)
        for cost in spent:
            task = submit_task(owner)
            tokens = int(Decimal(cost) * 400_000)
            Task.objects.filter(pk=task.pk).update(
                state=TaskState.COMPLETED, input_tokens=tokens, output_tokens=tokens // 5, cost=Decimal(cost)
            )

    page = admin_login("ops", PASSWORD)
    page.goto("/admin/orchestration/task/")
    page.locator("#spend-link").click()
    expect(page.locator("#content h1")).to_have_text("Spend")
    page.get_by_role("link", name="30d").click()
    by_client = page.locator("#spend-by-client tbody tr")
    expect(by_client).to_have_count(2)
    expect(by_client.first).to_contain_text("shop-frontend")  # the costliest first: 0.0522 against 0.0450
    expect(page.locator("#spend-by-agent-version")).to_contain_text("default v1")
    screenshot(page, "spend")

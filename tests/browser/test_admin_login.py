"""An operator logs in through the real admin form and sees the task list, in a real Chromium."""

from __future__ import annotations

from django.contrib.auth.models import User
from playwright.sync_api import expect

from tests.browser.conftest import AdminLogin, Screenshot
from tests.factories import submit_task

PASSWORD = "browser-test-password-1"


def test_operator_logs_in_and_opens_the_task_list(admin_login: AdminLogin, screenshot: Screenshot) -> None:
    User.objects.create_superuser("ops", "ops@example.invalid", PASSWORD)
    task = submit_task(User.objects.create_user("client"), goal="Look up order A-1001 for the browser test")

    page = admin_login("ops", PASSWORD)

    expect(page.locator("#content h1")).to_have_text("Site administration")
    expect(page.locator("#user-tools")).to_contain_text("Welcome, ops")
    expect(page.get_by_role("link", name="Tasks", exact=True)).to_be_visible()
    screenshot(page, "admin-index")

    page.get_by_role("link", name="Tasks", exact=True).click()
    expect(page).to_have_url("/admin/orchestration/task/")
    expect(page.locator("#content h1")).to_have_text("Select task to view")
    row = page.locator("#result_list tbody tr", has_text=str(task.pk))
    expect(row).to_contain_text("Look up order A-1001 for the browser test")
    expect(row).to_contain_text("Received")  # no worker runs here, so the task stays as submitted
    screenshot(page, "admin-task-changelist")

"""The admin's content security policy holds in a real Chromium and breaks nothing: the console's step snapshots,
loaded by its script (a static file, since inline scripts are refused), open; an inline script is refused. The
`page` fixture fails any browser test whose pages the policy blocked anything on."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone
from playwright.sync_api import Page, expect

from orchestration.models import Task, TaskState
from orchestration.services.execution import task_run
from tests.browser.conftest import AdminLogin
from tests.factories import submit_task

pytestmark = pytest.mark.usefixtures("demo_orders")
PASSWORD = "browser-admin-password-1"


def _finished_task() -> Task:
    task = submit_task(User.objects.create_user("shop-backend"), goal="Look up order A-1001")

    def work() -> None:  # in a thread of its own: Playwright's event loop holds this one
        try:
            for _ in range(4):
                Task.objects.filter(pk=task.pk).update(next_run_at=timezone.now())
                task_run(task_id=str(task.pk), worker="worker:csp")
        finally:
            connection.close()

    runner = threading.Thread(target=work)
    runner.start()
    runner.join()
    task.refresh_from_db()
    assert task.state == TaskState.COMPLETED, task.state_reason
    return task


def test_the_console_loads_step_snapshots_under_the_policy(page: Page, admin_login: AdminLogin) -> None:
    task = _finished_task()
    User.objects.create_superuser("admin", "admin@example.invalid", PASSWORD)
    admin_login("admin", PASSWORD)
    response = page.goto(f"/admin/orchestration/task/{task.pk}/change/")
    assert response is not None and "script-src 'self'" in response.headers["content-security-policy"]
    snapshot = page.locator("#timeline details[data-src]").first
    snapshot.locator("summary").click()
    expect(snapshot.locator("pre")).not_to_have_text("")
    expect(snapshot.locator("pre")).not_to_have_text("loading...")
    expect(snapshot.locator("pre")).not_to_have_text("could not load; the API has it")


def test_an_inline_script_is_refused(page: Page, admin_login: AdminLogin, csp_blocked: list[str]) -> None:
    User.objects.create_superuser("admin", "admin@example.invalid", PASSWORD)
    admin_login("admin", PASSWORD)
    page.goto("/admin/")
    ran = page.evaluate(
        """() => {
            window.injected = false;
            const script = document.createElement('script');
            script.textContent = 'window.injected = true';
            document.body.appendChild(script);
            return window.injected;
        }"""
    )
    assert ran is False
    page.wait_for_function("() => true")  # let the queued violation event reach the console
    for _ in range(20):
        if csp_blocked:
            break
        page.wait_for_timeout(50)
    assert any("script-src" in text for text in csp_blocked), csp_blocked
    csp_blocked.clear()  # provoked on purpose: not a failure of this page


def test_the_api_docs_render_under_the_policy(page: Page) -> None:
    """Swagger UI (drf-spectacular's split view: its start-up script is a URL of its own, not inline) renders the
    schema with nothing blocked."""
    response = page.goto("/api/docs/")
    assert response is not None and "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Agent operations platform API")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()

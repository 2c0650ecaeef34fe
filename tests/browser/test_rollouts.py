"""A platform engineer runs a canary in a real Chromium: saves an edit of the agent as a canary, reads canary and
stable side by side once tasks have run, and flips the rollback switch with a reason. The rollout page is saved
as a screenshot (the README shows it)."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from playwright.sync_api import expect

from agent_runtime.models import AgentConfig, Rollout, RolloutEventKind, RolloutState
from orchestration.models import Task
from orchestration.services.execution import task_run
from tests.browser.conftest import AdminLogin, Screenshot
from tests.factories import LOOKUP, submit_task

pytestmark = pytest.mark.usefixtures("queue_groups", "demo_orders")

PASSWORD = "browser-engineer-password-1"


def _run_tasks(count: int) -> None:
    """Tasks of as many customers, each run as a worker would: in a thread of its own, since Playwright's event
    loop holds this one."""
    client = User.objects.create_user("shop-backend")

    def work() -> None:
        try:
            for n in range(count):
                task = submit_task(client, **LOOKUP, routing_key=f"customer-{n}")
                task_run(task_id=str(task.pk), worker="worker:setup")
        finally:
            connection.close()

    runner = threading.Thread(target=work)
    runner.start()
    runner.join()


def test_an_engineer_starts_a_canary_compares_it_and_rolls_it_back(
    admin_login: AdminLogin, screenshot: Screenshot
) -> None:
    engineer = User.objects.create_user("erin", password=PASSWORD, is_staff=True)
    engineer.groups.add(Group.objects.get(name="platform engineers"))
    agent = AgentConfig.objects.get(name="default")
    page = admin_login("erin", PASSWORD)

    page.goto(f"/admin/agent_runtime/agentconfig/{agent.pk}/change/")
    page.locator("#id_max_turns").fill("6")
    page.get_by_label("Start a canary").check()
    page.locator("#id_canary_percent").fill("50")
    page.locator("#id_comment").fill("six turns should be enough")
    page.locator("input[name=_save]").click()
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    rollout = Rollout.objects.get(state=RolloutState.ACTIVE)
    assert AgentConfig.objects.get(pk=agent.pk).current_id == rollout.stable_id

    _run_tasks(30)
    page.goto("/admin/agent_runtime/rollout/")
    page.get_by_role("link", name="default").first.click()
    table = page.locator("table.rollout-comparison")
    expect(table).to_contain_text("success rate (95 % interval)")
    expect(table).to_contain_text(f"v{rollout.canary.number}")
    counts = [Task.objects.filter(rollout=rollout, rollout_arm=arm).count() for arm in ("stable", "canary")]
    assert min(counts) > 0 and sum(counts) == 30
    expect(table.locator("tr", has_text="tasks assigned").locator("td")).to_have_text([str(n) for n in counts])
    screenshot(page, "rollout")

    page.get_by_label("Roll back: every new task gets the stable version, now").check()
    page.locator("#id_reason").fill("answers got terse; rolling back to compare again next week")
    page.locator("input[name=_save]").click()
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.ROLLED_BACK
    event = rollout.events.get(kind=RolloutEventKind.ROLLED_BACK)
    assert (event.actor, event.reason) == ("user:erin", "answers got terse; rolling back to compare again next week")

"""Every admin page an operator can open renders, with data in it (no 500 anywhere)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from orchestration.services.execution import task_run
from tests.factories import submit_task


def test_what_operators_and_engineers_work_with_is_in_the_admin() -> None:
    from agent_runtime.models import AgentConfig, AgentVersion, ModelPrice
    from orchestration.models import Approval, QueueTask, Task
    from tools.models import ToolContract, ToolContractVersion

    wanted = {Task, QueueTask, Approval, ToolContract, ToolContractVersion, AgentConfig, AgentVersion, ModelPrice}
    assert wanted <= set(admin.site._registry)


@pytest.mark.django_db
def test_every_changelist_and_change_page_renders(demo_orders: None) -> None:
    owner = User.objects.create(username="client")
    examples: list[tuple[str, dict[str, Any]]] = [
        ("Look up order A-1001 and add an order note", {"order_number": "A-1001", "note": "n"}),
        ("Refund order A-1002", {"order_number": "A-1002", "amount_cents": 90000, "currency": "USD", "reason": "r"}),
    ]
    for goal, task_input in examples:
        task = submit_task(owner, goal=goal, task_input=task_input)
        task_run(task_id=str(task.pk), worker="worker:test")
    client = Client()
    client.force_login(User.objects.create_superuser("ops", "ops@example.invalid", "unused-password-1"))
    for model in admin.site._registry:
        meta = model._meta
        changelist = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        assert client.get(changelist).status_code == 200, changelist
        obj = model._default_manager.order_by("pk").first()
        if obj is not None:
            change = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
            assert client.get(change, follow=True).status_code == 200, change


@pytest.mark.django_db
def test_the_task_list_filters_by_agent_and_finds_a_task_by_its_keys() -> None:
    # The agent filter lists agents from their configurations (no SELECT DISTINCT over every task) and the
    # searches are served by the indexes of migration 0012; both must still find what they did.
    owner = User.objects.create(username="client")
    task = submit_task(owner, goal="Look up order A-4242")
    client = Client()
    client.force_login(User.objects.create_superuser("ops", "ops@example.invalid", "unused-password-1"))
    changelist = reverse("admin:orchestration_task_changelist")
    listed = client.get(changelist)
    assert listed.status_code == 200 and "?agent__exact=default" in listed.content.decode()
    assert str(task.pk) in client.get(changelist, {"agent__exact": "default"}).content.decode()
    assert str(task.pk) not in client.get(changelist, {"agent__exact": "nobody"}).content.decode()
    for term in (str(task.pk), task.trace_id, task.idempotency_key, "A-4242"):
        assert str(task.pk) in client.get(changelist, {"q": term}).content.decode(), term

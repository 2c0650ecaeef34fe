"""The rollout workflow in the admin, as a platform engineer does it: save an edit as a canary, read canary and
stable side by side, change the share, flip the switch; every change with its reason, and operators only look."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client

from agent_runtime.models import AgentConfig, Rollout, RolloutEventKind, RolloutState
from agent_runtime.services import AgentInvalid, agent_propose, agent_restore
from orchestration.services.execution import task_run
from tests.factories import LOOKUP, agent_form, submit_task

pytestmark = pytest.mark.django_db


def _staff_in(group: str, name: str) -> Client:
    user = User.objects.create_user(name, password="unused-password-1", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def engineer() -> Client:
    return _staff_in("platform engineers", "engineer-1")


def _agent_url() -> str:
    return f"/admin/agent_runtime/agentconfig/{AgentConfig.objects.get(name='default').pk}/change/"


def _start_canary(engineer: Client, percent: str = "10") -> Rollout:
    response = engineer.post(
        _agent_url(),
        agent_form(max_turns=6, release="canary", canary_percent=percent, comment="fewer turns should do"),
    )
    assert response.status_code == 302, response.content[:2000]
    return Rollout.objects.get(state=RolloutState.ACTIVE)


def test_an_edit_saved_as_a_canary_leaves_stable_current_and_starts_the_rollout(engineer: Client) -> None:
    rollout = _start_canary(engineer)
    agent = AgentConfig.objects.get(name="default")
    assert agent.current_id == rollout.stable_id and rollout.canary.max_turns == 6
    assert rollout.canary_percent == Decimal("10.00") and rollout.started_by == User.objects.get(username="engineer-1")
    event = rollout.events.get()
    assert (event.kind, event.actor, event.reason) == (
        RolloutEventKind.STARTED,
        "user:engineer-1",
        "fewer turns should do",
    )
    # While it runs, an edit can neither become current nor start a second canary.
    refused = engineer.post(_agent_url(), agent_form(max_turns=5))
    assert refused.status_code == 200 and "release" in refused.context["adminform"].form.errors
    second = engineer.post(_agent_url(), agent_form(max_turns=5, release="canary", canary_percent="5", comment="x"))
    assert "release" in second.context["adminform"].form.errors
    assert agent.versions.count() == 2


def test_a_canary_needs_a_reason(engineer: Client) -> None:
    response = engineer.post(_agent_url(), agent_form(max_turns=6, release="canary", canary_percent="10"))
    assert response.status_code == 200 and "comment" in response.context["adminform"].form.errors
    assert not Rollout.objects.exists() and AgentConfig.objects.get(name="default").versions.count() == 1


def _run_tasks(count: int) -> None:
    owner = User.objects.create_user(f"client-{uuid.uuid4().hex[:6]}")
    for n in range(count):
        task = submit_task(owner, **LOOKUP, routing_key=f"customer-{n}")
        task_run(task_id=str(task.pk), worker="worker:test")


def test_the_rollout_page_shows_both_arms_and_the_switch_rolls_back_with_its_reason(
    engineer: Client, demo_orders: None
) -> None:
    rollout = _start_canary(engineer, "50")
    _run_tasks(12)
    url = f"/admin/agent_runtime/rollout/{rollout.pk}/change/"
    page = engineer.get(url)
    assert page.status_code == 200
    text = page.content.decode()
    for label in ("success rate", "handoff ratio", "p95 step latency", "cost per successful task", "n="):
        assert label in text, label
    assert f"canary v{rollout.canary.number} beside stable v{rollout.stable.number}" in text

    share = engineer.post(url, {"switch": "keep", "canary_percent": "20", "reason": "widen", **_settings(rollout)})
    assert share.status_code == 302
    rollout.refresh_from_db()
    assert rollout.canary_percent == Decimal("20.00")

    missing_reason = engineer.post(url, {"switch": "roll_back", "canary_percent": "20", **_settings(rollout)})
    assert missing_reason.status_code == 200 and "reason" in missing_reason.context["adminform"].form.errors

    flipped = engineer.post(
        url, {"switch": "roll_back", "canary_percent": "20", "reason": "answers too short", **_settings(rollout)}
    )
    assert flipped.status_code == 302
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.ROLLED_BACK
    kinds = [(e.kind, e.actor, e.reason) for e in rollout.events.all()]
    assert kinds[1:] == [
        (RolloutEventKind.SHARE_CHANGED, "user:engineer-1", "widen"),
        (RolloutEventKind.ROLLED_BACK, "user:engineer-1", "answers too short"),
    ]
    assert engineer.get(url).status_code == 200  # an ended rollout still shows its figures and audit


def _settings(rollout: Rollout) -> dict[str, object]:
    return {
        "auto_rollback": "on" if rollout.auto_rollback else "",
        "min_finished_tasks": rollout.min_finished_tasks,
        "max_success_drop": rollout.max_success_drop,
        "max_handoff_rise": rollout.max_handoff_rise,
        "max_cost_rise": rollout.max_cost_rise,
    }


def test_promoting_from_the_admin_makes_the_canary_current(engineer: Client) -> None:
    rollout = _start_canary(engineer)
    url = f"/admin/agent_runtime/rollout/{rollout.pk}/change/"
    response = engineer.post(
        url, {"switch": "promote", "canary_percent": "10", "reason": "as good, cheaper", **_settings(rollout)}
    )
    assert response.status_code == 302
    assert AgentConfig.objects.get(name="default").current_id == rollout.canary_id
    assert Rollout.objects.get(pk=rollout.pk).state == RolloutState.PROMOTED


def test_operators_see_rollouts_but_cannot_change_them(engineer: Client) -> None:
    rollout = _start_canary(engineer)
    operator = _staff_in("operators", "operator-1")
    url = f"/admin/agent_runtime/rollout/{rollout.pk}/change/"
    assert operator.get(url).status_code == 200
    response = operator.post(url, {"switch": "roll_back", "reason": "not mine", **_settings(rollout)})
    assert response.status_code == 403
    assert Rollout.objects.get(pk=rollout.pk).state == RolloutState.ACTIVE


def test_a_rollout_added_from_the_rollouts_page_starts_with_its_reason(engineer: Client) -> None:
    agent = AgentConfig.objects.get(name="default")
    candidate = agent_propose(agent=agent, values={"max_turns": 7}, user=None, comment="candidate")
    response = engineer.post(
        "/admin/agent_runtime/rollout/add/",
        {
            "canary": candidate.pk,
            "canary_percent": "15",
            "alpha": "0.05",
            "reason": "try seven turns",
            **_settings(Rollout()),
        },
    )
    assert response.status_code == 302, response.content[:2000]
    rollout = Rollout.objects.get(state=RolloutState.ACTIVE)
    assert (rollout.canary_id, rollout.stable_id, rollout.canary_percent) == (candidate.pk, agent.current_id, 15)
    assert rollout.events.get().reason == "try seven turns"


def test_restoring_an_old_version_while_a_canary_runs_is_refused(engineer: Client) -> None:
    rollout = _start_canary(engineer)
    with pytest.raises(AgentInvalid, match="canary of this agent is running"):
        agent_restore(version=rollout.stable, user=None)
    assert AgentConfig.objects.get(name="default").current_id == rollout.stable_id


def test_starting_a_canary_from_the_agent_page_needs_the_rollout_permission() -> None:
    editor = User.objects.create_user("editor", password="unused-password-1", is_staff=True)
    editor.user_permissions.add(*Permission.objects.filter(codename__in=["change_agentconfig", "view_agentconfig"]))
    client = Client()
    client.force_login(editor)
    client.post(_agent_url(), agent_form(max_turns=6, release="canary", canary_percent="10", comment="sneak"))
    assert not Rollout.objects.exists()
    assert AgentConfig.objects.get(name="default").versions.count() == 1, "a refused canary leaves no version"

"""Canary assignment: the share holds, a routing key keeps its version, a share change only moves keys onto the
canary, the switch sends every new task to stable while assigned tasks keep their version, and it is all audited."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from rest_framework.test import APIClient

from agent_runtime.models import AgentConfig, AgentVersion, Rollout, RolloutEventKind, RolloutState
from agent_runtime.rollouts import (
    CANARY,
    FORCED,
    STABLE,
    RolloutInvalid,
    arm_of,
    rollout_promote,
    rollout_roll_back,
    rollout_settings_change,
    rollout_share_change,
    rollout_start,
    version_assign,
)
from agent_runtime.services import AgentInvalid, agent_propose, agent_update
from orchestration.models import Task
from tests.factories import LOOKUP, api_key, submit_task
from tools.models import ToolContract
from tools.selectors import contract_at, tool_specs
from tools.services.contracts import contract_update

pytestmark = pytest.mark.django_db

SUBMISSIONS = 10_000
SUBMITTED = 500
SIGMAS = 4.5
"""The share's bounds: 10 % of 10,000 keys is 1,000 on the canary, sd sqrt(10,000 x 0.1 x 0.9) = 30; 4.5 sd either
side is 865 to 1,135 (8.65 % to 11.35 %); of 500 real submissions, 50 +- 30. The hash is deterministic, so the
tests cannot flake: they state what any fair hash must give, and a biased one (a modulo mistake, a truncated
digest, a share read in the wrong unit) falls outside."""


def _canary(comment: str = "canary") -> AgentVersion:
    agent = AgentConfig.objects.get(name="default")
    return agent_propose(
        agent=agent, values={"instructions": f"{comment}: answer briefly."}, user=None, comment=comment
    )


def _rollout(percent: str = "10") -> Rollout:
    return rollout_start(canary=_canary(), percent=Decimal(percent), user=None, reason="try the brief prompt")


def _submit(owner: User, *, session_id: str = "", routing_key: str = "") -> Task:
    return submit_task(owner, **LOOKUP, session_id=session_id, routing_key=routing_key)


def _arms(rollout: Rollout, keys: list[str]) -> dict[str, str]:
    """The arm of each key, by the function a submission applies to the rollout it reads."""
    return {key: arm_of(rollout_id=rollout.pk, canary_percent=rollout.canary_percent, routing_key=key) for key in keys}


def test_the_canary_gets_its_share_of_10000_routing_keys_within_the_stated_bounds() -> None:
    rollout = _rollout("10")
    arms = _arms(rollout, [f"customer-{n}" for n in range(SUBMISSIONS)])
    canary = sum(arm == CANARY for arm in arms.values())
    sd = (SUBMISSIONS * 0.1 * 0.9) ** 0.5
    print(f"canary share: {canary} of {SUBMISSIONS} keys ({canary / SUBMISSIONS:.2%})")
    assert abs(canary - SUBMISSIONS * 0.1) <= SIGMAS * sd


def test_submitted_tasks_record_the_assignment_the_hash_gives_and_the_share_holds(client_user: User) -> None:
    rollout = _rollout("10")
    tasks = [_submit(client_user, routing_key=f"customer-{n}") for n in range(SUBMITTED)]
    expected = _arms(rollout, [task.routing_key for task in tasks])
    for task in tasks:
        assert (task.rollout_id, task.rollout_arm) == (rollout.pk, expected[task.routing_key])
        assert task.agent_version_id == (rollout.canary_id if task.rollout_arm == CANARY else rollout.stable_id)
    canary = sum(task.rollout_arm == CANARY for task in tasks)
    print(f"canary share: {canary} of {SUBMITTED} submissions")
    assert abs(canary - SUBMITTED * 0.1) <= SIGMAS * (SUBMITTED * 0.1 * 0.9) ** 0.5


def test_one_routing_key_always_lands_on_one_version(client_user: User) -> None:
    _rollout("50")
    for key in ("customer-7", "customer-8", "customer-9"):
        by_session = {_submit(client_user, session_id=key).agent_version_id for _ in range(5)}
        by_key = {_submit(client_user, routing_key=key).agent_version_id for _ in range(5)}
        assert len(by_session) == 1 and by_session == by_key, "the session is the routing key when given"
    # The session wins over a client's key; without either, each task is its own key.
    task = _submit(client_user, session_id="s-1", routing_key="ignored")
    assert task.routing_key == "s-1"
    alone = _submit(client_user)
    assert alone.routing_key == str(alone.pk)


def test_raising_the_share_from_10_to_20_percent_moves_only_keys_from_stable_to_canary(client_user: User) -> None:
    rollout = _rollout("10")
    keys = [f"customer-{n}" for n in range(SUBMISSIONS)]
    before = _arms(rollout, keys)
    rollout = rollout_share_change(rollout=rollout, percent=Decimal("20"), user=None, reason="looks fine, widen")
    after = _arms(rollout, keys)
    assert not [key for key in keys if before[key] == CANARY and after[key] == STABLE], "a canary key went back"
    moved = sum(before[key] == STABLE and after[key] == CANARY for key in keys)
    assert abs(moved - SUBMISSIONS * 0.1) <= SIGMAS * (SUBMISSIONS * 0.1 * 0.9) ** 0.5
    # Submissions read the new share at once.
    for key in keys[:50]:
        assert version_assign("default", key).arm == after[key]
    event = rollout.events.get(kind=RolloutEventKind.SHARE_CHANGED)
    assert event.detail == {"percent_before": "10.00", "percent_after": "20"}
    assert (event.actor, event.reason) == ("system", "looks fine, widen")


def test_after_the_rollback_switch_no_new_task_goes_to_the_canary_and_assigned_ones_keep_it(
    client_user: User,
) -> None:
    rollout = _rollout("50")
    assigned = [_submit(client_user, routing_key=f"c-{n}") for n in range(40)]
    on_canary = [task for task in assigned if task.rollout_arm == CANARY]
    assert on_canary
    rollout_roll_back(rollout=rollout, actor="user:alice", reason="customers complain about terse answers")
    later = [_submit(client_user, routing_key=f"c-{n}") for n in range(40)]
    assert {task.agent_version_id for task in later} == {rollout.stable_id}
    assert {task.rollout_arm for task in later} == {""}
    for task in on_canary:
        task.refresh_from_db()
        assert task.agent_version_id == rollout.canary_id, "a task keeps the version it was given"
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.ROLLED_BACK and rollout.ended_at is not None
    event = rollout.events.get(kind=RolloutEventKind.ROLLED_BACK)
    assert (event.actor, event.reason) == ("user:alice", "customers complain about terse answers")
    with pytest.raises(RolloutInvalid):
        rollout_share_change(rollout=rollout, percent=Decimal(5), user=None, reason="too late")


def test_promotion_makes_the_canary_current_for_every_new_task(client_user: User) -> None:
    rollout = _rollout("10")
    rollout_promote(rollout=rollout, user=client_user, reason="better on every figure")
    assert AgentConfig.objects.get(name="default").current_id == rollout.canary_id
    assert {_submit(client_user, routing_key=f"k{n}").agent_version_id for n in range(20)} == {rollout.canary_id}
    assert rollout.events.get(kind=RolloutEventKind.PROMOTED).actor == "user:client-a"


def test_every_change_needs_a_reason_one_canary_at_a_time_and_stable_does_not_move_under_it() -> None:
    with pytest.raises(RolloutInvalid, match="say why"):
        rollout_start(canary=_canary(), user=None, reason="  ")
    rollout = _rollout()
    with pytest.raises(RolloutInvalid, match="already has a canary"):
        rollout_start(canary=_canary("second"), user=None, reason="another")
    with pytest.raises(AgentInvalid, match="canary of this agent is running"):
        agent_update(agent=AgentConfig.objects.get(name="default"), values={"max_turns": 5}, user=None)
    with pytest.raises(RolloutInvalid, match="from 0 to 100"):
        rollout_share_change(rollout=rollout, percent=Decimal("101"), user=None, reason="more")
    assert [event.kind for event in rollout.events.all()] == [RolloutEventKind.STARTED]


def _client_with(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_key(user)}")
    return client


def _post(client: APIClient, body: dict[str, Any]) -> Any:
    return client.post("/api/v1/tasks/", {"goal": "Look up order A-1001", "input": {}, **body}, format="json")


def test_the_api_shows_the_assignment_and_forcing_a_version_needs_the_permission(api: APIClient) -> None:
    rollout = _rollout("50")
    shown = _post(api, {"routing_key": "customer-42"}).json()
    arm = arm_of(rollout_id=rollout.pk, canary_percent=rollout.canary_percent, routing_key="customer-42")
    version = rollout.canary if arm == CANARY else rollout.stable
    assert (shown["rollout_arm"], shown["routing_key"], shown["agent_version"]) == (arm, "customer-42", version.number)

    refused = _post(api, {"agent_version": rollout.canary.number})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_permitted"

    tester = User.objects.create_user("tester")
    tester.user_permissions.add(Permission.objects.get(codename="force_agent_version"))
    testing = _client_with(tester)
    forced = _post(testing, {"agent_version": rollout.stable.number, "routing_key": "customer-42"})
    assert forced.status_code == 201
    assert (forced.json()["agent_version"], forced.json()["rollout_arm"]) == (rollout.stable.number, FORCED)
    missing = _post(testing, {"agent_version": 999})
    assert missing.status_code == 400 and "agent_version" in missing.json()["error"]["fields"]


def test_an_automatic_rollback_judged_on_settings_changed_since_is_refused() -> None:
    judged = _rollout()
    rollout_settings_change(rollout=judged, values={"auto_rollback": True}, user=None, reason="arm it")
    with pytest.raises(RolloutInvalid, match="settings changed"):
        rollout_roll_back(rollout=judged, actor="evaluator:test", reason="worse", automatic=True)
    assert Rollout.objects.get(pk=judged.pk).state == RolloutState.ACTIVE


def test_a_pinned_contract_version_keeps_its_schemas_but_obeys_the_current_switch_approval_and_redaction() -> None:
    contract = ToolContract.objects.get(name="lookup_order")
    assert contract.current is not None
    pinned = {"lookup_order": contract.current.number}
    contract_update(
        contract=contract,
        values={"enabled": False, "approval_mode": "always", "sensitive_fields": ["order_number"]},
        user=None,
    )
    seen = contract_at("lookup_order", pinned)
    assert seen is not None and seen.version_id != ToolContract.objects.get(name="lookup_order").current_id
    assert (seen.enabled, seen.approval_mode, seen.sensitive_fields) == (False, "always", ("order_number",))
    assert "lookup_order" not in {spec.name for spec in tool_specs(pinned)}

"""Automatic rollback: a canary whose tools fail more (through the fault plan) is rolled back once it has its
minimum sample, not before; with automatic rollback off the verdict is only shown; nothing ever promotes."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User

from agent_runtime.models import AgentConfig, AgentVersion, Rollout, RolloutEventKind, RolloutState
from agent_runtime.rollouts import CANARY, rollout_start
from agent_runtime.services import agent_propose
from orchestration.metrics_state import DatabaseStateCollector
from orchestration.models import Task
from orchestration.services.execution import task_run
from orchestration.services.rollouts import rollout_comparison, rollout_evaluate, rollouts_evaluate
from tests.factories import LOOKUP, submit_task
from tools.models import ToolContract
from tools.services.contracts import contract_update

pytestmark = pytest.mark.django_db

MINIMUM = 20


def _canary_rollout(*, auto_rollback: bool) -> Rollout:
    agent = AgentConfig.objects.get(name="default")
    canary: AgentVersion = agent_propose(agent=agent, values={"max_turns": 10}, user=None, comment="fewer turns")
    return rollout_start(
        canary=canary,
        percent=Decimal(50),
        user=None,
        reason="halve the turn limit",
        settings={"auto_rollback": auto_rollback, "min_finished_tasks": MINIMUM},
    )


def _failing_canary_tools(settings: Any, canary_number: int) -> None:
    """Four in five of the canary's order lookups fail with a code the contract does not know (fatal); stable's
    never do.

    The tool's circuit breaker is shared by both versions: left at its threshold (5 failures a minute), the
    canary's failures would open it and fail stable's calls too, which is what a real broken canary does to a
    shared tool, but not what this test measures."""
    contract_update(
        contract=ToolContract.objects.get(name="lookup_order"), values={"circuit_failure_threshold": 10**6}, user=None
    )
    rule = {"fault": "error", "code": "UPSTREAM_BROKEN", "probability": 0.8, "agent_versions": [canary_number]}
    settings.FAULT_PLAN = json.dumps({"seed": 3, "tools": {"lookup_order": [rule]}})


def _run_one(owner: User, n: int) -> Task:
    task = submit_task(owner, **LOOKUP, routing_key=f"customer-{n}")
    task_run(task_id=str(task.pk), worker="worker:test")
    return task


def _rollbacks_metric() -> dict[tuple[str, str], float]:
    families = {family.name: family for family in DatabaseStateCollector().collect()}
    samples = families["agent_rollout_rollbacks"].samples
    return {(s.labels["agent"], s.labels["trigger"]): s.value for s in samples if s.name.endswith("_total")}


def test_a_canary_whose_tools_fail_more_is_rolled_back_after_the_minimum_sample_and_not_before(
    settings: Any, demo_orders: None, client_user: User
) -> None:
    rollout = _canary_rollout(auto_rollback=True)
    _failing_canary_tools(settings, rollout.canary.number)
    assert _rollbacks_metric() == {("default", "manual"): 0, ("default", "automatic"): 0}
    held_with: list[int] = []
    for n in range(200):
        _run_one(client_user, n)
        rollouts_evaluate()
        rollout.refresh_from_db()
        stable, canary = rollout_comparison(rollout)
        if rollout.state == RolloutState.ROLLED_BACK:
            break
        held_with.append(min(stable.outcomes.finished, canary.outcomes.finished))
    assert rollout.state == RolloutState.ROLLED_BACK, "the failing canary was never rolled back"
    assert min(stable.outcomes.finished, canary.outcomes.finished) >= MINIMUM, "rolled back before the minimum"
    assert max(held_with) >= MINIMUM - 1, "it held while either arm had fewer than the minimum"
    print(f"rolled back with {canary.outcomes.finished} canary and {stable.outcomes.finished} stable tasks finished")

    event = rollout.events.get(kind=RolloutEventKind.AUTO_ROLLED_BACK)
    assert event.actor.startswith("evaluator:")
    assert "failure rate" in event.reason
    figures: dict[str, Any] = event.detail
    assert figures["tests"]["failure_rate"]["worse"] is True
    assert figures["canary"]["finished"] >= MINIMUM and figures["stable"]["finished"] >= MINIMUM
    assert _rollbacks_metric()[("default", "automatic")] == 1

    after = [_run_one(client_user, 1000 + n) for n in range(10)]
    assert {task.agent_version_id for task in after} == {rollout.stable_id}


def test_with_automatic_rollback_off_the_verdict_is_shown_and_the_canary_keeps_running(
    settings: Any, demo_orders: None, client_user: User
) -> None:
    rollout = _canary_rollout(auto_rollback=False)
    _failing_canary_tools(settings, rollout.canary.number)
    canary_tasks = 0
    n = 0
    while canary_tasks < 40:
        canary_tasks += _run_one(client_user, n).rollout_arm == CANARY
        n += 1
    verdict = rollout_evaluate(rollout)
    rollout.refresh_from_db()
    assert verdict.roll_back, (verdict, rollout_comparison(rollout))
    assert rollout.state == RolloutState.ACTIVE
    assert rollout.last_verdict["roll_back"] is True and rollout.evaluated_at is not None
    assert rollouts_evaluate() == 0, "beat only shows the verdict of a rollout without automatic rollback"
    assert Rollout.objects.get(pk=rollout.pk).state == RolloutState.ACTIVE


def test_a_healthy_canary_is_never_promoted_by_itself(demo_orders: None, client_user: User) -> None:
    rollout = _canary_rollout(auto_rollback=True)
    for n in range(60):
        _run_one(client_user, n)
    verdict = rollout_evaluate(rollout)
    rollout.refresh_from_db()
    assert not verdict.roll_back and rollout.state == RolloutState.ACTIVE
    assert AgentConfig.objects.get(name="default").current_id == rollout.stable_id

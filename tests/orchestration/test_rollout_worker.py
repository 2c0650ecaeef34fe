"""The rollback switch with real workers: canary tasks already running finish on the canary, across a worker
SIGKILL and the replay after it, while every task submitted after the switch runs on stable."""

from __future__ import annotations

import json
from decimal import Decimal

from django.contrib.auth.models import User

from agent_runtime.models import AgentConfig
from agent_runtime.rollouts import CANARY, arm_of, rollout_roll_back, rollout_start
from agent_runtime.services import agent_propose
from orchestration.models import Step, StepKind, StepState, Task, TaskState
from shop.services import orders_seed_demo
from tests.factories import submit_task
from tests.workers import StartWorker, wait_until

CANARY_MARK = "CANARY-7f3a"
STABLE_MARK = "You are an operations agent"


def _submit(owner: User, key: str) -> Task:
    return submit_task(owner, goal="Look up order A-1001 and add an order note", task_input=NOTE_INPUT, routing_key=key)


NOTE_INPUT = {"order_number": "A-1001", "note": "called"}


def _instructions_seen(task: Task) -> set[str]:
    """Which version's instructions each of the task's model requests carried (from the request snapshots)."""
    seen = set()
    for step in Step.objects.filter(task=task, kind=StepKind.MODEL_TURN):
        text = json.dumps(step.input)
        seen |= {mark for mark in (CANARY_MARK, STABLE_MARK) if mark in text}
    return seen


def test_running_canary_tasks_finish_on_the_canary_across_a_sigkill_after_the_switch(
    start_worker: StartWorker,
) -> None:
    orders_seed_demo()
    owner = User.objects.create_user("rollout-client")
    agent = AgentConfig.objects.get(name="default")
    canary = agent_propose(
        agent=agent, values={"instructions": f"{CANARY_MARK}: use the tools, then answer."}, user=None
    )
    rollout = rollout_start(canary=canary, percent=Decimal(50), user=None, reason="new prompt")
    keys = [
        key
        for key in (f"customer-{n}" for n in range(100))
        if arm_of(rollout_id=rollout.pk, canary_percent=rollout.canary_percent, routing_key=key) == CANARY
    ][:3]
    # The canary's note tool hangs in the doomed worker: its tasks are mid-step when the switch flips.
    hang = {"fault": "hang", "seconds": 120, "agent_versions": [canary.number]}
    doomed = start_worker(
        concurrency=3, FAULT_PLAN=json.dumps({"tools": {"add_order_note": [hang]}}), STEP_LEASE_SECONDS="3"
    )
    running = [_submit(owner, key) for key in keys]
    assert {task.rollout_arm for task in running} == {CANARY}
    wait_until(
        lambda: Step.objects.filter(task__in=running, name="add_order_note", state=StepState.RUNNING).count() == 3,
        describe="the canary tasks' note calls to be running",
        watch=[doomed],
    )

    rollout_roll_back(rollout=rollout, actor="user:test", reason="switch flipped mid-run")
    doomed.kill()
    after = [_submit(owner, key) for key in keys]  # the same customers, after the switch
    start_worker(STEP_LEASE_SECONDS="3", STEP_DEADLINE_GRACE_SECONDS="2")
    everything = [*running, *after]
    wait_until(
        lambda: Task.objects.filter(pk__in=[t.pk for t in everything], state=TaskState.COMPLETED).count() == 6,
        sweep=True,
        timeout=120,
        describe="every task to complete after the kill",
    )
    for task in running:
        task.refresh_from_db()
        assert task.agent_version_id == canary.pk
        assert _instructions_seen(task) == {CANARY_MARK}, "a replayed canary task ran a turn on stable"
    for task in after:
        task.refresh_from_db()
        assert task.agent_version_id == rollout.stable_id and task.rollout_arm == ""
        assert _instructions_seen(task) == {STABLE_MARK}

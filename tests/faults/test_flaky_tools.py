"""Flaky tools: 200 tasks on real worker processes against tools that fail retryably with probability 0.3 and
fatally with 0.05. The plan is seeded, so the test knows for each call attempt whether it fails, and checks the
platform did exactly what the policy says: the attempts, the backoffs, the outcome of every task."""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pytest
from django.contrib.auth.models import User

from faults.plan import FaultPlan, parse_plan
from orchestration.models import Step, StepState, Task, TaskState
from shop.services import orders_seed_demo
from tests.factories import submit_task
from tests.faults.checks import (
    all_settled,
    decisions_of,
    effect_problems,
    nothing_lost_problems,
    outcomes,
    reloaded,
    tool_steps,
    worker_log_alarms,
)
from tests.faults.report import FaultFigures, record_figures
from tests.workers import StartWorker, wait_until
from tools.errors import RecoveryAction
from tools.models import ToolContract
from tools.services.contracts import contract_update

pytestmark = pytest.mark.worker

SCALE = int(os.environ.get("FAULT_SUITE_SCALE", "1"))  # make soak raises it
TASKS = 200 * SCALE
SEED = int(os.environ.get("FAULT_SUITE_SEED", "20261125"))
RETRYABLE, FATAL = "UPSTREAM_UNAVAILABLE", "UPSTREAM_REJECTED"
FLAKY_TOOLS = ("lookup_order", "add_order_note", "refund_order")
PLAN = {
    "seed": SEED,
    "tools": {
        tool: [
            {"fault": "error", "code": RETRYABLE, "probability": 0.3},
            {"fault": "error", "code": FATAL, "probability": 0.05},
        ]
        for tool in FLAKY_TOOLS
    },
}
LOOKUP_AND_NOTE = (
    "Look up order A-1001 and add an order note that the parcel is late.",
    {"order_number": "A-1001", "note": "Parcel is late."},
    ("lookup_order", "add_order_note"),
)
REFUND = (
    "Refund order A-1002",
    {"order_number": "A-1002", "amount_cents": 100, "currency": "USD", "reason": "late parcel"},
    ("refund_order",),
)
MAX_RETRIES, BASE_SECONDS, CAP_SECONDS, JITTER = 3, 1.0, 30.0, 0.2


def _declare_flaky_upstreams() -> None:
    """What an operator would do for tools behind a flaky service: declare its codes in their dictionaries.

    The circuit breaker is raised out of reach here (it has its own tests), so every failure comes from the
    plan and the expected outcome of every call can be computed."""
    for tool in FLAKY_TOOLS:
        contract = ToolContract.objects.get(name=tool)
        assert contract.current is not None
        codes = [
            *contract.current.error_codes,
            {"code": RETRYABLE, "meaning": "the upstream service is unavailable", "retryable": True, "action": "retry"},
            {"code": FATAL, "meaning": "the upstream service refused for good", "retryable": False, "action": "fatal"},
        ]
        contract_update(
            contract=contract,
            values={"error_codes": codes, "circuit_failure_threshold": 1_000_000},
            user=None,
            comment="flaky upstream (fault suite)",
        )


def _expected_call(plan: FaultPlan, tool: str, key: str) -> tuple[int, str]:
    """(attempts, outcome) the policy must produce for this call: ok, fatal, or exhausted (manual review)."""
    for attempt in range(1, MAX_RETRIES + 2):
        fault = plan.tool_fault(tool, key=key, attempt=attempt)
        if fault is None:
            return attempt, "ok"
        if fault.code == FATAL:
            return attempt, "fatal"
    return MAX_RETRIES + 1, "exhausted"


def _backoff_problems(step: Step) -> list[str]:
    """Each retry was due after the policy's backoff, and the next attempt never started before it was due."""
    problems = []
    decisions = decisions_of(step)
    starts = {d.attempt: d.attempt_started_at for d in decisions} | {step.attempt: step.started_at}
    for decision in (d for d in decisions if d.action == RecoveryAction.RETRY):
        assert decision.attempt is not None and decision.next_attempt_at is not None
        raw = min(CAP_SECONDS, BASE_SECONDS * 2 ** (decision.attempt - 1))
        # The policy decided between the failed attempt's start and the decision row's insert: bounds that hold
        # however long the machine took in between.
        assert decision.attempt_started_at is not None
        at_least = (decision.next_attempt_at - decision.attempt_started_at).total_seconds()
        at_most = (decision.next_attempt_at - decision.created_at).total_seconds()
        if at_least < raw * (1 - JITTER) or at_most > raw * (1 + JITTER):
            problems.append(
                f"{step.idempotency_key} retry after attempt {decision.attempt}: due {at_most:.2f}-{at_least:.2f} s "
                f"after the decision, not ~{raw} s"
            )
        started = starts.get(decision.attempt + 1)
        if started is None or started < decision.next_attempt_at - timedelta(milliseconds=1):
            problems.append(
                f"{step.idempotency_key} attempt {decision.attempt + 1} started {started}, before it was due"
            )
    return problems


def _policy_problems(plan: FaultPlan, task: Task, tools: tuple[str, ...]) -> tuple[list[str], int]:
    """Compare the task with what the policy must have done; returns (problems, faults injected into it)."""
    problems, injected = [], 0
    steps = {step.name: step for step in tool_steps(task)}
    expected_state = TaskState.COMPLETED
    for position, tool in enumerate(tools):
        step = steps.get(tool)
        if step is None:
            problems.append(f"task {task.pk}: {tool} never ran")
            break
        attempts, outcome = _expected_call(plan, tool, step.idempotency_key)
        injected += attempts - (outcome == "ok")
        expected_step_state = StepState.SUCCEEDED if outcome == "ok" else StepState.FAILED
        if (step.attempt, step.state) != (attempts, expected_step_state):
            problems.append(
                f"{step.idempotency_key}: attempt {step.attempt} {step.state}, expected {attempts} {outcome}"
            )
        retries = [d for d in decisions_of(step) if d.action == RecoveryAction.RETRY]
        if len(retries) != min(attempts - 1, MAX_RETRIES):
            problems.append(
                f"{step.idempotency_key}: {len(retries)} retries, expected {min(attempts - 1, MAX_RETRIES)}"
            )
        problems += _backoff_problems(step)
        if outcome != "ok":
            expected_state = TaskState.TOOL_FAILED_FATAL if outcome == "fatal" else TaskState.MANUAL_REVIEW
            problems += [
                f"task {task.pk}: {later} ran after {tool} ended it"
                for later in tools[position + 1 :]
                if later in steps
            ]
            break
    if task.state != expected_state:
        problems.append(f"task {task.pk}: {task.state} ({task.state_reason}), expected {expected_state}")
    if task.state == TaskState.MANUAL_REVIEW and "retries used up" not in task.state_reason:
        problems.append(f"task {task.pk}: manual review without the reason: {task.state_reason}")
    return problems, injected


def test_flaky_tools_end_as_the_policy_says_and_apply_no_effect_twice(start_worker: StartWorker) -> None:
    orders_seed_demo()
    _declare_flaky_upstreams()
    owner = User.objects.create_user("flaky-client")
    workers = [start_worker(concurrency=2, FAULT_PLAN=json.dumps(PLAN)) for _ in range(2)]
    kinds = [LOOKUP_AND_NOTE if n % 2 == 0 else REFUND for n in range(TASKS)]
    submitted = [submit_task(owner, goal=goal, task_input=dict(task_input)) for goal, task_input, _ in kinds]
    tools_of = {task.pk: tools for task, (_, _, tools) in zip(submitted, kinds, strict=True)}

    wait_until(lambda: all_settled(submitted), sweep=True, timeout=240 * SCALE, describe=f"{TASKS} tasks settled")

    tasks = reloaded(submitted)
    plan = parse_plan(json.dumps(PLAN))
    problems = nothing_lost_problems(tasks) + worker_log_alarms(workers)
    injected = 0
    for task in tasks:
        found, faults = _policy_problems(plan, task, tools_of[task.pk])
        problems += found
        injected += faults
    duplicates, _ = effect_problems(tasks)
    record_figures(
        FaultFigures("flaky tools (p=0.3 retryable, p=0.05 fatal)", len(tasks), injected, outcomes(tasks), duplicates)
    )
    assert not problems, "\n".join(problems[:30])

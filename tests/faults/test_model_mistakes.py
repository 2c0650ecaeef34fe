"""A model that always asks for a tool its agent does not have, or always sends invalid arguments: every mistake
goes back to it to re-plan, and past the re-plan cap the task goes to a human with the reason."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User

from orchestration.models import RecoveryDecision, RecoveryEvent, Task, TaskState
from shop.services import orders_seed_demo
from tests.factories import submit_task
from tests.faults.checks import all_settled, nothing_lost_problems, outcomes, reloaded, worker_log_alarms
from tests.faults.report import FaultFigures, record_figures
from tests.workers import StartWorker, wait_until
from tools.errors import RecoveryAction

pytestmark = pytest.mark.worker

CAP = 3


def _run_with(start_worker: StartWorker, model_fault: dict[str, object], case: str) -> list[Task]:
    orders_seed_demo()
    worker = start_worker(FAULT_PLAN=json.dumps({"model": [model_fault]}), AGENT_REPLAN_CAP=str(CAP))
    owner = User.objects.create_user("mistakes-client")
    submitted = [submit_task(owner) for _ in range(3)]
    wait_until(lambda: all_settled(submitted), sweep=True, describe="every task settled", watch=[worker])
    tasks = reloaded(submitted)
    problems = nothing_lost_problems(tasks) + worker_log_alarms([worker])
    assert not problems, "\n".join(problems)
    record_figures(FaultFigures(case, len(tasks), len(tasks) * (CAP + 1), outcomes(tasks), 0))
    for task in tasks:
        assert task.state == TaskState.MANUAL_REVIEW
        assert f"re-planned {CAP} times (cap {CAP})" in task.state_reason
        decisions = list(RecoveryDecision.objects.filter(task=task).values_list("action", flat=True))
        assert decisions == [RecoveryAction.REPLAN] * CAP + [RecoveryAction.HANDOFF]
    return tasks


def test_a_model_that_always_calls_an_unknown_tool_ends_in_manual_review(start_worker: StartWorker) -> None:
    tasks = _run_with(start_worker, {"fault": "unknown_tool", "tool": "delete_everything"}, "model calls unknown tools")
    for task in tasks:
        assert "'delete_everything', which this agent does not have" in task.state_reason
        assert set(RecoveryDecision.objects.filter(task=task).values_list("event", flat=True)) == {
            RecoveryEvent.MODEL_MISTAKE
        }


def test_a_model_that_always_sends_invalid_arguments_ends_in_manual_review(start_worker: StartWorker) -> None:
    tasks = _run_with(start_worker, {"fault": "invalid_arguments", "arguments": "{}"}, "model sends invalid arguments")
    for task in tasks:
        assert "INVALID_ARGUMENTS" in task.state_reason
        assert not task.steps.filter(state="SUCCEEDED", kind="tool_call").exists(), "no adapter may have run"

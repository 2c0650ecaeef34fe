"""A task cancelled while a step runs ends CANCELLED: the running step's result is recorded, nothing further is
planned. Cancelled during a backoff, its due retry does nothing."""

from __future__ import annotations

import json
import time

import pytest
from django.contrib.auth.models import User

from orchestration.models import RecoveryDecision, RecoveryEvent, Step, StepState, Task, TaskState
from orchestration.services.cancellation import task_cancel
from shop.models import OrderNote
from shop.services import orders_seed_demo
from tests.factories import submit_task
from tests.faults.checks import nothing_lost_problems, outcomes, reloaded, worker_log_alarms
from tests.faults.report import FaultFigures, record_figures
from tests.workers import StartWorker, wait_until
from tools.errors import RecoveryAction
from tools.models import ToolContract
from tools.services.contracts import contract_update

pytestmark = pytest.mark.worker

NOTE_REF = "call:2:call_2_add_order_note"


def test_cancelled_while_a_tool_runs(start_worker: StartWorker) -> None:
    orders_seed_demo()
    # Long enough that the cancel surely lands while the call runs; inside the note's 10 s timeout.
    plan = {"tools": {"add_order_note": [{"fault": "hang", "seconds": 6}]}}
    worker = start_worker(FAULT_PLAN=json.dumps(plan))
    task = submit_task(User.objects.create_user("c"))
    wait_until(lambda: Step.objects.filter(task=task, ref=NOTE_REF, state=StepState.RUNNING).exists())

    task_cancel(task_id=task.pk, actor="user:ops")
    wait_until(lambda: not Step.objects.filter(task=task, state=StepState.RUNNING).exists(), describe="step ended")
    time.sleep(1)  # anything the worker would still plan would show up now

    [task] = reloaded([task])
    assert task.state == TaskState.CANCELLED
    note = Step.objects.get(task=task, ref=NOTE_REF)
    assert note.state == StepState.SUCCEEDED and note.output["ok"] is True, "the running step's result is recorded"
    assert OrderNote.objects.count() == 1
    assert not Step.objects.filter(task=task, ref="turn:3").exists(), "nothing further is planned"
    decision = RecoveryDecision.objects.get(task=task)
    assert (decision.event, decision.action) == (RecoveryEvent.CANCELLED, RecoveryAction.STOP)
    assert "its result was recorded (ok)" in decision.what
    problems = nothing_lost_problems([task]) + worker_log_alarms([worker])
    assert not problems, "\n".join(problems)
    record_figures(FaultFigures("cancelled mid-step", 1, 1, outcomes([task]), 0))


def test_cancelled_during_a_backoff(start_worker: StartWorker) -> None:
    orders_seed_demo()
    note_contract = ToolContract.objects.get(name="add_order_note")
    # Long enough that the cancel surely lands before the retry is due.
    contract_update(contract=note_contract, values={"retry_base_seconds": 8.0}, user=None)
    plan = {"tools": {"add_order_note": [{"fault": "error", "code": "INTERNAL", "attempts": [1]}]}}
    worker = start_worker(FAULT_PLAN=json.dumps(plan))
    task = submit_task(User.objects.create_user("c"))
    wait_until(lambda: Task.objects.get(pk=task.pk).state == TaskState.TOOL_FAILED_RETRYABLE, describe="backoff")

    task_cancel(task_id=task.pk, actor="user:ops")
    due = Task.objects.get(pk=task.pk)
    # The retry's message arrives when it was due, and must do nothing.
    wait_until(lambda: "nothing to do" in worker.log(), timeout=60, describe="the retry's message did nothing")

    [task] = reloaded([task])
    assert task.state == TaskState.CANCELLED and due.next_run_at is None
    note = Step.objects.get(task=task, ref=NOTE_REF)
    assert (note.attempt, note.state) == (1, StepState.FAILED)
    assert not OrderNote.objects.exists()
    assert "nothing to do" in worker.log()
    problems = nothing_lost_problems([task]) + worker_log_alarms([worker])
    assert not problems, "\n".join(problems)
    record_figures(FaultFigures("cancelled in backoff", 1, 1, outcomes([task]), 0))

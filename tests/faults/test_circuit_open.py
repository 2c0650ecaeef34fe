"""An open circuit fails the call fast, as retryable, without running the adapter; the retry follows the backoff
and, once the circuit lets a probe through, succeeds."""

from __future__ import annotations

import time
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from orchestration.models import RecoveryDecision, Step, StepState, Task, TaskState
from orchestration.services.execution import task_run
from shop.models import OrderNote
from tests.factories import submit_task
from tests.faults.checks import outcomes
from tests.faults.report import FaultFigures, record_figures
from tools.circuit import CLOSED
from tools.errors import ErrorCode, RecoveryAction
from tools.models import ToolContract
from tools.selectors import active_contract
from tools.services.circuits import circuit_record, circuit_state
from tools.services.contracts import contract_update

pytestmark = pytest.mark.django_db


def _run(task: Task) -> Task:
    Task.objects.filter(pk=task.pk).update(next_run_at=timezone.now())
    task_run(task_id=str(task.pk), worker="worker:test")
    task.refresh_from_db()
    return task


OPEN_SECONDS = 60


def test_open_circuit_fails_fast_and_the_retry_follows_the_backoff(demo_orders: None, settings: Any) -> None:
    settings.RETRY_JITTER = 0.0  # the backoff exactly: 1 s after the first failure
    note_contract = ToolContract.objects.get(name="add_order_note")
    contract_update(
        contract=note_contract,
        values={"circuit_failure_threshold": 2, "circuit_open_seconds": OPEN_SECONDS},
        user=None,
    )
    contract = active_contract("add_order_note")
    assert contract is not None
    for _ in range(2):  # the tool failed twice elsewhere: its circuit is open
        circuit_record(contract, failed=True, code="INTERNAL")

    task = _run(submit_task(User.objects.create(username="o")))
    assert task.state == TaskState.TOOL_FAILED_RETRYABLE
    note = Step.objects.get(task=task, name="add_order_note")
    assert (note.state, note.output["error_code"]) == (StepState.FAILED, ErrorCode.CIRCUIT_OPEN)
    assert not OrderNote.objects.exists(), "an open circuit never runs the adapter"
    decision = RecoveryDecision.objects.get(task=task)
    assert decision.action == RecoveryAction.RETRY and "CIRCUIT_OPEN" in decision.rule
    assert decision.next_attempt_at is not None
    # Due 1 s after the policy's decision, which comes just before the decision row is written.
    assert 0.9 <= (decision.next_attempt_at - decision.created_at).total_seconds() <= 1.0

    # Later, on the circuit's clock, the open time has passed: the circuit lets one probe through.
    later = time.time() + OPEN_SECONDS + 1
    with mock.patch("tools.services.circuits.time") as circuit_clock:
        circuit_clock.time.return_value = later
        task = _run(task)
    assert task.state == TaskState.COMPLETED
    assert Step.objects.get(pk=note.pk).attempt == 2 and OrderNote.objects.count() == 1
    assert circuit_state("add_order_note").status == CLOSED
    record_figures(FaultFigures("circuit open", 1, 1, outcomes([task]), 0))

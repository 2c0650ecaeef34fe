"""Steps that hang past their deadline: rolled back to the last completed step, run again under the same key,
and successful on the next attempt."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User

from orchestration.models import RecoveryDecision, RecoveryEvent, Step, StepState, Task, TaskState
from shop.models import OrderNote
from shop.services import orders_seed_demo
from tests.factories import submit_task
from tests.faults.checks import effect_problems, nothing_lost_problems, outcomes, reloaded, worker_log_alarms
from tests.faults.report import FaultFigures, record_figures
from tests.workers import StartWorker, WorkerProcess, wait_until
from tools.errors import ErrorCode, RecoveryAction
from tools.models import ToolContract
from tools.services.contracts import contract_update

pytestmark = pytest.mark.worker

NOTE_REF = "call:2:call_2_add_order_note"


def _note_timeout(seconds: float) -> None:
    contract_update(
        contract=ToolContract.objects.get(name="add_order_note"), values={"timeout_seconds": seconds}, user=None
    )


def _completed(task: Task, workers: list[WorkerProcess], case: str) -> Task:
    wait_until(
        lambda: Task.objects.get(pk=task.pk).state == TaskState.COMPLETED,
        sweep=True,
        timeout=60,
        describe="the task completed",
        watch=workers,
    )
    [task] = reloaded([task])
    problems = nothing_lost_problems([task]) + worker_log_alarms(workers)
    assert not problems, "\n".join(problems)
    duplicates, _ = effect_problems([task])
    record_figures(FaultFigures(case, 1, 1, outcomes([task]), duplicates))
    return task


def _decisions(task: Task) -> list[tuple[str, str, int | None]]:
    return list(RecoveryDecision.objects.filter(task=task).order_by("id").values_list("event", "action", "attempt"))


def test_tool_hung_past_its_timeout_rolls_back_and_succeeds_on_the_next_attempt(start_worker: StartWorker) -> None:
    orders_seed_demo()
    _note_timeout(1.0)
    # The note is written, then the call hangs inside its transaction: the timeout must undo the note.
    plan = {"tools": {"add_order_note": [{"fault": "hang_after_effect", "seconds": 30, "attempts": [1]}]}}
    worker = start_worker(FAULT_PLAN=json.dumps(plan))
    task = _completed(submit_task(User.objects.create_user("c")), [worker], "tool hung past its timeout")

    note = Step.objects.get(task=task, ref=NOTE_REF)
    assert (note.attempt, note.state) == (2, StepState.SUCCEEDED)
    assert OrderNote.objects.filter(idempotency_key=note.idempotency_key).count() == 1
    assert _decisions(task) == [(RecoveryEvent.TOOL_ERROR, RecoveryAction.RETRY, 1)]
    timed_out = RecoveryDecision.objects.get(task=task)
    assert timed_out.envelope["error_code"] == ErrorCode.TIMEOUT  # type: ignore[index]
    assert Step.objects.get(task=task, ref="call:1:call_1_lookup_order").attempt == 1, "completed steps are kept"


def test_tool_stuck_where_no_signal_reaches_is_taken_back_after_its_deadline(start_worker: StartWorker) -> None:
    """The timeout signal cannot interrupt the call (as with a call stuck in C code): the worker is hung. Past the
    step's deadline its lease runs out, another worker process takes the task back, and the hung attempt's late
    result is discarded when it finally returns."""
    orders_seed_demo()
    _note_timeout(1.0)
    hang_seconds = 20.0  # far past the step's deadline (1 s) and grace (2 s), on a loaded machine too
    plan = {"tools": {"add_order_note": [{"fault": "hang", "seconds": hang_seconds, "uninterruptible": True,
                                          "attempts": [1]}]}}  # fmt: skip
    worker = start_worker(concurrency=2, FAULT_PLAN=json.dumps(plan), STEP_DEADLINE_GRACE_SECONDS="2")
    task = _completed(submit_task(User.objects.create_user("c")), [worker], "tool stuck past its deadline")

    note = Step.objects.get(task=task, ref=NOTE_REF)
    assert (note.attempt, note.state) == (2, StepState.SUCCEEDED)
    assert _decisions(task) == [(RecoveryEvent.STEP_LOST, RecoveryAction.RETRY, 1)]
    lost = RecoveryDecision.objects.get(task=task)
    assert "rolled back to step #3 (turn:2)" in lost.what and "same idempotency key" in lost.what
    assert lost.attempt_started_at is not None
    taken_back_after = (lost.created_at - lost.attempt_started_at).total_seconds()
    assert taken_back_after < hang_seconds, "the step must be taken back at its deadline, not when it ends"

    # The hung attempt returns late; its result must change nothing.
    before = (note.output, note.finished_at, list(task.transitions.values_list("id", flat=True)))
    wait_until(
        lambda: "late result discarded" in worker.log(),
        timeout=hang_seconds + 60,
        describe="the hung attempt returned and its result was discarded",
        watch=[worker],
    )
    note.refresh_from_db()
    assert (note.output, note.finished_at, list(task.transitions.values_list("id", flat=True))) == before
    assert OrderNote.objects.count() == 1


def test_model_that_never_answers_is_cut_at_its_deadline_and_asked_again(start_worker: StartWorker) -> None:
    orders_seed_demo()
    plan = {"model": [{"fault": "hang", "seconds": 60, "turns": [2], "attempts": [1]}]}
    # Every turn has this deadline: long enough that a loaded machine never stalls the turns that do answer.
    worker = start_worker(FAULT_PLAN=json.dumps(plan), MODEL_CALL_TIMEOUT_SECONDS="3")
    task = _completed(submit_task(User.objects.create_user("c")), [worker], "model hung past its deadline")

    turn = Step.objects.get(task=task, ref="turn:2")
    assert (turn.attempt, turn.state) == (2, StepState.SUCCEEDED)
    assert _decisions(task) == [(RecoveryEvent.MODEL_ERROR, RecoveryAction.RETRY, 1)]
    assert "outlived its deadline (3 s)" in RecoveryDecision.objects.get(task=task).what

"""The worker loop one run at a time, in-process: replay, redelivery, recovery policy, cancellation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from agents.models.interface import Model
from django.contrib.auth.models import User
from django.utils import timezone

from agent_runtime.models import AgentConfig
from agent_runtime.offline_model import OfflineModel
from agent_runtime.services import agent_update
from orchestration.models import Step, StepKind, StepState, Task, TaskState, TaskTransition
from orchestration.services.cancellation import task_cancel
from orchestration.services.execution import task_run
from shop.models import Order, OrderNote, Refund
from tests.factories import submit_task

pytestmark = pytest.mark.django_db


class CountingModel(OfflineModel):
    """The offline model, counting requests, optionally failing on chosen request numbers."""

    def __init__(self, fail_on: set[int] | None = None, before_answer: Any = None) -> None:
        self.requests = 0
        self.fail_on = fail_on or set()
        self.before_answer = before_answer

    async def get_response(self, *args: Any, **kwargs: Any) -> Any:
        self.requests += 1
        if self.requests in self.fail_on:
            raise ConnectionError("endpoint unavailable")
        if self.before_answer is not None:
            await self.before_answer()
        return await super().get_response(*args, **kwargs)


@pytest.fixture
def owner(demo_orders: None) -> User:
    return User.objects.create(username="owner")


def _use_model(monkeypatch: pytest.MonkeyPatch, model: Model) -> None:
    monkeypatch.setattr("agent_runtime.runner.resolve_model", lambda name: model)


def _make_due(task: Task) -> None:
    Task.objects.filter(pk=task.pk).update(next_run_at=timezone.now())


def _run(task: Task) -> Task:
    task_run(task_id=str(task.pk), worker="worker:test")
    task.refresh_from_db()
    return task


def test_resumed_run_replays_recorded_turns_and_tool_results(owner: User, monkeypatch: pytest.MonkeyPatch) -> None:
    task = submit_task(owner)
    first = CountingModel(fail_on={3})  # the endpoint fails on the third turn
    _use_model(monkeypatch, first)
    task = _run(task)
    assert first.requests == 3
    assert task.state == TaskState.PLANNED
    assert "model request failed" in task.state_reason
    assert task.next_run_at is not None and task.next_run_at > timezone.now()

    second = CountingModel()
    _use_model(monkeypatch, second)
    _make_due(task)
    task = _run(task)
    assert task.state == TaskState.COMPLETED
    assert second.requests == 1, "turns 1 and 2 must be replayed from their snapshots"
    attempts = dict(Step.objects.filter(task=task).values_list("ref", "attempt"))
    assert attempts == {
        "turn:1": 1,
        "call:1:call_1_lookup_order": 1,
        "turn:2": 1,
        "call:2:call_2_add_order_note": 1,
        "turn:3": 2,
    }
    assert OrderNote.objects.count() == 1
    assert task.input_tokens == sum(Step.objects.filter(task=task).values_list("input_tokens", flat=True))


def test_redelivered_message_for_a_finished_task_does_nothing(owner: User) -> None:
    task = _run(submit_task(owner))
    assert task.state == TaskState.COMPLETED
    transitions, steps = TaskTransition.objects.count(), Step.objects.count()
    _run(task)
    assert (TaskTransition.objects.count(), Step.objects.count()) == (transitions, steps)


def test_message_for_a_task_leased_elsewhere_does_nothing(owner: User) -> None:
    task = submit_task(owner)
    Task.objects.filter(pk=task.pk).update(
        lease_owner="worker:other", lease_expires_at=timezone.now() + timedelta(minutes=1)
    )
    assert _run(task).state == TaskState.RECEIVED
    assert not Step.objects.exists()


def test_message_before_the_task_is_due_does_nothing(owner: User) -> None:
    task = submit_task(owner)
    Task.objects.filter(pk=task.pk).update(next_run_at=timezone.now() + timedelta(minutes=1))
    assert _run(task).state == TaskState.RECEIVED


REFUND = {"order_number": "A-1002", "amount_cents": 2000, "currency": "USD", "reason": "damaged box"}


def test_retryable_failures_back_off_then_hand_off(owner: User) -> None:
    Order.objects.filter(number="A-1002").update(settlement_locked_until=timezone.now() + timedelta(hours=1))
    task = submit_task(owner, goal="Refund order A-1002", task_input=REFUND)
    delays = []
    for _ in range(3):  # the refund contract's retry_max
        before = timezone.now()
        task = _run(task)
        assert task.state == TaskState.TOOL_FAILED_RETRYABLE
        assert task.next_run_at is not None
        delays.append((task.next_run_at - before).total_seconds())
        _make_due(task)
    task = _run(task)
    assert task.state == TaskState.MANUAL_REVIEW
    assert "ORDER_LOCKED" in task.state_reason and "retries used up" in task.state_reason
    for delay, expected in zip(delays, [1, 2, 4], strict=True):
        assert expected * 0.75 <= delay <= expected * 1.25 + 0.5
    step = Step.objects.get(task=task, kind=StepKind.TOOL_CALL)
    assert step.attempt == 4 and step.state == StepState.FAILED
    assert step.output["error_code"] == "ORDER_LOCKED"
    assert not Refund.objects.exists()


def test_retry_succeeds_once_the_lock_is_released(owner: User) -> None:
    Order.objects.filter(number="A-1002").update(settlement_locked_until=timezone.now() + timedelta(hours=1))
    task = _run(submit_task(owner, goal="Refund order A-1002", task_input=REFUND))
    assert task.state == TaskState.TOOL_FAILED_RETRYABLE
    Order.objects.filter(number="A-1002").update(settlement_locked_until=None)
    _make_due(task)
    task = _run(task)
    assert task.state == TaskState.COMPLETED
    assert Refund.objects.get().amount_cents == 2000
    assert Order.objects.get(number="A-1002").refunded_cents == 2000


def test_non_retryable_failure_goes_back_to_the_model(owner: User) -> None:
    task = _run(submit_task(owner, goal="Look up order Z-9999", task_input={"order_number": "Z-9999"}))
    # The offline model reads ORDER_NOT_FOUND and hands the task to a human with the reason.
    assert task.state == TaskState.MANUAL_REVIEW
    assert "ORDER_NOT_FOUND" in task.state_reason
    lookup = Step.objects.get(task=task, name="lookup_order")
    assert lookup.state == StepState.FAILED and lookup.output["ok"] is False


def test_invalid_arguments_are_returned_to_the_model(owner: User) -> None:
    task = _run(submit_task(owner, goal="Look up order", task_input={"order_number": "lowercase-nope"}))
    lookup = Step.objects.get(task=task, name="lookup_order")
    assert lookup.output["error_code"] == "INVALID_ARGUMENTS"
    assert "order_number" in lookup.output["error_message"]
    assert task.state == TaskState.MANUAL_REVIEW


def test_handoff_tool_sends_the_task_to_manual_review(owner: User) -> None:
    task = _run(submit_task(owner, goal="Please hand off to a human", task_input={}))
    assert task.state == TaskState.MANUAL_REVIEW
    assert task.next_run_at is None and task.lease_owner == ""


def test_turn_limit_hands_off(owner: User, settings: Any) -> None:
    agent_update(agent=AgentConfig.objects.get(name="default"), values={"max_turns": 2}, user=None)
    task = _run(submit_task(owner))
    assert task.state == TaskState.MANUAL_REVIEW
    assert "turn limit (2)" in task.state_reason


def test_cancel_during_a_model_turn_records_the_turn_and_plans_nothing(
    owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asgiref.sync import sync_to_async

    task = submit_task(owner)

    async def cancel_now() -> None:
        await sync_to_async(task_cancel, thread_sensitive=True)(task_id=task.pk, actor="user:operator")

    _use_model(monkeypatch, CountingModel(before_answer=cancel_now))
    task = _run(task)
    assert task.state == TaskState.CANCELLED
    turn = Step.objects.get(task=task)
    assert turn.state == StepState.SUCCEEDED and turn.output is not None
    assert task.input_tokens == turn.input_tokens > 0
    assert not Step.objects.filter(kind=StepKind.TOOL_CALL).exists()

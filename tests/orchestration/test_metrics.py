"""The counters agree with the journal, count only what committed, and `/metrics` shows them with the state gauges."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from celery import current_app
from django.contrib.auth.models import User
from django.db import DatabaseError, transaction
from django.test import Client
from django.utils import timezone
from prometheus_client import REGISTRY

from agent_runtime.models import ModelPrice
from orchestration.models import Step, StepKind, Task, TaskState
from orchestration.services.execution import task_run
from orchestration.services.steps import step_begin, step_close
from shop.models import Order
from tests.factories import submit_task
from tests.metrics_journal import Samples, reconciliation_problems
from tools.models import ToolContract
from tools.selectors import active_contract
from tools.services.circuits import circuit_record

pytestmark = pytest.mark.django_db

RunAll = Callable[[Callable[[], Any]], Any]


@pytest.fixture
def committed(django_capture_on_commit_callbacks: Any) -> RunAll:
    """Run `work` and then what would follow its commits (the test's own transaction never commits)."""

    def run(work: Callable[[], Any]) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return work()

    return run


@pytest.fixture
def owner(demo_orders: None) -> User:
    ModelPrice.objects.update_or_create(
        model="offline", defaults={"input_usd_per_million": Decimal("2.5"), "output_usd_per_million": Decimal("10")}
    )
    return User.objects.create(username="owner")


def _samples() -> Samples:
    return Samples.of(REGISTRY.collect())


def _run_until_settled(task: Task, committed: RunAll) -> Task:
    for _ in range(8):
        committed(lambda: task_run(task_id=str(task.pk), worker="worker:test"))
        task.refresh_from_db()
        if task.state in (TaskState.COMPLETED, TaskState.MANUAL_REVIEW, TaskState.TOOL_FAILED_FATAL):
            return task
        Task.objects.filter(pk=task.pk).update(next_run_at=timezone.now())
    return task


def test_counters_equal_what_the_journal_says_after_a_mixed_batch(owner: User, committed: RunAll) -> None:
    before = _samples()
    Order.objects.filter(number="A-1002").update(settlement_locked_until=timezone.now() + timedelta(hours=1))
    batch = [
        committed(lambda: submit_task(owner)),  # completes
        committed(lambda: submit_task(owner, goal="Look up order Z-9999", task_input={"order_number": "Z-9999"})),
        committed(  # retried, then handed off: retries used up
            lambda: submit_task(
                owner,
                goal="Refund order A-1002",
                task_input={"order_number": "A-1002", "amount_cents": 100, "currency": "USD", "reason": "late"},
            )
        ),
    ]
    settled = [_run_until_settled(task, committed) for task in batch]
    assert [task.state for task in settled] == [TaskState.COMPLETED, TaskState.MANUAL_REVIEW, TaskState.MANUAL_REVIEW]
    delta = _samples().minus(before)
    assert reconciliation_problems(delta, settled) == []
    assert delta.sum("agent_step_retries_total", kind="tool_call") == 3
    assert delta.sum("agent_handoffs_total", reason="retries_exhausted") == 1
    assert delta.sum("agent_tasks_finished_total", outcome="completed", agent="default", agent_version="1") == 1
    assert delta.sum("agent_cost_usd_total") > 0


def test_a_rolled_back_step_counts_nothing(owner: User, committed: RunAll) -> None:
    task = submit_task(owner)
    before = _samples()

    def rolled_back() -> None:
        with pytest.raises(DatabaseError), transaction.atomic():
            step = step_begin(task=task, kind=StepKind.TOOL_CALL, ref="call:1:x", name="lookup_order", step_input={})
            step_close(step=step, succeeded=True, output={"ok": True})
            raise DatabaseError("the commit never happens")
        step = step_begin(task=task, kind=StepKind.TOOL_CALL, ref="call:1:y", name="lookup_order", step_input={})
        step_close(step=step, succeeded=True, output={"ok": True})

    committed(rolled_back)
    counted = _samples().minus(before)
    assert counted.sum("agent_steps_total") == 1, "the step that committed, not the one rolled back"
    assert counted.sum("agent_tool_calls_total", tool="lookup_order", outcome="ok") == 1
    assert Step.objects.filter(task=task).count() == 1


@pytest.fixture
def open_circuit() -> Iterator[str]:
    contract = active_contract("lookup_order")
    assert contract is not None
    for _ in range(contract.circuit.failure_threshold):
        circuit_record(contract, failed=True, code="UPSTREAM_DOWN")
    yield contract.name


def test_metrics_page_shows_counters_and_the_database_state(owner: User, client: Client, open_circuit: str) -> None:
    task = submit_task(owner, goal="Please hand off to a human", task_input={})
    task_run(task_id=str(task.pk), worker="worker:test")
    Task.objects.filter(pk=task.pk).update(handed_off_at=timezone.now() - timedelta(minutes=10))
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = Samples.parse(response.content.decode())
    assert samples.sum("agent_state_up") == 1
    assert samples.sum("agent_tasks_open", state="MANUAL_REVIEW") == 1
    assert 600 <= samples.sum("agent_manual_review_oldest_age_seconds") < 700
    assert samples.sum("agent_circuit_open", tool=open_circuit) == 1
    assert samples.sum("agent_circuit_open", tool="add_order_note") == 0
    assert ToolContract.objects.count() == len([k for k in samples.values if k[0] == "agent_circuit_open"])
    assert "agent_steps_total" in response.content.decode()


def test_a_figure_that_cannot_be_counted_never_fails_the_caller(
    owner: User, committed: RunAll, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any) -> None:
        raise ValueError("Counters can only be incremented by non-negative amounts.")

    sent: list[Any] = []
    monkeypatch.setattr("orchestration.metrics.TASKS_SUBMITTED.labels", broken)
    monkeypatch.setattr(current_app, "send_task", lambda name, args, **_: sent.append(args))
    task = committed(lambda: submit_task(owner))
    assert sent == [[str(task.pk)]], "the task's message still went out after its commit"


def test_metrics_page_still_answers_when_the_database_does_not(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable() -> Iterator[Any]:
        raise DatabaseError("connection refused")

    monkeypatch.setattr("orchestration.metrics_state._task_gauges", unreachable)
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = Samples.parse(response.content.decode())
    assert samples.sum("agent_state_up") == 0
    assert "agent_tasks_open" not in response.content.decode()

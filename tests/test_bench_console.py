"""The console benchmark (make bench-console), run small as a smoke check: it seeds, every page answers, and it
reports its figures. Its speed is read from `make bench-console`, never asserted here (shared, noisy machines)."""

from __future__ import annotations

from types import ModuleType

import pytest

from orchestration.models import RecoveryDecision, Step, StepKind, StepState, Task, TaskState, TaskTransition
from tests.benches import bench_script

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("queue_groups")]

PAGES = {
    "queue", "queue, one reason", "queue, search", "task page", "task page, queued", "task page, completed",
    "task list", "task list, one state", "task list, search",
}  # fmt: skip


def _bench() -> ModuleType:
    return bench_script("bench_console")


def test_the_console_benchmark_seeds_and_measures_every_page() -> None:
    figures = _bench().figures_for(tasks=200, steps_per_task=3, steps=12, requests=2)

    assert {name for name, page in figures.items() if isinstance(page, dict)} == PAGES
    for name in PAGES:
        page = figures[name]
        assert page["p50_ms"] > 0 and page["p95_ms"] >= page["p50_ms"] and page["queries"] > 0 and page["bytes"] > 0
    assert figures["tasks"] == 200 and figures["queued"] == 4 and figures["steps_per_task"] == 3
    assert figures["steps"] == 199 * 3 + 12 == Step.objects.count()
    assert figures["transitions"] == 200 * 5 + 12 // 2 == TaskTransition.objects.count()
    assert figures["recovery_decisions"] == RecoveryDecision.objects.count() > 20
    assert figures["step_table_bytes"] > 0 and figures["task_table_bytes"] > 0
    assert figures["seed_seconds"] >= figures["seed_steps_seconds"] >= 0


def test_the_seeded_steps_look_like_a_run_of_their_task() -> None:
    seeded = _bench().seed(tasks=60, queued=10, steps=12, steps_per_task=4)

    completed = Task.objects.get(pk=seeded.completed_task)
    assert completed.state == TaskState.COMPLETED
    steps = list(completed.steps.order_by("seq"))
    turn, call = StepKind.MODEL_TURN, StepKind.TOOL_CALL
    assert [s.kind for s in steps] == [turn, call, turn, turn]  # a completed task ends with the model's answer
    assert [s.ref for s in steps] == ["turn:1", "call:1:call_2", "turn:2", "turn:3"]
    assert all(s.finished_at and s.finished_at > s.started_at and s.idempotency_key.endswith(s.ref) for s in steps)
    queued = Task.objects.get(pk=seeded.queued_task)
    last = queued.steps.order_by("seq").last()
    assert last is not None and last.kind == StepKind.TOOL_CALL and last.state == StepState.FAILED
    assert Task.objects.get(pk=seeded.long_task).steps.count() == 12
    # every queued task but the long one has the decisions that handed it off, on its failed call
    handoffs = RecoveryDecision.objects.filter(action="handoff")
    assert handoffs.count() == 9 and all(d.step is not None and d.step.state == StepState.FAILED for d in handoffs)
    assert Step.objects.values("idempotency_key").distinct().count() == Step.objects.count() == 59 * 4 + 12

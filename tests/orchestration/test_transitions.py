"""The state machine: illegal moves raise and change nothing; racing workers cannot both win."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.db import close_old_connections, connection, transaction
from django_fsm import ConcurrentTransition, TransitionNotAllowed

from orchestration.models import Task, TaskState, TaskTransition, Transition
from orchestration.services.cancellation import task_cancel
from orchestration.services.leases import task_lease_acquire
from orchestration.services.transitions import task_transition
from tests.factories import submit_task


def _race(action: Callable[[], object], runners: int = 2) -> list[BaseException | None]:
    """Run `action` in `runners` threads released at once; each thread's outcome (None = it won)."""
    barrier = threading.Barrier(runners)
    outcomes: list[BaseException | None] = []

    def run() -> None:
        barrier.wait()
        try:
            action()
            outcomes.append(None)
        except BaseException as exc:
            outcomes.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(runners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


@pytest.mark.django_db
def test_state_cannot_be_assigned_directly() -> None:
    task = submit_task(User.objects.create(username="u"))
    with pytest.raises(AttributeError):
        task.state = TaskState.COMPLETED


@pytest.mark.django_db
def test_illegal_transition_raises_and_changes_nothing() -> None:
    task = submit_task(User.objects.create(username="u"))
    before = TaskTransition.objects.count()
    with pytest.raises(TransitionNotAllowed), transaction.atomic():
        locked = Task.objects.select_for_update().get(pk=task.pk)
        task_transition(task=locked, transition=Transition.FINISH_TOOL, actor="test")
    task.refresh_from_db()
    assert task.state == TaskState.RECEIVED
    assert TaskTransition.objects.count() == before


@pytest.mark.django_db(transaction=True)
def test_transition_outside_a_transaction_is_refused() -> None:
    task = submit_task(User.objects.create(username="u"))
    with pytest.raises(RuntimeError, match="inside the caller's transaction"):
        task_transition(task=task, transition=Transition.PLAN, actor="test")


@pytest.mark.django_db(transaction=True)
def test_two_workers_advancing_from_stale_reads_one_wins() -> None:
    """Both read the task in RECEIVED without a lock; the state compare-and-swap lets one save."""
    task = submit_task(User.objects.create(username="u"))
    barrier = threading.Barrier(2)

    def advance() -> None:
        stale = Task.objects.get(pk=task.pk)
        barrier.wait()
        with transaction.atomic():
            task_transition(task=stale, transition=Transition.PLAN, actor=f"worker:{threading.get_ident()}")

    outcomes = _race(advance)
    assert outcomes.count(None) == 1
    assert [type(exc) for exc in outcomes if exc is not None] == [ConcurrentTransition]
    assert Task.objects.get(pk=task.pk).state == TaskState.PLANNED
    assert TaskTransition.objects.filter(task=task, name="plan").count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_cancels_one_wins() -> None:
    """With the row lock, the loser waits, then sees CANCELLED and is refused."""
    task = submit_task(User.objects.create(username="u"))
    outcomes = _race(lambda: task_cancel(task_id=task.pk, actor="test"))
    assert outcomes.count(None) == 1
    assert [type(exc) for exc in outcomes if exc is not None] == [TransitionNotAllowed]
    assert TaskTransition.objects.filter(task=task, name="cancel").count() == 1


@pytest.mark.django_db(transaction=True)
def test_only_one_worker_takes_the_lease() -> None:
    task = submit_task(User.objects.create(username="u"))
    leases: list[object] = []
    _race(lambda: leases.append(task_lease_acquire(task_id=str(task.pk), owner="w")), runners=8)
    assert sum(lease is not None for lease in leases) == 1

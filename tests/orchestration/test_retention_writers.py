"""Retention on tables being written to: it passes over what a writer holds (SKIP LOCKED), gives way when it meets a
held row (lock_timeout), never keeps a writer waiting longer than one batch, and prunes what it left on its next run."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection

from orchestration.models import Step, Task, TaskState
from orchestration.services.retention import tasks_prune
from orchestration.services.retention_archive import archive_read
from tests.retention import MONTH, age, kept, row_held, run_completed


@pytest.fixture
def owner(demo_orders: None) -> User:
    return User.objects.create(username="retention-owner")


@pytest.mark.django_db(transaction=True)
def test_retention_beside_a_busy_writer_skips_a_locked_task_and_never_blocks_it_long(owner: User) -> None:
    """Another thread keeps running new tasks and writing to old ones while retention runs in batches, and a third
    holds the row lock of one old task throughout: retention passes it over and finishes; the next run prunes it."""
    old = [run_completed(owner) for _ in range(12)]
    for task in old:
        age(task, days=40)
    held, others = old[0], old[1:]
    stop = threading.Event()
    waits: list[float] = []
    written: list[uuid.UUID] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            while not stop.is_set():
                written.append(run_completed(owner).pk)  # inserts a task, its steps and transitions; updates both
                for task in others:  # late writes to each old task and its steps: they wait at most for one batch
                    started = time.monotonic()
                    Task.objects.filter(pk=task.pk).update(metadata={"touched": len(written)})
                    Step.objects.filter(task_id=task.pk).update(decided_by="user:late")
                    waits.append(time.monotonic() - started)
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    thread = threading.Thread(target=writer)
    with row_held(lambda: Task.objects.select_for_update().get(pk=held.pk)):
        thread.start()
        while not written and not errors:
            time.sleep(0.01)
        writes_before = len(waits)
        result = tasks_prune(older_than=MONTH, batch_size=3, pause_seconds=0.1)
        writes_during = len(waits) - writes_before
    stop.set()
    thread.join(timeout=60)

    assert errors == []
    left = kept(*old)
    assert held.pk in left, "the locked task was passed over, not waited for"
    # So is an old task the writer happens to hold for a few milliseconds when its batch looks: skipped (or its
    # batch gives way), and pruned on the next run like the held one.
    assert result.tasks == len(old) - len(left) and result.batches >= 4
    assert writes_during > 0 and max(waits) < 2.0, f"a writer waited {max(waits):.2f} s"
    assert Task.objects.filter(pk__in=written, state=TaskState.COMPLETED).count() == len(written)
    print(
        f"{writes_during} writes during {result.seconds} s of retention, longest {max(waits) * 1000:.0f} ms; "
        f"{len(left)} tasks left for the next run"
    )

    again = tasks_prune(older_than=MONTH, pause_seconds=0)
    assert again.tasks == len(left) and kept(*old) == set()


@pytest.mark.django_db(transaction=True)
def test_a_batch_that_meets_a_held_step_gives_way_and_leaves_no_archive_lines(owner: User, tmp_path: Path) -> None:
    """A writer holding one step's row lock makes its batch time out (lock_timeout), roll back and drop its archive
    member; the other batches go on, and the next run prunes what was left."""
    tasks = sorted((run_completed(owner) for _ in range(3)), key=lambda task: task.pk)
    for task in tasks:
        age(task, days=40)
    held = Step.objects.filter(task=tasks[1]).order_by("seq").values_list("pk", flat=True)[0]

    with row_held(lambda: Step.objects.select_for_update().get(pk=held)):
        result = tasks_prune(older_than=MONTH, batch_size=1, archive_dir=tmp_path, pause_seconds=0)

    assert [(batch.tasks, batch.gave_way) for batch in result.batch_log] == [(1, ""), (1, "lock timeout"), (1, "")]
    assert (result.tasks, result.batches_gave_way) == (2, 1)
    assert result.archive is not None
    assert [doc["task"]["id"] for doc in archive_read(result.archive)] == [str(tasks[0].pk), str(tasks[2].pk)]
    assert kept(*tasks) == {tasks[1].pk}
    assert tasks_prune(older_than=MONTH, pause_seconds=0).tasks == 1

"""A save of a stored task or step writes only what changed, so it can never undo a change it did not make."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orchestration.models import Step, StepKind, Task
from orchestration.services.leases import task_row_locked
from tests.factories import submit_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def task() -> Task:
    return submit_task(User.objects.create(username="o"))


def _updates(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if q["sql"].startswith("UPDATE")]


def _step(task: Task) -> Step:
    return Step.objects.create(
        task=task,
        seq=1,
        kind=StepKind.MODEL_TURN,
        ref="turn:1",
        name="offline",
        input={"messages": ["hi"]},
        started_at=timezone.now(),
    )


def test_a_loaded_task_saves_only_the_columns_it_changed(task: Task) -> None:
    loaded = Task.objects.get(pk=task.pk)
    loaded.replans = 2
    with CaptureQueriesContext(connection) as captured:
        loaded.save()
    (update,) = _updates(captured)
    set_clause = update.split(" WHERE ")[0]
    assert '"replans"' in set_clause and '"updated_at"' in set_clause
    assert not {'"goal"', '"trace_id"', '"state_reason"', '"owner_id"'} & set(set_clause.split())
    assert '"input"' in set_clause  # read from the database as a dict: always written back (see ChangedFieldsSave)


def test_a_change_made_by_someone_else_survives_a_save_that_did_not_touch_it(task: Task) -> None:
    loaded = Task.objects.get(pk=task.pk)
    Task.objects.filter(pk=task.pk).update(lease_owner="worker:other")
    loaded.replans = 1
    loaded.save()
    stored = Task.objects.get(pk=task.pk)
    assert (stored.replans, stored.lease_owner) == (1, "worker:other")


def test_a_deferred_column_is_written_once_assigned_and_left_alone_otherwise(task: Task) -> None:
    Task.objects.filter(pk=task.pk).update(metadata={"kept": True})
    locked = task_row_locked(str(task.pk))  # defers goal, input, metadata, result
    locked.result = {"answer": 42}
    locked.save()
    stored = Task.objects.get(pk=task.pk)
    assert stored.result == {"answer": 42} and stored.metadata == {"kept": True}


def test_a_json_value_changed_in_place_is_written(task: Task) -> None:
    step = _step(task)
    step.input["messages"].append("again")  # after this instance saved it: compared with a copy
    step.save()
    assert Step.objects.get(pk=step.pk).input == {"messages": ["hi", "again"]}
    loaded = Step.objects.get(pk=step.pk)
    loaded.input["messages"].append("once more")  # read from the database: always written back
    loaded.save()
    assert Step.objects.get(pk=step.pk).input["messages"][-1] == "once more"


def test_an_unchanged_json_value_saved_by_this_instance_is_not_sent_again(task: Task) -> None:
    step = _step(task)
    step.finished_at = timezone.now()
    with CaptureQueriesContext(connection) as captured:
        step.save()
    (update,) = _updates(captured)
    assert '"finished_at"' in update and '"input"' not in update.split(" WHERE ")[0]


def test_a_value_reset_after_a_refresh_is_written(task: Task) -> None:
    loaded = Task.objects.get(pk=task.pk)
    Task.objects.filter(pk=task.pk).update(replans=3)
    loaded.refresh_from_db()
    loaded.replans = 0  # what it was when first read, but no longer what is stored
    loaded.save()
    assert Task.objects.get(pk=task.pk).replans == 0


def test_a_partial_refresh_keeps_an_unsaved_change_to_another_column(task: Task) -> None:
    loaded = Task.objects.get(pk=task.pk)
    loaded.lease_owner = "worker:me"
    Task.objects.filter(pk=task.pk).update(replans=3)
    loaded.refresh_from_db(fields=["replans"])
    loaded.save()
    stored = Task.objects.get(pk=task.pk)
    assert (stored.replans, stored.lease_owner) == (3, "worker:me")

"""Scheduling: a message only after commit, and none for a far due time (the sweeper sends it when due)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from orchestration.models import Task
from orchestration.services.scheduling import MAX_COUNTDOWN_SECONDS, RUN_TASK, task_enqueue
from orchestration.tracing import TRACE_HEADER
from tests.factories import submit_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def task() -> Task:
    return submit_task(User.objects.create(username="o"))


def _enqueue(task: Task, due_in: float, django_capture_on_commit_callbacks: Any) -> list[Any]:
    with (
        mock.patch("orchestration.services.scheduling.current_app.send_task") as send,
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        transaction.atomic(),
    ):
        task_enqueue(task=task, due_at=timezone.now() + timedelta(seconds=due_in))
        assert not send.called, "nothing is sent before the transaction commits"
    assert len(callbacks) <= 1
    return list(send.call_args_list)


def test_a_near_due_time_is_sent_after_commit_with_its_countdown(
    task: Task, django_capture_on_commit_callbacks: Any
) -> None:
    (call,) = _enqueue(task, 10, django_capture_on_commit_callbacks)
    assert call.args == (RUN_TASK,) and call.kwargs["args"] == [str(task.pk)]
    assert 9 < call.kwargs["countdown"] <= 10
    assert call.kwargs["headers"] == {TRACE_HEADER: task.trace_id}
    task.refresh_from_db()
    assert task.enqueued_at is not None


def test_a_far_due_time_sends_nothing_and_leaves_it_to_the_sweeper(
    task: Task, django_capture_on_commit_callbacks: Any
) -> None:
    assert _enqueue(task, MAX_COUNTDOWN_SECONDS + 60, django_capture_on_commit_callbacks) == []
    task.refresh_from_db()
    assert task.enqueued_at is None


def test_a_broker_that_is_down_loses_nothing(task: Task, django_capture_on_commit_callbacks: Any, caplog: Any) -> None:
    with (
        mock.patch("orchestration.services.scheduling.current_app.send_task", side_effect=ConnectionError("down")),
        django_capture_on_commit_callbacks(execute=True),
        transaction.atomic(),
    ):
        task_enqueue(task=task)
    assert "broker unavailable; the sweeper will send this task" in caplog.text
    task.refresh_from_db()
    assert task.enqueued_at is not None and task.next_run_at is not None

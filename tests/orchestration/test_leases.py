"""Leases: one worker runs a task at a time, until its lease expires; a duplicate message finds it taken."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from orchestration.models import Task
from orchestration.services.leases import (
    task_lease_acquire,
    task_lease_release,
    task_lease_renew,
    task_locked_or_none,
    task_under_lease,
)
from tests.factories import submit_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def task() -> Task:
    return submit_task(User.objects.create(username="o"))


def test_a_duplicate_message_finds_the_task_leased_and_does_nothing(task: Task) -> None:
    first = task_lease_acquire(task_id=str(task.pk), owner="worker:a")
    assert first is not None
    assert task_lease_acquire(task_id=str(task.pk), owner="worker:b") is None


def test_a_task_not_yet_due_is_not_taken(task: Task) -> None:
    Task.objects.filter(pk=task.pk).update(next_run_at=timezone.now() + timedelta(seconds=30))
    assert task_lease_acquire(task_id=str(task.pk), owner="worker:a") is None


def test_an_expired_lease_lets_the_next_worker_take_the_task(task: Task) -> None:
    first = task_lease_acquire(task_id=str(task.pk), owner="worker:a")
    Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    second = task_lease_acquire(task_id=str(task.pk), owner="worker:b")
    assert first is not None and second is not None and second.token != first.token
    assert task_locked_or_none(first) is None, "the first worker lost the task"
    done: list[str] = []
    assert not task_under_lease(first, lambda t: done.append("first"), if_lost="lost")
    assert task_under_lease(second, lambda t: done.append("second"), if_lost="lost")
    assert done == ["second"]


def test_work_under_a_lost_lease_is_given_up_and_logged(task: Task, caplog: Any) -> None:
    lease = task_lease_acquire(task_id=str(task.pk), owner="worker:a")
    assert lease is not None
    Task.objects.filter(pk=task.pk).update(lease_token=None)
    assert not task_under_lease(lease, lambda t: None, if_lost="lease lost before the outcome was recorded")
    assert "lease lost before the outcome was recorded" in caplog.text


def test_during_a_step_the_lease_runs_to_its_deadline_plus_grace(task: Task, settings: Any) -> None:
    settings.STEP_DEADLINE_GRACE_SECONDS, settings.STEP_LEASE_SECONDS = 10.0, 60.0
    before = timezone.now()
    task_lease_renew(task, step_deadline_seconds=300)
    assert task.lease_expires_at is not None
    assert timedelta(seconds=310) <= task.lease_expires_at - before < timedelta(seconds=311)
    task_lease_renew(task)
    assert timedelta(seconds=60) <= task.lease_expires_at - before < timedelta(seconds=61)
    task_lease_release(task)
    assert (task.lease_token, task.lease_owner, task.lease_expires_at) == (None, "", None)

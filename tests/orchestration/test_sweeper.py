"""The sweeper re-sends exactly the due, unowned tasks whose message is overdue."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from orchestration.models import Task
from orchestration.services.cancellation import task_cancel
from orchestration.services.sweeper import tasks_sweep
from tests.factories import submit_task


@pytest.fixture
def broker() -> redis.Redis:
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    return client


@pytest.mark.django_db(transaction=True)
def test_sweeper_sends_only_what_is_due_and_lost(broker: redis.Redis) -> None:
    owner = User.objects.create(username="o")
    now = timezone.now()
    lost = submit_task(owner)
    fresh = submit_task(owner)
    leased = submit_task(owner)
    later = submit_task(owner)
    cancelled = submit_task(owner)
    task_cancel(task_id=cancelled.pk, actor="test")
    Task.objects.filter(pk__in=[lost.pk, leased.pk, later.pk]).update(enqueued_at=now - timedelta(minutes=5))
    Task.objects.filter(pk=leased.pk).update(lease_owner="w", lease_expires_at=now + timedelta(minutes=1))
    Task.objects.filter(pk=later.pk).update(next_run_at=now + timedelta(minutes=1))
    broker.flushdb()

    assert tasks_sweep() == 1
    assert broker.llen("celery") == 1
    Task.objects.filter(pk=lost.pk).update(enqueued_at=now - timedelta(minutes=5))
    Task.objects.filter(pk=leased.pk).update(lease_expires_at=now - timedelta(seconds=1))  # its worker died
    assert tasks_sweep() == 2
    assert Task.objects.get(pk=fresh.pk).enqueued_at is not None


@pytest.mark.django_db(transaction=True)
def test_submission_survives_a_broker_outage(broker: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the broker unreachable, the submission still commits; the sweeper sends it later."""
    from celery import current_app
    from kombu.exceptions import OperationalError

    def broker_down(*args: object, **kwargs: object) -> None:
        raise OperationalError("Error 111 connecting to broker. Connection refused.")

    owner = User.objects.create(username="o")
    with monkeypatch.context() as patch:
        patch.setattr(current_app, "send_task", broker_down)
        task = submit_task(owner)
    assert Task.objects.filter(pk=task.pk).exists()
    assert broker.llen("celery") == 0
    Task.objects.filter(pk=task.pk).update(enqueued_at=timezone.now() - timedelta(minutes=5))
    assert tasks_sweep() == 1
    assert broker.llen("celery") == 1


@pytest.mark.django_db(transaction=True)
def test_a_backlog_is_not_copied_into_the_queue(broker: redis.Redis) -> None:
    """With messages waiting, a task overdue by a little is presumed queued; overdue by a lot, lost."""
    owner = User.objects.create(username="o")
    task = submit_task(owner)
    assert broker.llen("celery") == 1  # its own message waits: a backlog of one
    Task.objects.filter(pk=task.pk).update(enqueued_at=timezone.now() - timedelta(seconds=5))
    assert tasks_sweep() == 0
    Task.objects.filter(pk=task.pk).update(enqueued_at=timezone.now() - timedelta(minutes=5))
    assert tasks_sweep() == 1
    broker.flushdb()
    Task.objects.filter(pk=task.pk).update(enqueued_at=timezone.now() - timedelta(seconds=5))
    assert tasks_sweep() == 1, "an empty queue means the message was lost"

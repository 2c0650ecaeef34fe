"""Retention: old finished tasks leave in short batches (archived first if asked), everything hanging off them
with them; what must outlive them (sessions, the tools' ledger) stays. Beside busy writers: test_retention_writers."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import models
from django.db.models import QuerySet
from django.utils import timezone

from memory.models import Session, SessionWrite, VaultedValue
from orchestration.models import (
    Approval,
    OperatorAction,
    OperatorActionKind,
    RecoveryDecision,
    RecoveryEvent,
    Step,
    StepKind,
    Task,
    TaskSpan,
    TaskState,
    TaskTransition,
)
from orchestration.services.cancellation import task_cancel
from orchestration.services.retention import tasks_prune
from orchestration.services.retention_archive import archive_read, task_relations
from orchestration.tasks import prune_finished_tasks
from tests.factories import submit_task
from tests.retention import MONTH, age, kept, run_completed
from tools.errors import RecoveryAction
from tools.models import ToolCallRecord


def _exact(value: Any) -> Any:
    """A JSON value with its numbers as Decimal, as the archive is read (`parse_float=Decimal`)."""
    return json.loads(json.dumps(value), parse_float=Decimal)


def _rows(queryset: QuerySet[Any]) -> list[dict[str, Any]]:
    """The rows as the ORM reads them, JSON columns with exact numbers."""
    json_columns = {f.attname for f in queryset.model._meta.concrete_fields if isinstance(f, models.JSONField)}
    rows = queryset.order_by("pk").values()
    return [{name: _exact(v) if name in json_columns else v for name, v in row.items()} for row in rows]


def _typed(model: type[models.Model], archived: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Archived rows (PostgreSQL's row_to_json) back in the types the ORM reads: nothing may have been lost."""
    typed = []
    for row in archived:
        values = {}
        for field in model._meta.concrete_fields:
            value, kind = row[field.column], getattr(field, "target_field", field)
            if value is not None and isinstance(kind, models.DateTimeField):
                value = datetime.fromisoformat(value)
            elif value is not None and isinstance(kind, models.UUIDField):
                value = uuid.UUID(value)
            elif value is not None and isinstance(kind, models.DecimalField):
                value = Decimal(value)
            values[field.attname] = value
        typed.append(values)
    return typed


@pytest.fixture
def owner(demo_orders: None) -> User:
    return User.objects.create(username="retention-owner")


@pytest.mark.django_db
def test_only_old_finished_tasks_go(owner: User) -> None:
    completed, fatal, cancelled = run_completed(owner), submit_task(owner), submit_task(owner)
    task_cancel(task_id=cancelled.pk, actor="test")
    recent = run_completed(owner)
    manual, runnable, mid_step = submit_task(owner), submit_task(owner), submit_task(owner)
    for task in (completed, cancelled):
        age(task, days=31)
    age(fatal, days=31, state=TaskState.TOOL_FAILED_FATAL)
    age(recent, days=29)
    age(manual, days=90, state=TaskState.MANUAL_REVIEW)  # a finished_at on them proves the state decides
    age(runnable, days=90)
    # Cancelled while its step ran, whose worker may still write: it waits until the sweeper closes the step.
    Step.objects.create(
        task=mid_step, seq=1, kind=StepKind.MODEL_TURN, ref="turn:1", name="offline",
        idempotency_key=f"{mid_step.idempotency_key}:turn:1", trace_id=mid_step.trace_id, started_at=timezone.now(),
    )  # fmt: skip
    age(mid_step, days=90, state=TaskState.CANCELLED)

    result = tasks_prune(older_than=MONTH, pause_seconds=0)

    assert (result.tasks, result.batches, result.archive) == (3, 1, None)
    assert result.steps == 3, "the completed task's three steps; the others never ran one"
    assert kept(completed, fatal, cancelled, recent, manual, runnable, mid_step) == {
        recent.pk, manual.pk, runnable.pk, mid_step.pk,
    }  # fmt: skip


@pytest.mark.django_db
def test_the_archive_holds_each_task_on_one_line_with_all_that_hung_off_it(owner: User, tmp_path: Path) -> None:
    task = run_completed(owner)
    age(task, days=40)
    call = Step.objects.get(task=task, kind=StepKind.TOOL_CALL)
    # What a harder life leaves too: a held call, a recovery decision on a step, an operator's note.
    Approval.objects.create(step=call, task=task, tool=call.name, arguments={"amount": 1.5}, reason="rule")
    RecoveryDecision.objects.create(
        task=task, step=call, event=RecoveryEvent.TOOL_ERROR, action=RecoveryAction.RETRY, what="timeout",
        rule="retry", attempt=1, next_attempt_at=timezone.now(), envelope={"error_code": "TIMEOUT"}, actor="worker",
    )  # fmt: skip
    OperatorAction.objects.create(task=task, kind=OperatorActionKind.NOTE, actor=owner, note="called the customer")
    expected = {
        "task": (Task, Task.objects.filter(pk=task.pk)),
        "steps": (Step, Step.objects.filter(task=task)),
        "transitions": (TaskTransition, task.transitions.all()),
        "spans": (TaskSpan, task.spans.all()),
        "approvals": (Approval, task.approvals.all()),
        "recovery_decisions": (RecoveryDecision, task.recovery_decisions.all()),
        "operator_actions": (OperatorAction, task.operator_actions.all()),
        "vaulted_values": (VaultedValue, VaultedValue.objects.filter(scope=f"task:{task.pk}")),
    }
    rows = {name: _rows(queryset) for name, (_, queryset) in expected.items()}
    calls = [step["idempotency_key"] for step in rows["steps"] if step["kind"] == StepKind.TOOL_CALL]
    ledger = _rows(ToolCallRecord.objects.filter(idempotency_key__in=calls))
    assert len(rows["steps"]) == 3 and all(rows.values()) and len(ledger) == len(calls) == 1

    result = tasks_prune(older_than=MONTH, archive_dir=tmp_path / "archive", pause_seconds=0)

    assert result.archive is not None and result.archive.parent == tmp_path / "archive"
    assert result.archived_bytes == result.archive.stat().st_size > 0
    with gzip.open(result.archive, "rt") as archive:
        (line,) = archive.read().splitlines()
    document = json.loads(line, parse_float=Decimal)
    assert document["format"] == 1
    assert [doc["task"]["id"] for doc in archive_read(result.archive)] == [str(task.pk)]
    for name, (model, _) in expected.items():
        archived = [document["task"]] if name == "task" else document[name]
        assert _typed(model, archived) == rows[name], f"{name} round-trips exactly (microseconds, decimals)"
    assert rows["vaulted_values"][0]["ciphertext"].startswith("gAAAA"), "still encrypted: never a revealed value"
    assert _typed(ToolCallRecord, document["ledger"]) == ledger

    for model, queryset in expected.values():
        assert not queryset.exists(), f"no {model.__name__} of the task is left"
    assert not VaultedValue.objects.filter(scope=f"task:{task.pk}").exists()
    assert ToolCallRecord.objects.filter(idempotency_key__in=calls).count() == len(calls), "the ledger stays"


@pytest.mark.django_db
def test_sessions_and_their_vault_outlive_their_tasks(owner: User) -> None:
    first, second = run_completed(owner, session_id="customer-1"), run_completed(owner, session_id="customer-1")
    for task in (first, second):
        age(task, days=40)
    session = Session.objects.get(owner=owner, session_id="customer-1")
    scope = f"session:{owner.pk}:customer-1"
    vaulted = VaultedValue.objects.filter(scope=scope).count()
    writes = SessionWrite.objects.filter(session=session).count()
    assert vaulted and writes == 2

    assert tasks_prune(older_than=MONTH, pause_seconds=0).tasks == 2

    assert Session.objects.get(pk=session.pk).facts == session.facts
    assert SessionWrite.objects.filter(session=session).count() == writes
    assert VaultedValue.objects.filter(scope=scope).count() == vaulted


@pytest.mark.django_db
def test_a_dry_run_counts_and_changes_nothing(owner: User, tmp_path: Path) -> None:
    tasks = [run_completed(owner) for _ in range(3)]
    for task in tasks:
        age(task, days=40)

    result = tasks_prune(older_than=MONTH, batch_size=2, archive_dir=tmp_path, dry_run=True)

    assert (result.dry_run, result.tasks, result.steps, result.batches) == (True, 3, 9, 2)
    assert kept(*tasks) == {task.pk for task in tasks}
    assert list(tmp_path.iterdir()) == [] and result.archive is None


@pytest.mark.django_db
def test_batches_of_the_given_size_each_reported(owner: User, tmp_path: Path) -> None:
    tasks = [run_completed(owner) for _ in range(5)]
    for task in tasks:
        age(task, days=40)
    heard: list[int] = []

    result = tasks_prune(
        older_than=MONTH, batch_size=2, archive_dir=tmp_path, pause_seconds=0, on_batch=lambda b: heard.append(b.tasks)
    )

    assert heard == [2, 2, 1] and (result.batches, result.tasks, result.steps) == (3, 5, 15)
    assert result.archive is not None
    assert sorted(doc["task"]["id"] for doc in archive_read(result.archive)) == sorted(str(t.pk) for t in tasks)


def test_every_foreign_key_to_a_task_cascades_and_the_ledger_has_none() -> None:
    """The audit behind retention: a new model pointing at Task must be looked at (archived? cascaded?) here."""
    pointing = {
        (model._meta.label, field.name, getattr(field.remote_field, "on_delete", None))
        for model in apps.get_models()
        for field in model._meta.get_fields()
        if field.is_relation and field.concrete and field.related_model in (Task, Step)
    }
    cascade = models.CASCADE
    assert pointing == {
        ("orchestration.TaskTransition", "task", cascade),
        ("orchestration.Step", "task", cascade),
        ("orchestration.Approval", "task", cascade),
        ("orchestration.Approval", "step", cascade),
        ("orchestration.RecoveryDecision", "task", cascade),
        ("orchestration.RecoveryDecision", "step", cascade),
        ("orchestration.OperatorAction", "task", cascade),
        ("orchestration.TaskSpan", "task", cascade),
    }
    archived = {rel.related_model._meta.label for rel in task_relations()}  # type: ignore[union-attr]
    assert archived == {label for label, field, _ in pointing if field == "task"}


@pytest.mark.django_db
def test_the_command_prints_a_line_a_batch_and_a_summary(owner: User, tmp_path: Path) -> None:
    for task in (run_completed(owner), run_completed(owner)):
        age(task, days=40)
    out = StringIO()

    call_command("tasks_prune", "--dry-run", stdout=out)
    call_command("tasks_prune", "--older-than-days", "30", "--batch-size", "1", "--archive-dir", tmp_path, stdout=out)
    call_command("tasks_prune", "--pause-seconds", "0", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0].startswith("dry run: 2 tasks (6 steps) finished before ") and "nothing was changed" in lines[0]
    assert lines[1].startswith("batch 1: 1 tasks, 3 steps, ") and "bytes archived" in lines[1]
    assert lines[2].startswith("batch 2: 1 tasks, 3 steps, ")
    assert lines[3].startswith("pruned 2 tasks (6 steps, ") and f"archived to {tmp_path}" in lines[3]
    assert lines[4] == "no --archive-dir: tasks are deleted without an archive"
    assert lines[5].startswith("pruned 0 tasks (0 steps, 0 rows) ") and lines[5].endswith("; not archived")
    with pytest.raises(CommandError, match="retention is off"):
        call_command("tasks_prune", "--older-than-days", "0", stdout=out)


@pytest.mark.django_db
def test_the_periodic_run_follows_the_settings_and_is_off_at_zero_days(
    owner: User, settings: Any, tmp_path: Path
) -> None:
    task = run_completed(owner)
    age(task, days=40)
    settings.TASK_RETENTION_DAYS, settings.TASK_RETENTION_ARCHIVE_DIR = 0, str(tmp_path)
    assert prune_finished_tasks() == 0 and kept(task) == {task.pk}

    settings.TASK_RETENTION_DAYS = 30
    assert prune_finished_tasks() == 1 and kept(task) == set()
    (archive,) = tmp_path.iterdir()
    assert [doc["task"]["id"] for doc in archive_read(archive)] == [str(task.pk)]


@pytest.mark.parametrize(("interval", "scheduled"), [("", False), ("3600", True)])
def test_beat_prunes_only_with_an_interval_set(interval: str, scheduled: bool) -> None:
    probe = "from django.conf import settings; print('prune-finished-tasks' in settings.CELERY_BEAT_SCHEDULE)"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.test_settings", "TASK_RETENTION_INTERVAL_SECONDS": interval}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(scheduled)


@pytest.mark.django_db
def test_settled_webhook_deliveries_go_with_their_task_and_a_pending_one_stays(owner: User, settings: Any) -> None:
    """A delivered or failed delivery (with its attempts and audit) goes with its pruned task; one still pending is
    an outcome the client is owed, so it stays (its payload holds all it sends)."""
    from orchestration.models import WebhookAttempt, WebhookDelivery, WebhookDeliveryState
    from orchestration.services.webhooks import webhook_endpoint_register

    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    webhook_endpoint_register(owner=owner, url="http://127.0.0.1:9/hook", events=["task.completed"], actor="test")
    delivered, pending, recent = run_completed(owner), run_completed(owner), run_completed(owner)
    deliveries = {d.task_id: d for d in WebhookDelivery.objects.all()}
    assert set(deliveries) == {delivered.pk, pending.pk, recent.pk}
    settled = deliveries[delivered.pk]
    WebhookDelivery.objects.filter(pk=settled.pk).update(state=WebhookDeliveryState.DELIVERED)
    WebhookAttempt.objects.create(delivery=settled, number=1, started_at=timezone.now(), worker="test")
    for task in (delivered, pending):
        age(task, days=31)

    tasks_prune(older_than=MONTH, pause_seconds=0)

    assert set(WebhookDelivery.objects.values_list("task_id", flat=True)) == {pending.pk, recent.pk}
    assert not WebhookAttempt.objects.filter(delivery_id=settled.pk).exists()

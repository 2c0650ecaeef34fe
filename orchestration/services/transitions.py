"""The one way a task changes state: a django-fsm transition on a locked row, saved, and logged."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from orchestration.models import TERMINAL_STATES, Task, TaskState, TaskTransition


def task_transition(*, task: Task, name: str, actor: str, reason: str = "") -> TaskTransition:
    """Apply transition `name` to `task`, which the caller has locked inside its transaction.

    An illegal move raises `TransitionNotAllowed` before anything is written; a concurrent change of the
    state since the row was read raises `ConcurrentTransition` at save (compare-and-swap on the state).
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("task_transition must run inside the caller's transaction")
    from_state = task.state
    getattr(task, name)()
    task.state_reason = reason
    if task.state in TERMINAL_STATES or task.state == TaskState.MANUAL_REVIEW:
        task.next_run_at = None
        task.lease_token = None
        task.lease_owner = ""
        task.lease_expires_at = None
    if task.state in TERMINAL_STATES:
        task.finished_at = timezone.now()
    task.save()
    return TaskTransition.objects.create(
        task=task, name=name, from_state=from_state, to_state=task.state, actor=actor, reason=reason
    )


def task_cancel(*, task_id: object, actor: str, reason: str = "") -> Task:
    """Stop a task. A worker running it loses its lease and stops before planning anything more."""
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=task_id)
        task_transition(task=task, name="cancel", actor=actor, reason=reason or "cancelled on request")
    return task

"""Cancelling a task on a client's or an operator's request."""

from __future__ import annotations

from django.db import transaction

from orchestration.models import Task
from orchestration.policy.operator_actions import cancel_decide
from orchestration.services.decisions import decision_apply


def task_cancel(*, task_id: object, actor: str, reason: str = "") -> Task:
    """Stop a task. A worker running it loses its lease and stops before planning anything more."""
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=task_id)
        decision_apply(task=task, decision=cancel_decide(reason), actor=actor)
    return task

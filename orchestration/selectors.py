"""Reads of tasks, scoped to who is asking."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Prefetch, QuerySet

from orchestration.models import Approval, RecoveryDecision, Step, Task


def tasks_visible_to(user: AbstractBaseUser) -> QuerySet[Task]:
    """A client sees its own tasks; staff see all."""
    tasks = Task.objects.all()
    return tasks if getattr(user, "is_staff", False) else tasks.filter(owner=user)


def task_detail_queryset(user: AbstractBaseUser) -> QuerySet[Task]:
    steps = Step.objects.select_related("contract_version").order_by("seq")
    decisions = RecoveryDecision.objects.select_related("step").order_by("id")
    return tasks_visible_to(user).prefetch_related(
        Prefetch("steps", queryset=steps),
        "transitions",
        Prefetch("approvals", queryset=_approvals()),
        Prefetch("recovery_decisions", queryset=decisions),
    )


def _approvals() -> QuerySet[Approval]:
    return Approval.objects.select_related("step")

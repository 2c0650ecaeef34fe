"""Reads of tasks, scoped to who is asking."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Prefetch, QuerySet

from orchestration.models import Approval, RecoveryDecision, RecoveryEvent, Step, StepState, Task


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


def last_completed_step(task_id: object, *, before: Step | None = None) -> Step | None:
    """The replayable checkpoint: the last step of the task (before `before`, if given) that completed."""
    completed = Step.objects.filter(task_id=task_id, state=StepState.SUCCEEDED)
    if before is not None:
        completed = completed.filter(seq__lt=before.seq)
    return completed.order_by("-seq").first()


def database_failures_in_a_row(task: Task) -> int:
    """Database failures recorded on the task since its last completed step (or its creation)."""
    checkpoint = last_completed_step(task.pk)
    since = checkpoint.finished_at if checkpoint and checkpoint.finished_at else task.created_at
    return RecoveryDecision.objects.filter(task=task, event=RecoveryEvent.DATABASE_ERROR, created_at__gt=since).count()

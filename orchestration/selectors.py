"""Reads of tasks, scoped to who is asking."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Prefetch, QuerySet

from memory.vault import redaction_scope
from orchestration.models import (
    Approval,
    OperatorAction,
    RecoveryDecision,
    RecoveryEvent,
    Step,
    StepKind,
    StepState,
    Task,
    TaskTransition,
)


def tasks_visible_to(user: AbstractBaseUser) -> QuerySet[Task]:
    """A client sees its own tasks; staff see all."""
    tasks = Task.objects.select_related("agent_version")
    return tasks if getattr(user, "is_staff", False) else tasks.filter(owner=user)


def tasks_workable_by(user: AbstractBaseUser) -> QuerySet[Task]:
    """What an operator may act on: every task with the queue permission, else the user's own."""
    if user.has_perm("orchestration.work_queue"):  # type: ignore[attr-defined]
        return Task.objects.all()
    return tasks_visible_to(user)


def task_detail_queryset(user: AbstractBaseUser) -> QuerySet[Task]:
    steps = Step.objects.select_related("contract_version").order_by("seq")
    decisions = RecoveryDecision.objects.select_related("step").order_by("id")
    return (
        tasks_workable_by(user)
        .select_related("claimed_by", "agent_version")
        .prefetch_related(
            Prefetch("steps", queryset=steps),
            "transitions",
            Prefetch("approvals", queryset=_approvals()),
            Prefetch("recovery_decisions", queryset=decisions),
            Prefetch("operator_actions", queryset=OperatorAction.objects.select_related("actor").order_by("id")),
        )
    )


def task_detail_of_created(task: Task, first_transition: TaskTransition) -> Task:
    """A task this request has just created, as `task_detail_queryset` would read it back, without reading: no
    step, decision, approval or operator action can hang off it yet, only its first transition. Saves a submission
    the six queries of a read-back (tests/api check the two agree)."""
    related = {
        "steps": [],
        "transitions": [first_transition],
        "approvals": [],
        "recovery_decisions": [],
        "operator_actions": [],
    }
    cache: dict[str, QuerySet[Any]] = {}
    for name, rows in related.items():
        rows_queryset = getattr(task, name).get_queryset()  # lazy: nothing is read
        rows_queryset._result_cache = rows
        rows_queryset._prefetch_done = True
        cache[name] = rows_queryset
    task._prefetched_objects_cache = cache  # type: ignore[attr-defined]  # Django's own place for prefetched rows
    return task


def _approvals() -> QuerySet[Approval]:
    return Approval.objects.select_related("step")


def last_completed_step(task_id: object, *, before: Step | None = None) -> Step | None:
    """The replayable checkpoint: the last step of the task (before `before`, if given) that completed."""
    completed = Step.objects.filter(task_id=task_id, state=StepState.SUCCEEDED)
    if before is not None:
        completed = completed.filter(seq__lt=before.seq)
    return completed.order_by("-seq").first()


def database_failures_in_a_row(task: Task) -> int:
    """Database failures recorded on the task since its last completed step, or an operator's decision (a retry
    starts the count afresh), or its creation."""
    decisions = RecoveryDecision.objects.filter(task=task)
    checkpoint = last_completed_step(task.pk)
    operator = decisions.filter(event=RecoveryEvent.OPERATOR).order_by("-id").values_list("created_at", flat=True)
    moments = [task.created_at, checkpoint.finished_at if checkpoint else None, operator.first()]
    since = max(moment for moment in moments if moment is not None)
    return decisions.filter(event=RecoveryEvent.DATABASE_ERROR, created_at__gt=since).count()


def next_model_turn(task: Task) -> int:
    """The number of the model turn a run of the task asks for next (turns are recorded as "turn:<n>")."""
    refs = Step.objects.filter(task=task, kind=StepKind.MODEL_TURN, state=StepState.SUCCEEDED).values_list(
        "ref", flat=True
    )
    return 1 + max((int(ref.split(":", 2)[1]) for ref in refs), default=0)


@dataclass(frozen=True)
class TaskIdentity:
    """What a task is and whose, fixed at submission: safe to cache for a process's life."""

    agent: str
    agent_version_id: int | None
    owner_id: int
    session_id: str


_IDENTITIES: dict[str, TaskIdentity] = {}
_IDENTITIES_KEPT = 4096
_IDENTITIES_LOCK = threading.Lock()  # threads-pool workers share a process


def task_identity(task_id: str) -> TaskIdentity:
    """One query per task and process at most, for every caller that labels or scopes by the task (metrics,
    redaction); none for a task its run has taken (`task_identity_known`)."""
    known = _IDENTITIES.get(task_id)
    if known is not None:
        return known
    row = Task.objects.filter(pk=task_id).values_list("agent", "agent_version_id", "owner_id", "session_id").first()
    if row is None:  # not kept: a task's id is known before its row commits
        return TaskIdentity(agent="", agent_version_id=None, owner_id=0, session_id="")
    return _identity_kept(task_id, TaskIdentity(*row))


def task_identity_known(task: Task) -> None:
    """Remember the identity of a task read whole, so its run never queries for it."""
    identity = TaskIdentity(task.agent, task.agent_version_id, task.owner_id, task.session_id)
    _identity_kept(str(task.pk), identity)


def _identity_kept(task_id: str, identity: TaskIdentity) -> TaskIdentity:
    with _IDENTITIES_LOCK:
        if len(_IDENTITIES) >= _IDENTITIES_KEPT:
            del _IDENTITIES[next(iter(_IDENTITIES))]  # the oldest
        _IDENTITIES[task_id] = identity
    return identity


def task_redaction_scope(task_id: str) -> str:
    """Where a task's redaction tokens live: its client's session, or the task."""
    identity = task_identity(str(task_id))
    return redaction_scope(owner_id=identity.owner_id, session_id=identity.session_id, task_id=str(task_id))

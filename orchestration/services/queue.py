"""The manual queue: operators claim the tasks that wait for a human and act on them.

Every action is checked in one place (`_acting_on`: the permission, the task still waiting for the handoff the
operator saw, nobody else holding it), carried out as a policy decision by `decision_apply`, and audited as an
OperatorAction (who, when, what, why) in the same transaction. A refusal changes nothing and says why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from memory.vault import protect, protect_text
from orchestration.models import (
    Approval,
    ApprovalDecision,
    OperatorAction,
    OperatorActionKind,
    Step,
    StepKind,
    StepState,
    Task,
    TaskState,
)
from orchestration.policy.decision import Decision
from orchestration.policy.operator_actions import (
    FailedStep,
    NotApplicable,
    QueuedTask,
    cancel_decide,
    operator_close_decide,
    operator_resolve_decide,
    operator_retry_decide,
    operator_send_back_decide,
)
from orchestration.selectors import next_model_turn, task_redaction_scope
from orchestration.services.actors import user_actor
from orchestration.services.decisions import decision_apply
from tools.selectors import active_contract
from tools.services.calls import result_problem

WORK_PERMISSION = "orchestration.work_queue"
ASSIGN_PERMISSION = "orchestration.assign_task"
OVERRIDE_PERMISSION = "orchestration.override_claim"


class QueueActionRefused(Exception):
    """The action cannot be taken (nothing was changed); `code` says which kind of refusal, the message why."""

    def __init__(self, message: str, *, code: str, field_errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.code = code
        """not_permitted, task_moved, held_elsewhere, not_applicable or invalid."""
        self.field_errors = field_errors or {}


# --- claims -----------------------------------------------------------------------------------------
def task_claim(*, task_id: object, user: AbstractBaseUser) -> Task:
    """Hold the task: exactly one operator at a time (settled by one conditional UPDATE), until the claim
    expires (OPERATOR_CLAIM_SECONDS) or is released. Claiming a task one already holds renews the claim."""
    require_permission(user, WORK_PERMISSION, "claiming tasks needs the 'Can claim and act on tasks' permission")
    now = timezone.now()
    with transaction.atomic():
        free = Q(claimed_by__isnull=True) | Q(claim_expires_at__lte=now) | Q(claimed_by=user)
        taken = Task.objects.filter(free, pk=task_id, state=TaskState.MANUAL_REVIEW).update(
            claimed_by=user, claim_expires_at=now + timedelta(seconds=settings.OPERATOR_CLAIM_SECONDS)
        )
        task = Task.objects.select_related("claimed_by").get(pk=task_id)
        if not taken:
            _refuse_if_not_queued(task)
            raise QueueActionRefused(_held_message(task), code="held_elsewhere")
        _audit(task, user, OperatorActionKind.CLAIM, "claimed")
    return task


def task_release(*, task_id: object, user: AbstractBaseUser) -> Task:
    """Let go of a task one holds (or, with the override permission, anyone's)."""
    with _acting_on(task_id, user, seen_handoff_at=None) as task:
        task.claimed_by, task.claim_expires_at = None, None
        task.save(update_fields=["claimed_by", "claim_expires_at", "updated_at"])
        _audit(task, user, OperatorActionKind.RELEASE, "released")
    return task


def task_assign(*, task_id: object, user: AbstractBaseUser, assignee: AbstractBaseUser, note: str) -> Task:
    """Hand the task to a colleague who works the queue: they hold it now, with a fresh claim."""
    require_permission(user, ASSIGN_PERMISSION, "assigning tasks needs the 'Can assign tasks' permission")
    if not assignee.is_active or not assignee.has_perm(WORK_PERMISSION):  # type: ignore[attr-defined]
        raise QueueActionRefused(
            f"{assignee.get_username()} does not work the queue", code="invalid", field_errors={"assignee": []}
        )
    with _acting_on(task_id, user, seen_handoff_at=None, note=note) as task:
        task.claimed_by = assignee  # type: ignore[assignment]
        task.claim_expires_at = timezone.now() + timedelta(seconds=settings.OPERATOR_CLAIM_SECONDS)
        task.save(update_fields=["claimed_by", "claim_expires_at", "updated_at"])
        _audit(task, user, OperatorActionKind.ASSIGN, note, {"assignee": assignee.get_username()})
    return task


def task_note_add(*, task_id: object, user: AbstractBaseUser, note: str) -> OperatorAction:
    """An operator's note on the task, for whoever works it next."""
    require_permission(user, WORK_PERMISSION, "notes need the 'Can claim and act on tasks' permission")
    require_note(note)
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=task_id)
        return _audit(task, user, OperatorActionKind.NOTE, note)


# --- decisions --------------------------------------------------------------------------------------
def task_retry_now(
    *,
    task_id: object,
    user: AbstractBaseUser,
    note: str,
    seen_handoff_at: datetime | None,
    respect_claims: bool = False,
) -> Task:
    """The failed step gets a fresh retry budget granted by the operator, and the task resumes at once.
    `respect_claims` leaves a task someone else holds to them even for an operator who may override claims."""
    with _acting_on(task_id, user, seen_handoff_at=seen_handoff_at, note=note, respect_claims=respect_claims) as task:
        step = _failed_step(task)
        decision = _decided(lambda facts: operator_retry_decide(facts, actor=user_actor(user), note=note), task, step)
        decision_apply(task=task, step=step, decision=decision, actor=user_actor(user))
        _audit(task, user, OperatorActionKind.RETRY, note)
    return task


def task_send_back(
    *, task_id: object, user: AbstractBaseUser, note: str, instruction: str, seen_handoff_at: datetime | None
) -> Task:
    """Back to the agent, with the operator's instruction as the model's next input (journalled)."""
    if not instruction.strip():
        raise QueueActionRefused(
            "write the instruction for the agent", code="invalid", field_errors={"instruction": ["required"]}
        )
    with _acting_on(task_id, user, seen_handoff_at=seen_handoff_at, note=note) as task:
        step, actor = _failed_step(task), user_actor(user)
        decision = _decided(
            lambda facts: operator_send_back_decide(facts, actor=actor, note=note, instruction=instruction), task, step
        )
        decision_apply(task=task, step=step, decision=decision, actor=actor)
        _audit(task, user, OperatorActionKind.SEND_BACK, note, {"instruction": instruction})
    return task


def task_resolve(
    *, task_id: object, user: AbstractBaseUser, note: str, data: Any, seen_handoff_at: datetime | None
) -> Task:
    """The failed tool call's result, entered by the operator and checked against the tool's result schema; the
    tool does not run again, and the agent resumes with it."""
    with _acting_on(task_id, user, seen_handoff_at=seen_handoff_at, note=note) as task:
        step = _failed_step(task)
        if step is not None and step.kind == StepKind.TOOL_CALL:
            _require_valid_result(step, data)
        actor = user_actor(user)
        decision = _decided(lambda facts: operator_resolve_decide(facts, actor=actor, note=note, data=data), task, step)
        decision_apply(task=task, step=step, decision=decision, actor=actor)
        _audit(task, user, OperatorActionKind.RESOLVE, note, {"step": step.seq if step else None, "data": data})
    return task


def task_close(
    *, task_id: object, user: AbstractBaseUser, note: str, output: str, seen_handoff_at: datetime | None
) -> Task:
    """End the task COMPLETED with a final result the operator wrote (marked as theirs)."""
    if not output.strip():
        raise QueueActionRefused("write the final result", code="invalid", field_errors={"output": ["required"]})
    with _acting_on(task_id, user, seen_handoff_at=seen_handoff_at, note=note) as task:
        actor = user_actor(user)
        decision_apply(task=task, decision=operator_close_decide(actor=actor, note=note, output=output), actor=actor)
        _audit(task, user, OperatorActionKind.CLOSE, note, {"output": output})
    return task


def task_queue_cancel(*, task_id: object, user: AbstractBaseUser, note: str, seen_handoff_at: datetime | None) -> Task:
    """Cancel a task from the queue: it ends CANCELLED and nothing more runs."""
    with _acting_on(task_id, user, seen_handoff_at=seen_handoff_at, note=note) as task:
        actor = user_actor(user)
        decision_apply(task=task, decision=cancel_decide(f"cancelled by {actor}: {note}"), actor=actor)
        _audit(task, user, OperatorActionKind.CANCEL, note)
    return task


# --- the checks every action shares -------------------------------------------------------------------
@contextmanager
def _acting_on(
    task_id: object,
    user: AbstractBaseUser,
    *,
    seen_handoff_at: datetime | None,
    note: str | None = None,
    respect_claims: bool = False,
) -> Iterator[Task]:
    """The task, locked in a transaction, if this operator may act on it now; otherwise a refusal."""
    require_permission(user, WORK_PERMISSION, "acting on tasks needs the 'Can claim and act on tasks' permission")
    if note is not None:
        require_note(note)
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=task_id)
        _refuse_if_not_queued(task)
        if seen_handoff_at is not None and task.handed_off_at != seen_handoff_at:
            raise QueueActionRefused(
                "the task was handed off again since you opened it: reload it and decide again", code="task_moved"
            )
        blocked = claim_blocks(task, user)
        if blocked is not None and (respect_claims or not user.has_perm(OVERRIDE_PERMISSION)):  # type: ignore[attr-defined]
            raise QueueActionRefused(blocked, code="held_elsewhere")
        yield task


def claim_blocks(task: Task, user: AbstractBaseUser) -> str | None:
    """Why `user` may not act on `task` because another operator holds it (their override aside), or None."""
    return _held_message(task) if _held_by_another(task, user) else None


def _refuse_if_not_queued(task: Task) -> None:
    if task.state != TaskState.MANUAL_REVIEW:
        raise QueueActionRefused(
            f"the task is no longer waiting for a human: it is {task.state} ({task.state_reason})", code="task_moved"
        )


def _held_by_another(task: Task, user: AbstractBaseUser) -> bool:
    live = task.claim_expires_at is not None and task.claim_expires_at > timezone.now()
    return task.claimed_by_id is not None and task.claimed_by_id != user.pk and live


def _held_message(task: Task) -> str:
    holder = task.claimed_by.get_username() if task.claimed_by else "another operator"
    until = task.claim_expires_at.isoformat(timespec="seconds") if task.claim_expires_at else "?"
    return f"{holder} holds this task (until {until})"


def require_permission(user: AbstractBaseUser, permission: str, message: str) -> None:
    if not user.is_active or not user.has_perm(permission):  # type: ignore[attr-defined]
        raise QueueActionRefused(message, code="not_permitted")


def require_note(note: str) -> None:
    if not note.strip():
        raise QueueActionRefused("say why, in a note", code="invalid", field_errors={"note": ["required"]})


def _failed_step(task: Task) -> Step | None:
    """The task's last step, locked, if it failed."""
    step = Step.objects.select_for_update().filter(task=task).order_by("-seq").first()
    return step if step is not None and step.state == StepState.FAILED else None


def _decided(decide: Callable[[QueuedTask], Decision], task: Task, step: Step | None) -> Decision:
    pending = Approval.objects.filter(task=task, decision=ApprovalDecision.PENDING).exists()
    failed = FailedStep(kind=StepKind(step.kind), name=step.name, attempt=step.attempt) if step else None
    facts = QueuedTask(
        handoff_reason=task.handoff_reason,
        failed_step=failed,
        pending_approval=pending,
        now=timezone.now(),
        next_turn=next_model_turn(task),
    )
    try:
        return decide(facts)
    except NotApplicable as exc:
        raise QueueActionRefused(str(exc), code="not_applicable") from None


def result_schema_of(step: Step) -> dict[str, Any] | None:
    """The result schema of the contract version the call ran under (its current one if none was recorded)."""
    if step.contract_version is not None:
        return dict(step.contract_version.result_schema)
    contract = active_contract(step.name)
    return contract.result_schema if contract else None


def _require_valid_result(step: Step, data: Any) -> None:
    schema = result_schema_of(step)
    if schema is None:
        raise QueueActionRefused(f"{step.name} has no contract any more", code="not_applicable")
    problem = result_problem(schema, data)
    if problem is not None:
        raise QueueActionRefused(
            f"the result does not match {step.name}'s result schema: {problem}",
            code="invalid",
            field_errors={"result": [problem]},
        )


def _audit(
    task: Task, user: AbstractBaseUser, kind: OperatorActionKind, note: str, detail: dict[str, Any] | None = None
) -> OperatorAction:
    scope = task_redaction_scope(str(task.pk))  # an operator's note may quote a card number too
    note, detail = protect_text(note, scope=scope), protect(detail, scope=scope)
    return OperatorAction.objects.create(task=task, kind=kind, actor_id=user.pk, note=note, detail=detail)

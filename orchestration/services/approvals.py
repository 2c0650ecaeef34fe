"""Tool calls held for a human: requested by the run, decided by an operator, consumed once by the resumed run.

A call is held by the tool-result policy (`orchestration.policy.tool_results`); the run's resumable state is the
task's journal on the server: nothing a client sends is trusted to resume it.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from memory.vault import protect_text
from orchestration.models import Approval, ApprovalDecision, OperatorAction, OperatorActionKind, Task, TaskState
from orchestration.policy.operator_actions import approval_decided_decide
from orchestration.selectors import task_redaction_scope
from orchestration.services.actors import user_actor
from orchestration.services.decisions import decision_apply
from orchestration.services.queue import OVERRIDE_PERMISSION, claim_blocks

DECIDE_PERMISSION = "orchestration.decide_approval"


class ApprovalNotPending(Exception):
    """The approval was already decided (or its task moved on): a decision is given once."""


def approval_decide(*, approval_id: int, user: AbstractBaseUser, approve: bool, message: str = "") -> Approval:
    """An operator's decision; the task resumes at once. Refused without the permission, or if decided."""
    if not user.has_perm(DECIDE_PERMISSION):  # type: ignore[attr-defined]
        raise PermissionDenied("deciding approvals needs the 'Can approve or reject tool calls' permission")
    with transaction.atomic():
        approval = Approval.objects.select_for_update().get(pk=approval_id)
        task = Task.objects.select_for_update().get(pk=approval.task_id)
        if approval.decision != ApprovalDecision.PENDING or task.state != TaskState.MANUAL_REVIEW:
            raise ApprovalNotPending(f"approval {approval_id} is {approval.decision.lower()}, not pending")
        blocked = claim_blocks(task, user)
        if blocked is not None and not user.has_perm(OVERRIDE_PERMISSION):  # type: ignore[attr-defined]
            raise PermissionDenied(blocked)
        now = timezone.now()
        approval.decision = ApprovalDecision.APPROVED if approve else ApprovalDecision.REJECTED
        approval.message = protect_text(message, scope=task_redaction_scope(str(task.pk)))
        approval.decided_by = user  # type: ignore[assignment]
        approval.decided_at = now
        approval.save()
        decision = approval_decided_decide(tool=approval.tool, approved=approve, message=message, now=now)
        decision_apply(task=task, decision=decision, actor=user_actor(user))
        OperatorAction.objects.create(
            task=task,
            kind=OperatorActionKind.APPROVE if approve else OperatorActionKind.REJECT,
            actor_id=user.pk,
            note=approval.message or ("approved" if approve else "rejected"),
            detail={"approval": approval.pk, "tool": approval.tool},
        )
    return approval


def approval_take(*, task: Task, ref: str) -> Approval | None:
    """The decided, unused approval of the step `ref`, marked used (caller's transaction); else None."""
    approval = (
        Approval.objects.select_for_update()
        .filter(task=task, step__ref=ref, used_at__isnull=True)
        .exclude(decision=ApprovalDecision.PENDING)
        .first()
    )
    if approval is not None:
        approval.used_at = timezone.now()
        approval.save(update_fields=["used_at"])
    return approval

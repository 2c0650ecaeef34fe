"""The one service that carries out a policy decision: record it, make its transitions, schedule the next run.

Deciding happens in `orchestration.policy` (pure functions of facts); doing happens here, inside the caller's
transaction on the task row the caller has locked. Messages go out only after that transaction commits.
"""

from __future__ import annotations

from dataclasses import replace

from django.conf import settings
from django.utils import timezone

from memory.vault import protect, protect_text
from orchestration import tracing
from orchestration.models import Approval, RecoveryDecision, Step, Task, Transition
from orchestration.policy.decision import Decision, Limits, StepChange
from orchestration.selectors import task_redaction_scope
from orchestration.services.leases import task_lease_release
from orchestration.services.scheduling import task_enqueue
from orchestration.services.steps import step_instruction_record
from orchestration.services.transitions import task_transition
from tools.policy import DEFAULT_RETRY, RetryPolicy


def policy_limits() -> Limits:
    """The policy's numbers as configured (settings are read per call, so tests may override them)."""
    return Limits(
        replan_cap=settings.AGENT_REPLAN_CAP,
        jitter=settings.RETRY_JITTER,
        default_tool_retry=DEFAULT_RETRY,
        model_retry=RetryPolicy(
            settings.MODEL_RETRY_MAX, settings.MODEL_RETRY_BASE_SECONDS, settings.MODEL_RETRY_CAP_SECONDS
        ),
        database_retry=RetryPolicy(
            settings.DATABASE_FAILURES_BEFORE_HANDOFF,
            settings.DATABASE_RETRY_BASE_SECONDS,
            settings.DATABASE_RETRY_CAP_SECONDS,
        ),
    )


def decision_apply(*, task: Task, decision: Decision, actor: str, step: Step | None = None) -> None:
    """Carry out `decision` on the locked `task` (about `step`, if it concerns one) in the caller's transaction."""
    decision = _protected(decision, scope=task_redaction_scope(str(task.pk)))
    hands_off = any(move.transition == Transition.HAND_OFF for move in decision.moves)
    if hands_off != (decision.handoff is not None):
        raise ValueError("a decision that hands a task off says why (and only such a decision)")
    if decision.handoff is not None:
        task.handoff_reason = decision.handoff.reason
        task.handoff_tool = decision.handoff.tool
        task.handoff_error_code = decision.handoff.error_code
        task.handed_off_at = timezone.now()
    if decision.replans is not None:
        task.replans = decision.replans
    if decision.result is not None:
        task.result = decision.result
    for ruling in decision.rulings:
        RecoveryDecision.objects.create(
            task=task,
            step=step,
            event=ruling.event,
            action=ruling.action,
            what=ruling.what,
            rule=ruling.rule,
            attempt=step.attempt if step else None,
            attempt_started_at=step.started_at if step else None,
            next_attempt_at=decision.due_at,
            envelope=ruling.envelope,
            actor=actor,
        )
    if decision.step_change is not None:
        _step_change(step, decision.step_change)
    if decision.instruction is not None:
        step_instruction_record(
            task=task, actor=actor, text=decision.instruction.text, before_turn=decision.instruction.before_turn
        )
    if decision.approval is not None:
        if step is None:
            raise ValueError("a call is held for approval with the step that made it")
        hold = decision.approval
        Approval.objects.create(step=step, task=task, tool=step.name, arguments=hold.arguments, reason=hold.reason)
    if decision.due_at is not None:
        task.next_run_at = decision.due_at
        task_lease_release(task)  # the next attempt is a new run, whichever worker takes it
    for move in decision.moves:
        task_transition(task=task, transition=move.transition, actor=actor, reason=move.reason)
    if not decision.moves:
        if decision.waiting_reason:
            task.state_reason = decision.waiting_reason
        task.save()
    if decision.due_at is not None:
        task_enqueue(task=task, due_at=decision.due_at)
    tracing.decision_record(decision=decision, step=step)  # the attempt, the rulings, a wait: on the trace


def _protected(decision: Decision, *, scope: str) -> Decision:
    """The decision with every text and value it records redacted (they quote tool results and model errors)."""

    def text(value: str) -> str:
        return protect_text(value, scope=scope)

    rulings = tuple(
        replace(r, what=text(r.what), rule=text(r.rule), envelope=protect(r.envelope, scope=scope))
        for r in decision.rulings
    )
    approval = decision.approval
    if approval is not None:
        approval = replace(approval, arguments=protect(approval.arguments, scope=scope), reason=text(approval.reason))
    instruction = decision.instruction
    if instruction is not None:
        instruction = replace(instruction, text=text(instruction.text))
    return replace(
        decision,
        rulings=rulings,
        waiting_reason=text(decision.waiting_reason),
        result=protect(decision.result, scope=scope),
        approval=approval,
        instruction=instruction,
    )


def _step_change(step: Step | None, change: StepChange) -> None:
    if step is None:
        raise ValueError("a decision that changes a step names the step")
    if change.retries_forgiven is not None:
        step.retries_forgiven = change.retries_forgiven
    if change.resolved_output is not None:
        step.resolve()
        step.output = change.resolved_output
    if change.decided_by:
        step.decided_by = change.decided_by
    step.save()

"""The recovery policy for failed steps, and the record of every decision it makes.

Each function runs inside the caller's transaction on a locked task: it applies what the rules say (the tool's
error dictionary and retry policy, the model retry policy, the re-plan cap, the step deadline), moves the task
through its transition, and records a RecoveryDecision: what happened, which rule decided, what follows, when.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from agent_runtime.failures import ModelFailure
from orchestration.models import (
    DecisionAction,
    RecoveryDecision,
    RecoveryEvent,
    Step,
    StepKind,
    StepState,
    Task,
    TaskState,
)
from orchestration.services.leases import task_lease_release
from orchestration.services.scheduling import backoff_delay, task_enqueue
from orchestration.services.steps import step_close
from orchestration.services.transitions import task_transition
from tools.contract import Contract, RetryPolicy
from tools.envelope import ToolResult
from tools.errors import SHARED_ERROR_CODES, ErrorCode, RecoveryAction
from tools.selectors import active_contract

DEFAULT_TOOL_RETRY = RetryPolicy(max_retries=3, base_seconds=1.0, cap_seconds=30.0)
DATABASE_FAILURES_BEFORE_HANDOFF = 5
# The dictionary actions that end the task's run: the decision recorded, and the transition taken.
_ENDING = {
    RecoveryAction.HANDOFF: (DecisionAction.HANDOFF, "hand_off"),
    RecoveryAction.FATAL: (DecisionAction.FATAL, "fail_tool_fatal"),
}
LOST_STEP_RESULT = ToolResult.failure(
    ErrorCode.STEP_LOST, "the worker running this step stopped before recording its result", retryable=True
)


def recovery_record(
    *,
    task: Task,
    step: Step | None,
    event: RecoveryEvent,
    action: DecisionAction,
    what: str,
    rule: str,
    actor: str,
    next_attempt_at: datetime | None = None,
    envelope: dict[str, Any] | None = None,
) -> RecoveryDecision:
    return RecoveryDecision.objects.create(
        task=task,
        step=step,
        event=event,
        action=action,
        what=what,
        rule=rule,
        attempt=step.attempt if step else None,
        attempt_started_at=step.started_at if step else None,
        next_attempt_at=next_attempt_at,
        envelope=envelope,
        actor=actor,
    )


def _hand_off(
    *,
    task: Task,
    step: Step | None,
    event: RecoveryEvent,
    what: str,
    rule: str,
    reason: str,
    actor: str,
    envelope: dict[str, Any] | None = None,
) -> None:
    """Record the decision to send the locked task to a human, and send it."""
    recovery_record(
        task=task,
        step=step,
        event=event,
        action=DecisionAction.HANDOFF,
        what=what,
        rule=rule,
        actor=actor,
        envelope=envelope,
    )
    task_transition(task=task, name="hand_off", actor=actor, reason=reason)


def _resume_at(task: Task, due: datetime, reason: str) -> None:
    """Let go of the locked task, due again at `due` (its state stays; the retry is a new run)."""
    task.next_run_at = due
    task.state_reason = reason
    task_lease_release(task)
    task.save()
    task_enqueue(task=task, due_at=due)


def describe_failure(step: Step, result: ToolResult) -> str:
    return f"{step.name} failed with {result.error_code}: {result.error_message}"


def _retry_policy_text(policy: RetryPolicy) -> str:
    return (
        f"at most {policy.max_retries} retries, backoff {policy.base_seconds:g} s doubling up to "
        f"{policy.cap_seconds:g} s, ±{settings.RETRY_JITTER:.0%} jitter"
    )


def _dictionary_rule(contract: Contract | None, result: ToolResult) -> tuple[RecoveryAction, str]:
    """The action the error dictionary names for this result, and the rule as operators read it."""
    code = result.error_code or ""
    if contract is not None:
        return contract.recovery_for(code)
    shared = SHARED_ERROR_CODES.get(code)  # no contract (an unknown tool): only the shared codes apply
    action = shared.action if shared else RecoveryAction.FATAL
    return action, f"shared error code {code}: {action}"


def task_tool_failure_settle(
    *,
    task: Task,
    step: Step,
    result: ToolResult,
    contract: Contract | None,
    actor: str,
    event: RecoveryEvent = RecoveryEvent.TOOL_ERROR,
    what: str | None = None,
) -> bool:
    """Apply the error dictionary's action to a locked TOOL_RUNNING task. True when the model should see it."""
    action, rule = _dictionary_rule(contract, result)
    what = what or describe_failure(step, result)
    envelope = result.to_dict()
    if action == RecoveryAction.RETRY:
        policy = contract.retry if contract else DEFAULT_TOOL_RETRY
        task_tool_retry_or_hand_off(
            task=task, step=step, result=result, policy=policy, rule=rule, what=what, event=event, actor=actor
        )
        return False
    if action == RecoveryAction.REPLAN:
        allowed = task_replan_allowed(
            task=task,
            what=what,
            rule=rule,
            actor=actor,
            event=event,
            step=step,
            envelope=envelope,
            transition="finish_tool",
        )
        if allowed:
            task_transition(task=task, name="finish_tool", actor=actor, reason=f"{what}; re-planning")
        return allowed
    decided, transition = _ENDING[action]
    recovery_record(
        task=task, step=step, event=event, action=decided, what=what, rule=rule, actor=actor, envelope=envelope
    )
    task_transition(task=task, name=transition, actor=actor, reason=what)
    return False


def task_replan_allowed(
    *,
    task: Task,
    what: str,
    rule: str,
    actor: str,
    event: RecoveryEvent,
    step: Step | None = None,
    envelope: dict[str, Any] | None = None,
    transition: str | None = None,
) -> bool:
    """Count one re-plan on the locked task; past the cap, hand it to a human instead (False)."""
    task.replans += 1
    cap = settings.AGENT_REPLAN_CAP
    if task.replans <= cap:
        recovery_record(
            task=task,
            step=step,
            event=event,
            action=DecisionAction.REPLAN,
            what=what,
            rule=f"{rule}; re-plan {task.replans} of {cap} (AGENT_REPLAN_CAP)",
            actor=actor,
            envelope=envelope,
        )
        return True
    if transition is not None:  # leave TOOL_RUNNING first, so the log shows the call ended
        task_transition(task=task, name=transition, actor=actor, reason=what)
    _hand_off(
        task=task,
        step=step,
        event=event,
        what=what,
        rule=f"{rule}; the re-plan cap is used up (AGENT_REPLAN_CAP={cap})",
        reason=f"the model re-planned {task.replans - 1} times (cap {cap}); last: {what}",
        actor=actor,
        envelope=envelope,
    )
    return False


def task_tool_retry_or_hand_off(
    *,
    task: Task,
    step: Step,
    result: ToolResult,
    policy: RetryPolicy,
    rule: str,
    what: str,
    event: RecoveryEvent,
    actor: str,
) -> None:
    """After a retryable failure of a locked TOOL_RUNNING task's call: schedule the retry, or hand off."""
    retries_used = step.attempt - 1
    rule = f"{rule}; retry policy: {_retry_policy_text(policy)}"
    if retries_used >= policy.max_retries:
        task_transition(task=task, name="fail_tool_retryable", actor=actor, reason=what)
        _hand_off(
            task=task,
            step=step,
            event=event,
            what=what,
            rule=f"{rule}; retries used up ({retries_used} of {policy.max_retries})",
            reason=f"{what}; {policy.max_retries} retries used up",
            actor=actor,
            envelope=result.to_dict(),
        )
        return
    due = timezone.now() + backoff_delay(
        attempt=step.attempt, base=policy.base_seconds, cap=policy.cap_seconds, jitter=settings.RETRY_JITTER
    )
    recovery_record(
        task=task,
        step=step,
        event=event,
        action=DecisionAction.RETRY,
        what=what,
        rule=f"{rule}; retry {retries_used + 1} of {policy.max_retries}",
        actor=actor,
        next_attempt_at=due,
        envelope=result.to_dict(),
    )
    task.next_run_at = due
    task_lease_release(task)
    reason = f"{what}; retry {retries_used + 1} of {policy.max_retries} due at {due.isoformat()}"
    task_transition(task=task, name="fail_tool_retryable", actor=actor, reason=reason)
    task_enqueue(task=task, due_at=due)


def _model_retry_policy_text() -> str:
    return (
        f"model retry policy: at most {settings.MODEL_RETRY_MAX} retries, backoff "
        f"{settings.MODEL_RETRY_BASE_SECONDS:g} s doubling up to {settings.MODEL_RETRY_CAP_SECONDS:g} s, "
        f"±{settings.RETRY_JITTER:.0%} jitter, never sooner than the endpoint's Retry-After"
    )


def task_model_retry_or_hand_off(
    *,
    task: Task,
    step: Step | None,
    failure: ModelFailure,
    actor: str,
    event: RecoveryEvent = RecoveryEvent.MODEL_ERROR,
) -> None:
    """After a failed model turn of a locked task: retry the turn after a backoff, or hand off."""
    attempts = step.attempt if step else 1
    what = f"model turn failed (attempt {attempts}): {failure.reason}"
    envelope = {"retryable": failure.retryable, "reason": failure.reason}
    if not failure.retryable:
        _hand_off(
            task=task,
            step=step,
            event=event,
            what=what,
            rule="a model error no retry can mend (credentials, a refused request, an unusable answer): a human",
            reason=f"fatal model error: {failure.reason}",
            actor=actor,
            envelope=envelope,
        )
        return
    if attempts > settings.MODEL_RETRY_MAX or task.state not in (TaskState.RECEIVED, TaskState.PLANNED):
        _hand_off(
            task=task,
            step=step,
            event=event,
            what=what,
            rule=f"{_model_retry_policy_text()}; retries used up",
            reason=f"model request failed {attempts} times; last: {failure.reason}",
            actor=actor,
            envelope=envelope,
        )
        return
    delay = backoff_delay(
        attempt=attempts,
        base=settings.MODEL_RETRY_BASE_SECONDS,
        cap=settings.MODEL_RETRY_CAP_SECONDS,
        jitter=settings.RETRY_JITTER,
    )
    if failure.retry_after_seconds is not None:  # the endpoint said when; never sooner
        delay = max(delay, timedelta(seconds=failure.retry_after_seconds))
    due = timezone.now() + delay
    rule = f"{_model_retry_policy_text()}; retry {attempts} of {settings.MODEL_RETRY_MAX}"
    recovery_record(
        task=task,
        step=step,
        event=event,
        action=DecisionAction.RETRY,
        what=what,
        rule=rule,
        actor=actor,
        next_attempt_at=due,
        envelope=envelope,
    )
    _resume_at(task, due, f"model request failed: {failure.reason}; attempt {attempts + 1} due at {due.isoformat()}")


def last_completed_step(task_id: object, *, before: Step | None = None) -> Step | None:
    """The replayable checkpoint: the last step of the task (before `before`, if given) that completed."""
    completed = Step.objects.filter(task_id=task_id, state=StepState.SUCCEEDED)
    if before is not None:
        completed = completed.filter(seq__lt=before.seq)
    return completed.order_by("-seq").first()


def lost_step_description(step: Step) -> str:
    """What an operator needs to know about a step whose worker vanished."""
    deadline = step.deadline_at.isoformat() if step.deadline_at else "none set"
    return (
        f"{ErrorCode.STEP_LOST}: step #{step.seq} {step.name} (attempt {step.attempt}) started at "
        f"{step.started_at.isoformat()}, deadline {deadline}, and its worker stopped or hung before recording a result"
    )


def _rollback_description(step: Step) -> str:
    checkpoint = last_completed_step(step.task_id, before=step)
    rolled_back = f"step #{checkpoint.seq} ({checkpoint.ref})" if checkpoint else "the start (no step had completed)"
    return f"rolled back to {rolled_back}; the step runs again under the same idempotency key"


def step_lost_settle(*, task: Task, step: Step, actor: str) -> None:
    """A locked task's step outlived its deadline without a word from its worker: a retryable failure."""
    what = f"{lost_step_description(step)}; {_rollback_description(step)}"
    if step.kind == StepKind.TOOL_CALL:
        step_close(step=step, succeeded=False, output=LOST_STEP_RESULT.to_dict())
        task_tool_failure_settle(
            task=task,
            step=step,
            result=LOST_STEP_RESULT,
            contract=active_contract(step.name),
            actor=actor,
            event=RecoveryEvent.STEP_LOST,
            what=what,
        )
        return
    step_close(step=step, succeeded=False, output={"error": {"type": ErrorCode.STEP_LOST, "message": what}})
    failure = ModelFailure(retryable=True, reason=what)
    task_model_retry_or_hand_off(task=task, step=step, failure=failure, actor=actor, event=RecoveryEvent.STEP_LOST)


def task_database_failure_settle(*, task: Task, error: str, actor: str) -> None:
    """The run's database connection or transaction failed: hand the locked task back, to resume from its journal.

    Not the task's fault, so it resumes soon; but failures in a row back off, and past
    DATABASE_FAILURES_BEFORE_HANDOFF (an error that repeats on every run) a human takes over.
    """
    checkpoint = last_completed_step(task.pk)
    since = checkpoint.finished_at if checkpoint and checkpoint.finished_at else task.created_at
    in_a_row = (
        1 + RecoveryDecision.objects.filter(task=task, event=RecoveryEvent.DATABASE_ERROR, created_at__gt=since).count()
    )
    what = f"the run's database connection or transaction failed: {error[:500]}"
    rule = f"database failures in a row: {in_a_row} of {DATABASE_FAILURES_BEFORE_HANDOFF} before a human takes over"
    if in_a_row >= DATABASE_FAILURES_BEFORE_HANDOFF:
        _hand_off(
            task=task,
            step=None,
            event=RecoveryEvent.DATABASE_ERROR,
            what=what,
            rule=rule,
            reason=f"{what} ({in_a_row} times in a row)",
            actor=actor,
        )
        return
    due = timezone.now() + backoff_delay(attempt=in_a_row, base=1.0, cap=30.0, jitter=settings.RETRY_JITTER)
    recovery_record(
        task=task,
        step=None,
        event=RecoveryEvent.DATABASE_ERROR,
        action=DecisionAction.RESUME,
        what=what,
        rule=f"{rule}; resumes from its journal after a short backoff",
        actor=actor,
        next_attempt_at=due,
    )
    _resume_at(task, due, f"{what}; resumes at {due.isoformat()}")


def task_turn_limit_settle(*, task: Task, why: str, agent: str, max_turns: int, actor: str) -> None:
    rule = f"agent {agent}: at most {max_turns} model turns per task"
    _hand_off(task=task, step=None, event=RecoveryEvent.TURN_LIMIT, what=why, rule=rule, reason=why, actor=actor)


def step_abandoned_close(*, task: Task, step: Step, actor: str) -> None:
    """A step still RUNNING on a task that has ended: its worker died after the task stopped. Close it as lost."""
    step_close(step=step, succeeded=False, output=LOST_STEP_RESULT.to_dict())
    recovery_record(
        task=task,
        step=step,
        event=RecoveryEvent.STEP_LOST,
        action=DecisionAction.STOP,
        what=f"{lost_step_description(step)}; but the task had already ended ({task.state})",
        rule="an ended task plans nothing more: its abandoned step is closed as lost and not run again",
        actor=actor,
        envelope=LOST_STEP_RESULT.to_dict(),
    )


def step_cancelled_record(*, task: Task, step: Step, recorded: str, actor: str) -> None:
    """The task was cancelled while `step` ran: its outcome is kept (`recorded` says what), nothing is planned."""
    recovery_record(
        task=task,
        step=step,
        event=RecoveryEvent.CANCELLED,
        action=DecisionAction.STOP,
        what=f"the task was cancelled while step #{step.seq} {step.name} ran; {recorded}",
        rule="a cancelled task keeps what its running step did and plans nothing more",
        actor=actor,
    )

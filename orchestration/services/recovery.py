"""The recovery policy for failed steps: what the error dictionary says, backoff and retry, or a human."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from agent_runtime.failures import ModelFailure
from orchestration.models import Step, Task, TaskState
from orchestration.services.leases import task_lease_release
from orchestration.services.scheduling import backoff_delay, task_enqueue
from orchestration.services.transitions import task_transition
from tools.contract import RetryPolicy
from tools.envelope import ToolResult
from tools.errors import RecoveryAction

DEFAULT_TOOL_RETRY = RetryPolicy(max_retries=3, base_seconds=1.0, cap_seconds=30.0)


def _describe(step: Step, result: ToolResult) -> str:
    return f"{step.name} failed with {result.error_code}: {result.error_message}"


def task_tool_failure_settle(
    *, task: Task, step: Step, result: ToolResult, action: RecoveryAction, policy: RetryPolicy, actor: str
) -> bool:
    """Apply the recovery action to a locked TOOL_RUNNING task. True when the model should see the result."""
    if action == RecoveryAction.RETRY:
        task_tool_retry_or_hand_off(task=task, step=step, result=result, policy=policy, actor=actor)
        return False
    if action == RecoveryAction.REPLAN:
        if not task_replan_allowed(task=task, why=_describe(step, result), actor=actor, transition="finish_tool"):
            return False
        task_transition(task=task, name="finish_tool", actor=actor, reason=f"{_describe(step, result)}; re-planning")
        return True
    if action == RecoveryAction.HANDOFF:
        task_transition(task=task, name="hand_off", actor=actor, reason=_describe(step, result))
        return False
    task_transition(task=task, name="fail_tool_fatal", actor=actor, reason=_describe(step, result))
    return False


def task_replan_allowed(*, task: Task, why: str, actor: str, transition: str | None = None) -> bool:
    """Count one re-plan on the locked task; past the cap, hand it to a human instead (False)."""
    task.replans += 1
    if task.replans <= settings.AGENT_REPLAN_CAP:
        return True
    if transition is not None:  # leave TOOL_RUNNING first, so the log shows the call ended
        task_transition(task=task, name=transition, actor=actor, reason=why)
    reason = f"the model re-planned {task.replans - 1} times (cap {settings.AGENT_REPLAN_CAP}); last: {why}"
    task_transition(task=task, name="hand_off", actor=actor, reason=reason)
    return False


def task_tool_retry_or_hand_off(*, task: Task, step: Step, result: ToolResult, policy: RetryPolicy, actor: str) -> None:
    """After a retryable tool failure on a locked TOOL_RUNNING task: schedule the retry, or hand off."""
    failure = _describe(step, result)
    retries_used = step.attempt - 1
    if retries_used >= policy.max_retries:
        task_transition(task=task, name="fail_tool_retryable", actor=actor, reason=failure)
        task_transition(
            task=task, name="hand_off", actor=actor, reason=f"{failure}; {policy.max_retries} retries used up"
        )
        return
    due = timezone.now() + backoff_delay(
        attempt=step.attempt, base=policy.base_seconds, cap=policy.cap_seconds, jitter=settings.RETRY_JITTER
    )
    task.next_run_at = due
    task_lease_release(task)
    reason = f"{failure}; retry {retries_used + 1} of {policy.max_retries} due at {due.isoformat()}"
    task_transition(task=task, name="fail_tool_retryable", actor=actor, reason=reason)
    task_enqueue(task=task, due_at=due)


def task_model_retry_or_hand_off(*, task: Task, attempts: int, failure: ModelFailure, actor: str) -> None:
    """After a failed model request on a locked task: retry the turn after a backoff, or hand off."""
    if not failure.retryable:
        task_transition(task=task, name="hand_off", actor=actor, reason=f"fatal model error: {failure.reason}")
        return
    if attempts > settings.MODEL_RETRY_MAX or task.state not in (TaskState.RECEIVED, TaskState.PLANNED):
        reason = f"model request failed {attempts} times; last: {failure.reason}"
        task_transition(task=task, name="hand_off", actor=actor, reason=reason)
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
    task.next_run_at = due
    task.state_reason = f"model request failed: {failure.reason}; attempt {attempts + 1} due at {due.isoformat()}"
    task_lease_release(task)
    task.save()
    task_enqueue(task=task, due_at=due)

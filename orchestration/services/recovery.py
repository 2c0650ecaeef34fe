"""The recovery policy for failed steps: back off and retry under the same key, or hand off to a human."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from orchestration.models import Step, Task, TaskState
from orchestration.services.leases import task_lease_release
from orchestration.services.scheduling import backoff_delay, task_enqueue
from orchestration.services.transitions import task_transition
from tools.envelope import ToolResult


def task_tool_retry_or_hand_off(*, task: Task, step: Step, result: ToolResult, actor: str) -> None:
    """After a retryable tool failure on a locked TOOL_RUNNING task: schedule the retry, or hand off."""
    failure = f"{step.name} failed with {result.error_code}: {result.error_message}"
    retries_used = step.attempt - 1
    if retries_used >= settings.TOOL_RETRY_MAX:
        task_transition(task=task, name="fail_tool_retryable", actor=actor, reason=failure)
        task_transition(
            task=task,
            name="hand_off",
            actor=actor,
            reason=f"{failure}; {settings.TOOL_RETRY_MAX} retries used up",
        )
        return
    due = timezone.now() + backoff_delay(
        attempt=step.attempt,
        base=settings.TOOL_RETRY_BASE_SECONDS,
        cap=settings.TOOL_RETRY_CAP_SECONDS,
        jitter=settings.RETRY_JITTER,
    )
    task.next_run_at = due
    task_lease_release(task)
    reason = f"{failure}; retry {retries_used + 1} of {settings.TOOL_RETRY_MAX} due at {due.isoformat()}"
    task_transition(task=task, name="fail_tool_retryable", actor=actor, reason=reason)
    task_enqueue(task=task, due_at=due)


def task_model_retry_or_hand_off(*, task: Task, attempts: int, error: str, actor: str) -> None:
    """After a failed model request on a locked task: retry the turn after a backoff, or hand off."""
    if attempts > settings.MODEL_RETRY_MAX or task.state not in (TaskState.RECEIVED, TaskState.PLANNED):
        task_transition(
            task=task, name="hand_off", actor=actor, reason=f"model request failed {attempts} times: {error}"
        )
        return
    due = timezone.now() + backoff_delay(
        attempt=attempts,
        base=settings.TOOL_RETRY_BASE_SECONDS,
        cap=settings.TOOL_RETRY_CAP_SECONDS,
        jitter=settings.RETRY_JITTER,
    )
    task.next_run_at = due
    task.state_reason = f"model request failed ({error}); attempt {attempts + 1} due at {due.isoformat()}"
    task_lease_release(task)
    task.save()
    task_enqueue(task=task, due_at=due)

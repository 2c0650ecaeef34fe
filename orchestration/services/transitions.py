"""The one way a task changes state: a django-fsm transition on a locked row, saved, and logged."""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from memory.vault import protect_text
from orchestration import metrics
from orchestration.models import TERMINAL_STATES, Task, TaskState, TaskTransition, Transition
from orchestration.selectors import task_redaction_scope
from orchestration.services.leases import task_lease_release
from orchestration.services.memory import task_memory_settle
from orchestration.services.webhooks import webhook_outbox_write

# The graph lives on Task; this is its index by name, so a transition is named by a value mypy checks.
_MOVES: dict[Transition, Callable[[Task], None]] = {
    Transition.PLAN: Task.plan,
    Transition.START_TOOL: Task.start_tool,
    Transition.FINISH_TOOL: Task.finish_tool,
    Transition.FAIL_TOOL_RETRYABLE: Task.fail_tool_retryable,
    Transition.FAIL_TOOL_FATAL: Task.fail_tool_fatal,
    Transition.COMPLETE: Task.complete,
    Transition.HAND_OFF: Task.hand_off,
    Transition.RESUME: Task.resume,
    Transition.CLOSE: Task.close,
    Transition.CANCEL: Task.cancel,
}


def task_transition(*, task: Task, transition: Transition, actor: str, reason: str = "") -> TaskTransition:
    """Apply `transition` to `task`, which the caller has locked inside its transaction.

    An illegal move raises `TransitionNotAllowed` before anything is written; a concurrent change of the
    state since the row was read raises `ConcurrentTransition` at save (compare-and-swap on the state).
    """
    _require_transaction()
    from_state = task.state
    _MOVES[transition](task)
    reason = protect_text(reason, scope=task_redaction_scope(str(task.pk)))
    task.state_reason = reason
    if task.state in TERMINAL_STATES or task.state == TaskState.MANUAL_REVIEW:
        task.next_run_at = None
        task_lease_release(task)
        task_memory_settle(task)  # settled for now: what it learnt joins its session, in this transaction
    if from_state == TaskState.MANUAL_REVIEW and task.state != TaskState.MANUAL_REVIEW:
        task.claimed_by, task.claim_expires_at = None, None  # out of the queue: nobody holds it any more
    if task.state in TERMINAL_STATES:
        task.finished_at = timezone.now()
    task.save()
    webhook_outbox_write(task=task)  # an outcome's deliveries commit with it, or not at all
    metrics.transition_count(task, from_state=from_state)
    return _logged(task=task, transition=transition, from_state=from_state, actor=actor, reason=reason)


def task_submitted_record(*, task: Task, actor: str) -> TaskTransition:
    """The first entry of a new task's log: created in RECEIVED (no state machine move precedes it)."""
    _require_transaction()
    metrics.task_submitted_count(task)
    return _logged(task=task, transition=Transition.SUBMIT, from_state="", actor=actor, reason="")


def _logged(*, task: Task, transition: Transition, from_state: str, actor: str, reason: str) -> TaskTransition:
    return TaskTransition.objects.create(
        task=task, name=transition, from_state=from_state, to_state=task.state, actor=actor, reason=reason
    )


def _require_transaction() -> None:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("a task's state changes only inside the caller's transaction")

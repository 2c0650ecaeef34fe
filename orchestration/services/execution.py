"""Running a task: take its lease, replay what is recorded, run the next steps, settle the outcome."""

from __future__ import annotations

import logging
from datetime import timedelta

from asgiref.sync import async_to_sync
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from agent_runtime.catalog import AgentProfile, agent_version, current_agent_version_id, price_for
from agent_runtime.failures import ModelFailure, classify_model_failure
from agent_runtime.runner import run_agent
from agent_runtime.snapshots import without_nul
from agent_runtime.specs import AgentSpec, RunOutcome
from orchestration import tracing
from orchestration.models import Step, StepKind, StepState, Task, TaskState
from orchestration.services.journal import DatabaseJournal
from orchestration.services.leases import (
    Lease,
    LeaseLost,
    task_lease_acquire,
    task_lease_release,
    task_locked_for,
)
from orchestration.services.recovery import (
    DEFAULT_TOOL_RETRY,
    task_model_retry_or_hand_off,
    task_tool_retry_or_hand_off,
)
from orchestration.services.scheduling import task_enqueue
from orchestration.services.spans import task_spans_store
from orchestration.services.steps import step_close
from orchestration.services.transitions import task_transition
from tools.adapters.handoff import HANDOFF_TOOL
from tools.envelope import ToolResult
from tools.errors import ErrorCode
from tools.selectors import active_contract, tool_specs

logger = logging.getLogger(__name__)


def task_run(*, task_id: str, worker: str) -> None:
    """Advance one task as far as it goes. A message for a task that is not due, or owned, does nothing."""
    lease = task_lease_acquire(task_id=task_id, owner=worker)
    if lease is None:
        logger.info("task not due or leased elsewhere; nothing to do", extra={"task_id": task_id})
        return
    task = Task.objects.get(pk=task_id)
    with tracing.bound(trace_id=task.trace_id, task_id=str(task.pk)):
        logger.info("task run started", extra={"state": task.state, "worker": worker})
        try:
            if task.state == TaskState.TOOL_RUNNING:
                _recover_lost_call(lease)
            else:
                _run(task, lease)
        except (OperationalError, InterfaceError):
            logger.exception("database connection lost during the run")
            _release_after_connection_loss(lease)


def _release_after_connection_loss(lease: Lease) -> None:
    """Hand the task back at once over a fresh connection, instead of waiting for the lease to run out.

    What the lost transaction held was rolled back by PostgreSQL; the next run replays from the journal. If
    the database is still unreachable, the lease simply expires and the sweeper takes over.
    """
    connection.close()
    try:
        due = timezone.now() + timedelta(seconds=1)
        released = Task.objects.filter(pk=lease.task_id, lease_token=lease.token).update(
            lease_token=None, lease_owner="", lease_expires_at=None, next_run_at=due
        )
        if released:
            with transaction.atomic():
                task_enqueue(task=Task.objects.get(pk=lease.task_id), due_at=due)
    except (OperationalError, InterfaceError):
        logger.warning("database still unreachable; the lease will expire and the sweeper will resend")


def _run(task: Task, lease: Lease) -> None:
    version_id = task.agent_version_id or current_agent_version_id(task.agent)
    profile = agent_version(version_id) if version_id else None
    if profile is None:
        _settle(lease, "hand_off", f"unknown agent {task.agent!r}")
        return
    spec = _agent_spec(profile)
    journal = DatabaseJournal(lease=lease, actor=lease.owner, tool_names=frozenset(t.name for t in spec.tools))
    try:
        outcome: RunOutcome = async_to_sync(run_agent)(
            spec, goal=task.goal, task_input=task.input, trace_id=task.trace_id, group_id=str(task.pk), journal=journal
        )
    except Exception as exc:
        failure = classify_model_failure(exc)
        logger.warning(
            "agent run failed", exc_info=exc, extra={"retryable": failure.retryable, "reason": failure.reason}
        )
        _model_failed(lease, failure)
        return
    finally:
        task_spans_store(task=task)
    if outcome.suspended:
        logger.info("task run suspended")
    elif outcome.max_turns_exceeded:
        _settle(lease, "hand_off", f"the agent reached its turn limit ({spec.max_turns}) without finishing")
    else:
        _settle(lease, "complete", "the agent answered", result=without_nul({"output": outcome.final_output}))


def _agent_spec(profile: AgentProfile) -> AgentSpec:
    price = price_for(profile.model)
    if price is None:
        logger.warning("no price for this model: its cost is recorded as 0", extra={"model": profile.model})
    available = tool_specs()
    allowed = set(profile.tools) | {HANDOFF_TOOL}  # every agent can always reach a human
    return AgentSpec(
        name=profile.name,
        instructions=profile.instructions,
        model=profile.model,
        tools=tuple(t for t in available if not profile.tools or t.name in allowed),
        max_turns=profile.max_turns,
        model_settings=profile.model_settings,
        price=price,
    )


def _settle(lease: Lease, transition: str, reason: str, result: dict[str, object] | None = None) -> None:
    try:
        with transaction.atomic():
            task = task_locked_for(lease)
            if result is not None:
                task.result = result
            task_transition(task=task, name=transition, actor=lease.owner, reason=reason)
    except LeaseLost:
        logger.warning("lease lost before the outcome was recorded; the next run settles it")
    else:
        logger.info("task settled", extra={"transition": transition, "reason": reason})


def _model_failed(lease: Lease, failure: ModelFailure) -> None:
    try:
        with transaction.atomic():
            task = task_locked_for(lease)
            failed_turn = (
                Step.objects.filter(task=task, kind=StepKind.MODEL_TURN, state=StepState.FAILED)
                .order_by("-seq")
                .first()
            )
            attempts = failed_turn.attempt if failed_turn else 1
            task_model_retry_or_hand_off(task=task, attempts=attempts, failure=failure, actor=lease.owner)
    except LeaseLost:
        logger.warning("lease lost while recording a failed run")


def _recover_lost_call(lease: Lease) -> None:
    """The task was left TOOL_RUNNING by a worker that died or hung past its lease: the call counts as a
    retryable failure and runs again, under the same key, after the backoff."""
    lost = ToolResult.failure(
        ErrorCode.STEP_LOST, "the worker running this call stopped before recording its result", retryable=True
    )
    with transaction.atomic():
        task = task_locked_for(lease)
        step = (
            Step.objects.select_for_update()
            .filter(task=task, kind=StepKind.TOOL_CALL, state=StepState.RUNNING)
            .order_by("-seq")
            .first()
        )
        if step is None:  # the call was recorded but the move to PLANNED was not: finish that move
            task_lease_release(task)
            task_transition(task=task, name="finish_tool", actor=lease.owner, reason="recovered after a lost worker")
            task_enqueue(task=task)
            return
        step_close(step=step, succeeded=False, output=lost.to_dict())
        contract = active_contract(step.name)
        policy = contract.retry if contract else DEFAULT_TOOL_RETRY
        task_tool_retry_or_hand_off(task=task, step=step, result=lost, policy=policy, actor=lease.owner)

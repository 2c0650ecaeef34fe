"""Running a task: take its lease, replay what is recorded, run the next steps, settle the outcome."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from django.db import DatabaseError, connection, transaction

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
    step_lost_settle,
    task_database_failure_settle,
    task_model_retry_or_hand_off,
    task_turn_limit_settle,
)
from orchestration.services.scheduling import task_enqueue
from orchestration.services.spans import task_spans_store
from orchestration.services.transitions import task_transition
from tools.adapters.handoff import HANDOFF_TOOL
from tools.selectors import tool_specs

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
            if not _recovered_lost_step(lease):
                _run(task, lease)
        except DatabaseError as exc:
            logger.exception("database failure during the run")
            _release_after_database_failure(lease, exc)


def _release_after_database_failure(lease: Lease, error: DatabaseError) -> None:
    """Hand the task back over a fresh connection, instead of waiting for the lease to run out.

    What the failed transaction held was rolled back by PostgreSQL; the next run replays from the journal, and
    a step left running counts as lost (a retryable failure). Failures in a row back off, and past
    DATABASE_FAILURES_BEFORE_HANDOFF a human takes over, so an error that repeats on every run cannot loop. If the
    database is still unreachable, the lease simply expires and the sweeper takes over.
    """
    connection.close()
    try:
        with transaction.atomic():
            task = task_locked_for(lease)
            task_database_failure_settle(task=task, error=f"{type(error).__name__}: {error}", actor=lease.owner)
    except LeaseLost:
        logger.warning("lease lost before the database failure was recorded")
    except DatabaseError:
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
        database_failure = _database_failure(exc)
        if database_failure is not None:
            raise database_failure from None  # not the model's fault: task_run hands the task back
        failure = classify_model_failure(exc)
        logger.warning(
            "agent run failed", exc_info=exc, extra={"retryable": failure.retryable, "reason": failure.reason}
        )
        _model_failed(lease, failure)
        return
    finally:
        _store_spans(task)
    if outcome.suspended:
        logger.info("task run suspended")
    elif outcome.max_turns_exceeded:
        _turn_limit_reached(lease, spec)
    else:
        _settle(lease, "complete", "the agent answered", result=without_nul({"output": outcome.final_output}))


def _database_failure(exc: BaseException) -> DatabaseError | None:
    """The database error behind `exc` (the SDK wraps what a tool call raises), if there is one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, DatabaseError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _store_spans(task: Task) -> None:
    """Keep the run's spans with the task; never let this mask the run's own outcome."""
    try:
        task_spans_store(task=task)
    except DatabaseError:
        logger.warning("spans of this run could not be stored")


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


def _turn_limit_reached(lease: Lease, spec: AgentSpec) -> None:
    why = f"the agent reached its turn limit ({spec.max_turns}) without finishing"
    try:
        with transaction.atomic():
            task = task_locked_for(lease)
            task_turn_limit_settle(task=task, why=why, agent=spec.name, max_turns=spec.max_turns, actor=lease.owner)
    except LeaseLost:
        logger.warning("lease lost before the turn limit was recorded; the next run settles it")


def _model_failed(lease: Lease, failure: ModelFailure) -> None:
    try:
        with transaction.atomic():
            task = task_locked_for(lease)
            failed_turn = (
                Step.objects.filter(task=task, kind=StepKind.MODEL_TURN, state=StepState.FAILED)
                .order_by("-seq")
                .first()
            )
            task_model_retry_or_hand_off(task=task, step=failed_turn, failure=failure, actor=lease.owner)
    except LeaseLost:
        logger.warning("lease lost while recording a failed run")


def _recovered_lost_step(lease: Lease) -> bool:
    """Settle what a vanished worker left behind; True when that is all this run may do.

    A step still RUNNING when its task is taken over outlived its deadline: its worker died, hung, or lost its
    database connection. It counts as a retryable failure of that step: the task is rolled back to its last
    completed step and the step runs again, after the backoff, under the same idempotency key.
    """
    with transaction.atomic():
        task = task_locked_for(lease)
        step = Step.objects.select_for_update().filter(task=task, state=StepState.RUNNING).order_by("-seq").first()
        if step is not None:
            step_lost_settle(task=task, step=step, actor=lease.owner)
            return True
        if task.state == TaskState.TOOL_RUNNING:
            # The call's result was recorded but the move back to PLANNED was not: finish that move.
            task_lease_release(task)
            task_transition(task=task, name="finish_tool", actor=lease.owner, reason="recovered after a lost worker")
            task_enqueue(task=task)
            return True
    return False

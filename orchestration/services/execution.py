"""Running a task: take its lease, replay what is recorded, run the next steps, settle the outcome.

What follows each outcome is the policy's to say (`orchestration.policy`); this module gathers the facts and
has `decision_apply` carry the decision out, each under the run's lease.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from asgiref.sync import async_to_sync
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from agent_runtime.catalog import AgentProfile, agent_version, current_agent_version_id, price_for
from agent_runtime.failures import ModelFailure, classify_model_failure
from agent_runtime.runner import run_agent
from agent_runtime.specs import AgentSpec, RunOutcome
from agent_runtime.tracing import traced_journal
from lib.db import connection_release
from lib.exceptions import cause_of
from lib.strict_json import without_nul
from memory.composer import Recalled
from memory.vault import redaction_scope
from orchestration import tracing
from orchestration.models import Step, StepState, Task, TaskState
from orchestration.policy.database_failures import DatabaseFailure, database_failure_decide
from orchestration.policy.decision import Decision
from orchestration.policy.model_failures import TurnFailure, model_failure_decide
from orchestration.policy.model_turns import answer_decide, turn_limit_decide, unknown_agent_decide
from orchestration.selectors import database_failures_in_a_row, task_identity_known
from orchestration.services.decisions import decision_apply, policy_limits
from orchestration.services.journal import DatabaseJournal
from orchestration.services.leases import Lease, task_lease_acquire, task_locked_for, task_under_lease
from orchestration.services.lost_steps import step_lost_settle, tool_unfinished_settle
from orchestration.services.memory import task_memory_recall
from orchestration.services.spans import task_spans_store
from orchestration.services.steps import MODEL_STEP_KINDS, TaskSteps
from tools.adapters.handoff import HANDOFF_TOOL
from tools.selectors import tool_specs

logger = logging.getLogger(__name__)


def task_run(*, task_id: str, worker: str) -> None:
    """Advance one task as far as it goes. A message for a task that is not due, or owned, does nothing."""
    lease = task_lease_acquire(task_id=task_id, owner=worker)
    if lease is None:
        logger.info("task not due or leased elsewhere; nothing to do", extra={"task_id": task_id})
        return
    try:
        task, steps = _taken(lease)
    except DatabaseError:
        logger.exception("database failure as the run started; the lease will expire and the sweeper will resend")
        return
    with tracing.bound(trace_id=task.trace_id, task_id=str(task.pk)), tracing.task_run_span(task=task, worker=worker):
        logger.info("task run started", extra={"state": task.state, "worker": worker})
        try:
            if not _recovered_lost_step(lease, task, steps):
                _run(task, lease, steps)
        except DatabaseError as exc:
            logger.exception("database failure during the run")
            _release_after_database_failure(lease, exc)


def _release_after_database_failure(lease: Lease, error: DatabaseError) -> None:
    """Hand the task back over a fresh connection, instead of waiting for the lease to run out.

    What the failed transaction held was rolled back by PostgreSQL; the next run replays from the journal, and
    a step left running counts as lost (a retryable failure). If the database is still unreachable, the lease
    simply expires and the sweeper takes over.
    """
    connection.close()
    try:
        task_under_lease(
            lease,
            lambda task: task_database_failure_settle(
                task=task, error=f"{type(error).__name__}: {error}", actor=lease.owner
            ),
            if_lost="lease lost before the database failure was recorded",
        )
    except DatabaseError:
        logger.warning("database still unreachable; the lease will expire and the sweeper will resend")


def task_database_failure_settle(*, task: Task, error: str, actor: str) -> None:
    """The locked task's run failed in the database: it resumes from its journal after a backoff, or, after
    too many failures in a row, goes to a human (`orchestration.policy.database_failures`)."""
    failure = DatabaseFailure(error=error, in_a_row=1 + database_failures_in_a_row(task), now=timezone.now())
    decision_apply(task=task, decision=database_failure_decide(failure, policy_limits()), actor=actor)


def _run(task: Task, lease: Lease, steps: TaskSteps) -> None:
    version_id = task.agent_version_id or current_agent_version_id(task.agent)
    profile = agent_version(version_id) if version_id else None
    if profile is None:
        _decide_under_lease(lease, lambda _: unknown_agent_decide(task.agent), if_lost=_SETTLE_LOST)
        return
    spec = _agent_spec(profile)
    recalled = Recalled()  # a task without a session has only its own memory: nothing to recall
    if task.session_id:
        held: list[Recalled] = []
        if not task_under_lease(
            lease, lambda locked: held.append(task_memory_recall(locked, steps)), if_lost="lease lost before the recall"
        ):
            return
        recalled = held[0]
    scope = redaction_scope(owner_id=task.owner_id, session_id=task.session_id, task_id=str(task.pk))
    tool_names = frozenset(t.name for t in spec.tools)
    journal = traced_journal(
        DatabaseJournal(
            lease=lease,
            actor=lease.owner,
            tool_names=tool_names,
            scope=scope,
            steps=steps,
            pinned_contracts=profile.tool_contracts,
            agent_version=profile.version,
        ),
        spec,
    )
    connection_release()  # taken, recalled, looked up: hold no connection while the model thinks
    try:
        outcome: RunOutcome = async_to_sync(run_agent)(
            spec,
            goal=task.goal,
            task_input=task.input,
            trace_id=task.trace_id,
            group_id=str(task.pk),
            journal=journal,
            recalled=recalled,
        )
    except Exception as exc:
        database_failure = cause_of(exc, DatabaseError)  # the SDK wraps what a tool call raises
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
        decision = turn_limit_decide(agent=spec.name, max_turns=spec.max_turns)
        _decide_under_lease(lease, lambda _: decision, if_lost="lease lost before the turn limit was recorded")
    else:
        decision = answer_decide(without_nul(outcome.final_output))
        if _decide_under_lease(lease, lambda _: decision, if_lost=_SETTLE_LOST):
            logger.info("task settled", extra={"reason": "the agent answered"})


_SETTLE_LOST = "lease lost before the outcome was recorded; the next run settles it"


def _decide_under_lease(lease: Lease, decide: Callable[[Task], Decision], *, if_lost: str) -> bool:
    """Decide on the locked task and apply the decision, if this run still holds the task's lease."""

    def apply(task: Task) -> None:
        decision_apply(task=task, decision=decide(task), actor=lease.owner)

    return task_under_lease(lease, apply, if_lost=if_lost)


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
    available = tool_specs(profile.tool_contracts)
    allowed = set(profile.tools) | {HANDOFF_TOOL}  # every agent can always reach a human
    return AgentSpec(
        name=profile.name,
        instructions=profile.instructions,
        model=profile.model,
        tools=tuple(t for t in available if not profile.tools or t.name in allowed),
        max_turns=profile.max_turns,
        model_settings=profile.model_settings,
        price=price,
        memory=profile.memory,
    )


def _model_failed(lease: Lease, failure: ModelFailure) -> None:
    def apply(task: Task) -> None:
        model_steps = Step.objects.filter(task=task, kind__in=MODEL_STEP_KINDS.values())
        failed_turn = model_steps.filter(state=StepState.FAILED).order_by("-seq").first()
        turn = TurnFailure(
            failure=failure,
            attempts=failed_turn.attempt if failed_turn else 1,
            retries_forgiven=failed_turn.retries_forgiven if failed_turn else 0,
            task_state=TaskState(task.state),
            now=timezone.now(),
        )
        decision_apply(
            task=task, step=failed_turn, decision=model_failure_decide(turn, policy_limits()), actor=lease.owner
        )

    task_under_lease(lease, apply, if_lost="lease lost while recording a failed run")


def _taken(lease: Lease) -> tuple[Task, TaskSteps]:
    """The task just leased, whole (the run reads its goal and input), and its steps as the run starts."""
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=lease.task_id)
        task_identity_known(task)
        return task, TaskSteps(str(task.pk))  # read under the lock: no step of the task changes meanwhile


def _recovered_lost_step(lease: Lease, task: Task, steps: TaskSteps) -> bool:
    """Settle what a vanished worker left behind; True when that is all this run may do.

    A step still RUNNING when its task is taken over outlived its deadline: its worker died, hung, or lost its
    database connection. It counts as a retryable failure of that step (`orchestration.policy.lost_steps`).
    Only what needs settling opens a transaction; the run's own lease keeps anyone else from starting a step.
    """
    if steps.running() is None and task.state != TaskState.TOOL_RUNNING:
        return False
    with transaction.atomic():
        task = task_locked_for(lease)
        step = steps.running()
        if step is not None:
            step_lost_settle(task=task, step=step, actor=lease.owner)
            return True
        if task.state == TaskState.TOOL_RUNNING:
            tool_unfinished_settle(task=task, actor=lease.owner)
            return True
    return False

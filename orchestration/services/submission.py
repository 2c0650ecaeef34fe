"""Accepting a task: exactly one task per (client, idempotency key), however many requests race."""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from agent_runtime.catalog import Budget, budget_for
from agent_runtime.rollouts import version_assign, version_forced
from lib import otel
from memory.vault import protect, redaction_scope
from orchestration import tracing
from orchestration.models import Task, TaskTransition
from orchestration.services.actors import user_actor
from orchestration.services.scheduling import task_enqueue
from orchestration.services.transitions import task_submitted_record


class IdempotencyKeyReused(Exception):
    """The key was already used for a task with a different body."""


class AgentVersionUnknown(Exception):
    """A forced agent version that the agent does not have."""


@dataclass(frozen=True)
class Submission:
    task: Task
    created: bool
    first_transition: TaskTransition | None = None
    """The new task's first log entry (None for an earlier submission): all that hangs off a task just created."""


def new_idempotency_key() -> str:
    return f"srv_{secrets.token_hex(16)}"


def request_hash(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def task_submit(
    *,
    owner: AbstractBaseUser,
    goal: str,
    task_input: dict[str, Any],
    session_id: str,
    agent: str,
    metadata: dict[str, Any],
    idempotency_key: str,
    trace_id: str,
    budget: Budget | None = None,
    routing_key: str = "",
    forced_version: int | None = None,
) -> Submission:
    """Create the task (once per owner and key), pinned to the agent version its rollout assigns (or the one a
    permitted client forced), and send it to the workers when the transaction commits."""
    body: dict[str, Any] = {
        "goal": goal,
        "input": task_input,
        "session_id": session_id,
        "agent": agent,
        "metadata": metadata,
    }
    if budget is not None:  # only when given, so keys used before budgets existed keep their hash
        body["budget"] = {
            "tokens": budget.tokens,
            "cost_usd": None if budget.cost_usd is None else str(budget.cost_usd),
        }
    if routing_key:
        body["routing_key"] = routing_key
    if forced_version is not None:
        body["agent_version"] = forced_version
    digest = request_hash(body)
    task_pk = uuid.uuid4()  # known before the insert, so that the submission's span is in the task's trace
    with tracing.task_submit_span(task_id=str(task_pk), trace_id=trace_id, agent=agent) as span:
        try:
            with transaction.atomic():
                key = session_id or routing_key or str(task_pk)
                assignment = (
                    version_assign(agent, key) if forced_version is None else version_forced(agent, forced_version)
                )
                if assignment is None:
                    raise AgentVersionUnknown(f"agent {agent!r} has no version {forced_version}")
                limits = budget_for(assignment.version_id, budget)
                # Stored and shown redacted from the start: the model reads the tokens, a tool gets the values.
                scope = redaction_scope(owner_id=owner.pk, session_id=session_id, task_id=str(task_pk))
                goal, task_input, metadata = protect([goal, task_input, metadata], scope=scope)
                task = Task.objects.create(
                    id=task_pk,
                    owner=owner,
                    idempotency_key=idempotency_key,
                    request_hash=digest,
                    trace_id=trace_id,
                    goal=goal,
                    input=task_input,
                    session_id=session_id,
                    agent=agent,
                    metadata=metadata,
                    agent_version_id=assignment.version_id,
                    routing_key=key,
                    rollout_id=assignment.rollout_id,
                    rollout_arm=assignment.arm,
                    token_budget=limits.tokens,
                    cost_budget=limits.cost_usd,
                    next_run_at=timezone.now(),
                )
                first = task_submitted_record(task=task, actor=user_actor(owner))
                task_enqueue(task=task)
        except IntegrityError:
            # Another request with this key won the insert; it has committed, so the row is there to compare.
            existing = Task.objects.get(owner=owner, idempotency_key=idempotency_key)
            span.set_attributes({otel.TASK_ID: str(existing.pk), otel.TASK_CREATED: False})
            if existing.request_hash != digest:
                raise IdempotencyKeyReused(
                    f"Idempotency-Key {idempotency_key!r} was already used with a different request body"
                ) from None
            return Submission(task=existing, created=False)
        span.set_attribute(otel.TASK_CREATED, True)
    return Submission(task=task, created=True, first_transition=first)

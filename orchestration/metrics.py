"""The platform's Prometheus counters and histograms, and the one place each is incremented.

Every figure is counted when the journal row it describes is committed (`transaction.on_commit`), so after a
batch each counter equals what the database says: a rolled-back step or transition counts nothing. Label values
are bounded: agent and version, step kind, tool name, model name, outcome and reason values; never ids or text.

In workers and under gunicorn these live in prometheus_client's multiprocess mode (`config.metrics_process`);
the recording rules and alerts built on them are in `deploy/prometheus/rules/`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from django.db import DatabaseError, transaction
from django.db.models import F
from prometheus_client import Counter, Gauge, Histogram

from agent_runtime.models import AgentVersion
from orchestration.models import TERMINAL_STATES, HandoffReason, Step, StepKind, StepState, Task, TaskState
from orchestration.selectors import task_identity
from tools.adapters.handoff import HANDOFF_TOOL
from tools.models import ToolContract

logger = logging.getLogger(__name__)

# OpenTelemetry GenAI semantic conventions: gen_ai.client.token.usage ({token}) and
# gen_ai.client.operation.duration (s), with the bucket boundaries the conventions advise.
GEN_AI_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
GEN_AI_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOOL_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
GEN_AI_OPERATION = "chat"

_AGENT = ("agent", "agent_version")

TASKS_SUBMITTED = Counter("agent_tasks_submitted", "Tasks accepted", _AGENT)
TASKS_FINISHED = Counter(
    "agent_tasks_finished", "Tasks that reached a terminal state (completed, failed, cancelled)", (*_AGENT, "outcome")
)
HANDOFFS = Counter("agent_handoffs", "Entries of a task into MANUAL_REVIEW", (*_AGENT, "reason"))
STEPS = Counter("agent_steps", "Step attempts that ended (succeeded or failed)", (*_AGENT, "kind", "outcome"))
STEP_RETRIES = Counter(
    "agent_step_retries", "Step attempts after a step's first, counted as they start", (*_AGENT, "kind")
)
TOOL_CALLS = Counter("agent_tool_calls", "Tool-call attempts that ended, by outcome", (*_AGENT, "tool", "outcome"))
TOOL_CALL_DURATION = Histogram(
    "agent_tool_call_duration_seconds",
    "How long tool-call attempts took, from the step's own timestamps",
    (*_AGENT, "tool"),
    buckets=TOOL_DURATION_BUCKETS,
)
TOKEN_USAGE = Histogram(
    "gen_ai_client_token_usage",
    "Tokens per model request, by token type (OpenTelemetry GenAI gen_ai.client.token.usage)",
    (*_AGENT, "gen_ai_operation_name", "gen_ai_request_model", "gen_ai_token_type"),
    buckets=GEN_AI_TOKEN_BUCKETS,
)
OPERATION_DURATION = Histogram(
    "gen_ai_client_operation_duration_seconds",
    "How long model requests took (OpenTelemetry GenAI gen_ai.client.operation.duration)",
    (*_AGENT, "gen_ai_operation_name", "gen_ai_request_model", "error_type"),
    buckets=GEN_AI_DURATION_BUCKETS,
)
COST = Counter("agent_cost_usd", "What model requests cost, in USD, from the price table", (*_AGENT, "model"))
SWEEPER_RUNS = Counter("agent_sweeper_runs", "Sweeps of due tasks whose message may be lost")
SWEEPER_LAST_RUN = Gauge(
    "agent_sweeper_last_run_timestamp_seconds", "When this process last swept (Unix time)", multiprocess_mode="max"
)
WEBHOOK_ATTEMPTS = Counter("agent_webhook_attempts", "Webhook delivery attempts that ended, by outcome", ("outcome",))
WEBHOOK_OUTCOMES = ("delivered", "retrying", "gave_up")
for _outcome in WEBHOOK_OUTCOMES:
    WEBHOOK_ATTEMPTS.labels(_outcome)  # every series from 0, so rate() sees the first failure

FINISH_OUTCOMES = {
    TaskState.COMPLETED: "completed",
    TaskState.TOOL_FAILED_FATAL: "failed",
    TaskState.CANCELLED: "cancelled",
}


@dataclass(frozen=True)
class AgentLabels:
    agent: str
    agent_version: str
    """The version's number ("3"), or "" for a task whose agent has no version."""

    def values(self) -> tuple[str, str]:
        return (self.agent, self.agent_version)


@lru_cache(maxsize=1024)
def _version_labels(version_id: int) -> AgentLabels:
    """Versions are never updated: read once per process, and their series created at zero on first sight."""
    row = AgentVersion.objects.filter(pk=version_id).values_list("agent__name", "number", "model", "tools").first()
    if row is None:
        return AgentLabels(agent="", agent_version="")
    agent, number, model, tools = row
    labels = AgentLabels(agent=agent, agent_version=str(number))
    # The version's own tools (and the handoff tool every agent has); no list: every tool it may use.
    allowed = [*tools, HANDOFF_TOOL] if tools else ToolContract.objects.values_list("name", flat=True)
    series_initialize(labels, tools=allowed, models=[model])
    return labels


def agent_labels_of(task: Task) -> AgentLabels:
    if task.agent_version_id is None:
        return AgentLabels(agent=task.agent, agent_version="")
    return _version_labels(task.agent_version_id)


def _task_labels(task_id: Any) -> AgentLabels:
    identity = task_identity(str(task_id))
    if identity.agent_version_id is None:
        return AgentLabels(agent=identity.agent, agent_version="")
    return _version_labels(identity.agent_version_id)


_KINDS = tuple(str(kind) for kind in StepKind)
_TOOL_OUTCOMES = ("ok", "retryable_error", "error")


def series_initialize(labels: AgentLabels, *, tools: Iterable[str], models: Iterable[str]) -> None:
    """Create every series of an agent version at zero, so Prometheus sees each counter start at 0 and `rate`
    counts its first increment (a series that appears already at 1 loses that 1 to the first scrape)."""
    agent = labels.values()
    TASKS_SUBMITTED.labels(*agent)
    for outcome in FINISH_OUTCOMES.values():
        TASKS_FINISHED.labels(*agent, outcome)
    for reason in HandoffReason.values:
        HANDOFFS.labels(*agent, reason)
    for kind in _KINDS:
        STEP_RETRIES.labels(*agent, kind)
        for outcome in ("succeeded", "failed"):
            STEPS.labels(*agent, kind, outcome)
    for tool in tools:
        TOOL_CALL_DURATION.labels(*agent, tool)
        for outcome in _TOOL_OUTCOMES:
            TOOL_CALLS.labels(*agent, tool, outcome)
    for model in models:
        COST.labels(*agent, model)
        OPERATION_DURATION.labels(*agent, GEN_AI_OPERATION, model, "")
        for token_type in ("input", "output"):
            TOKEN_USAGE.labels(*agent, GEN_AI_OPERATION, model, token_type)


_warm = False


def series_warm_up() -> None:
    """Zero series for every agent's current version, once per process, before its first event (a request, a
    Celery task). A database that does not answer leaves it for the next event to try."""
    global _warm
    if _warm:
        return
    try:
        for version_id in AgentVersion.objects.filter(agent__current_id=F("id")).values_list("pk", flat=True):
            _version_labels(version_id)
    except DatabaseError:
        logger.warning("metric series not initialised yet: the database did not answer", exc_info=True)
        return
    _warm = True


def _after_commit(record: Any) -> None:
    # Robust: a figure that cannot be counted is logged, never raised into the caller, whose commit is done and
    # whose later on-commit work (sending the task's message) must still run.
    transaction.on_commit(record, robust=True)


def task_submitted_count(task: Task) -> None:
    labels = agent_labels_of(task)
    _after_commit(lambda: TASKS_SUBMITTED.labels(*labels.values()).inc())


def transition_count(task: Task, *, from_state: str) -> None:
    """A committed move: a finish (first entry into a terminal state) or an entry into the manual queue."""
    labels = agent_labels_of(task)
    if task.state in TERMINAL_STATES and from_state not in TERMINAL_STATES:
        outcome = FINISH_OUTCOMES[TaskState(task.state)]
        _after_commit(lambda: TASKS_FINISHED.labels(*labels.values(), outcome).inc())
    elif task.state == TaskState.MANUAL_REVIEW and from_state != TaskState.MANUAL_REVIEW:
        reason = task.handoff_reason or HandoffReason.AGENT_ASKED.value
        _after_commit(lambda: HANDOFFS.labels(*labels.values(), reason).inc())


def step_started_count(step: Step) -> None:
    if step.attempt > 1:
        labels = _task_labels(step.task_id)
        _after_commit(lambda: STEP_RETRIES.labels(*labels.values(), step.kind).inc())


def step_ended_count(step: Step) -> None:
    labels = _task_labels(step.task_id)
    outcome = "succeeded" if step.state == StepState.SUCCEEDED else "failed"
    seconds = (step.duration_ms or 0) / 1000
    kind, name, output = str(step.kind), step.name, step.output or {}

    def record() -> None:
        STEPS.labels(*labels.values(), kind, outcome).inc()
        if kind == StepKind.TOOL_CALL:
            TOOL_CALLS.labels(*labels.values(), name, _tool_outcome(output)).inc()
            TOOL_CALL_DURATION.labels(*labels.values(), name).observe(seconds)
        elif kind == StepKind.MODEL_TURN:
            error_type = "" if outcome == "succeeded" else _model_error_type(output)
            OPERATION_DURATION.labels(*labels.values(), GEN_AI_OPERATION, name, error_type).observe(seconds)

    _after_commit(record)


def model_usage_count(*, task_id: Any, model: str, input_tokens: int, output_tokens: int, cost: Decimal) -> None:
    """A model answer that was paid for, counted where the task's totals are (late answers included)."""
    labels = _task_labels(task_id)

    def record() -> None:
        for token_type, tokens in (("input", input_tokens), ("output", output_tokens)):
            TOKEN_USAGE.labels(*labels.values(), GEN_AI_OPERATION, model, token_type).observe(tokens)
        COST.labels(*labels.values(), model).inc(float(cost))

    _after_commit(record)


def webhook_attempt_count(outcome: str) -> None:
    _after_commit(lambda: WEBHOOK_ATTEMPTS.labels(outcome).inc())


def sweep_count() -> None:
    SWEEPER_RUNS.inc()
    SWEEPER_LAST_RUN.set(time.time())


def _tool_outcome(envelope: dict[str, Any]) -> str:
    if envelope.get("ok"):
        return "ok"
    return "retryable_error" if envelope.get("retryable") else "error"


def _model_error_type(output: dict[str, Any]) -> str:
    """The failure's class, as the GenAI conventions' error.type asks (bounded: exception type names)."""
    error = output.get("error")
    kind = error.get("type") if isinstance(error, dict) else None
    return str(kind)[:64] if kind else "_OTHER"

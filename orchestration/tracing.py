"""Trace context: W3C `traceparent` in, a trace id on every task, step, Celery message and log line, and the
task's spans (its submission, each run, the decisions that make it wait) when OpenTelemetry is on (`lib.otel`).

A task's trace id is fixed at submission, from the client's `traceparent` as OpenTelemetry's propagator reads it
(or the server span's, which continues it), else new. Every span of the task is in that trace, whichever
process makes it and however late.
"""

from __future__ import annotations

import contextvars
import json
import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from opentelemetry import trace
from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import GEN_AI_AGENT_NAME, GEN_AI_AGENT_VERSION
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.trace import INVALID_SPAN, Span, format_span_id

from lib import otel
from lib.redaction import platform_redactor

if TYPE_CHECKING:  # models load after logging is configured with this module's filter and formatter
    from orchestration.models import Step, Task
    from orchestration.policy.decision import Decision

TRACE_HEADER = "trace_id"  # Celery message header carrying the task's trace id

trace_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)
task_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("task_id", default=None)


def new_trace_id() -> str:
    return secrets.token_hex(16)


@contextmanager
def bound(*, trace_id: str | None, task_id: str | None = None) -> Iterator[None]:
    """Bind a trace (and task) to every log line written inside the block."""
    trace_token = trace_id_var.set(trace_id)
    task_token = task_id_var.set(task_id)
    try:
        yield
    finally:
        task_id_var.reset(task_token)
        trace_id_var.reset(trace_token)


class TraceContextMiddleware:
    """Take the trace from `traceparent` (read by OpenTelemetry's W3C propagator, or continued by Django's server
    span when tracing is on) or start one; echo it back so clients can correlate."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # An invalid or missing header starts a new trace (with tracing on, the server span already has).
        trace_id = otel.incoming_trace_id(request.headers) or new_trace_id()
        request.trace_id = trace_id  # type: ignore[attr-defined]
        with bound(trace_id=trace_id):
            response = self.get_response(request)
        otel.traceparent_inject(response, trace_id=trace_id)  # type: ignore[arg-type]
        return response


class TraceContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "trace_id", None) is None:
            record.trace_id = trace_id_var.get()
        if getattr(record, "task_id", None) is None:
            record.task_id = task_id_var.get()
        if getattr(record, "span_id", None) is None:  # with tracing on: the log line's place in the trace
            current = trace.get_current_span().get_span_context()
            record.span_id = format_span_id(current.span_id) if current.is_valid else None
        return True


_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra= fields are kept, so logs can be queried by trace_id or task_id."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_") and value is not None:
                payload[key] = value
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        # Nothing sensitive reaches a log line: the message, its fields and tracebacks alike (one mechanism with
        # what is stored; tokens are scoped to the task, so a line names the card the task's records name).
        plain = json.loads(json.dumps(payload, default=str))  # objects as the text they would be logged as
        scope = str(payload.get("task_id") or "logs")
        return json.dumps(platform_redactor().value(plain, scope=scope))


# --- the task's spans ------------------------------------------------------------------------------------


@contextmanager
def task_submit_span(*, task_id: str, trace_id: str, agent: str) -> Iterator[Span]:
    """`task.submit`: accepting the task, in its trace (under the request's server span when there is one)."""
    if not otel.enabled():
        yield INVALID_SPAN
        return
    parent, links = otel.trace_parent(trace_id, anchor=task_id)
    attributes = {otel.TASK_ID: task_id, GEN_AI_AGENT_NAME: agent}
    with otel.tracer().start_as_current_span("task.submit", context=parent, links=links, attributes=attributes) as span:
        yield span


@contextmanager
def task_run_span(*, task: Task, worker: str) -> Iterator[None]:
    """`task.run`: one run of the task under its lease, in the task's trace. Under the Celery consumer span when
    the message carried the task's context; a run the sweeper re-sent, or one whose context was lost, hangs off the
    task's stable remote parent and links to the span that started it."""
    if not otel.enabled():
        yield
        return
    parent, links = otel.trace_parent(task.trace_id, anchor=str(task.pk))
    attributes: dict[str, str | int] = {
        otel.TASK_ID: str(task.pk),
        GEN_AI_AGENT_NAME: task.agent,
        GEN_AI_AGENT_VERSION: str(task.agent_version_id or ""),
        "task.state": str(task.state),
        "task.worker": worker,
        **_run_history(task),
    }
    with (
        otel.tracer().start_as_current_span("task.run", context=parent, links=links, attributes=attributes) as span,
        otel.run_scope(span),
    ):
        try:
            yield
        finally:
            span.set_attribute("task.state.after", _state_of(task.pk))


def _run_history(task: Task) -> dict[str, str | int]:
    """How far the task got before this run (replayed from the journal), and how often it was made to wait. Left
    out if the database fails here: the run itself handles that, and tracing must not change how."""
    from orchestration.models import RecoveryDecision, Step
    from tools.errors import RecoveryAction

    try:
        return {
            "task.run.steps_recorded": Step.objects.filter(task=task).count(),
            "task.run.retries_before": RecoveryDecision.objects.filter(
                task=task, action__in=[RecoveryAction.RETRY, RecoveryAction.RESUME]
            ).count(),
        }
    except DatabaseError:
        return {}


def _state_of(task_id: object) -> str:
    from orchestration.models import Task

    try:
        return str(Task.objects.values_list("state", flat=True).get(pk=task_id))
    except DatabaseError:
        return ""


def decision_record(*, decision: Decision, step: Step | None) -> None:
    """Put an applied decision on the trace: the step's attempt on its open span, each ruling as an event on the
    current span, and a `wait` event on the run's span when the task runs again later."""
    if not otel.enabled():
        return
    if step is not None:
        envelope = next((ruling.envelope for ruling in decision.rulings if ruling.envelope), None) or {}
        error_code = envelope.get("error_code")
        otel.step_attempt_record(
            name=step.name, attempt=step.attempt, error_type=str(error_code) if error_code else None
        )
    about: dict[str, str | int] = {"task.step.name": step.name, otel.STEP_ATTEMPT: step.attempt} if step else {}
    current = trace.get_current_span()
    for ruling in decision.rulings:
        event: dict[str, str | int] = {
            "task.decision.event": str(ruling.event),
            "task.decision.action": str(ruling.action),
            "task.decision.what": ruling.what,
            "task.decision.rule": ruling.rule,
            **about,
        }
        if ruling.envelope and ruling.envelope.get("error_code"):
            event[ERROR_TYPE] = str(ruling.envelope["error_code"])
        current.add_event("task.decision", event)
    if decision.due_at is not None:
        reason = decision.rulings[-1].what if decision.rulings else decision.waiting_reason
        otel.run_span().add_event(
            "wait",
            {
                "task.wait.until": decision.due_at.isoformat(),
                "task.wait.seconds": round(max(0.0, (decision.due_at - timezone.now()).total_seconds()), 3),
                "task.wait.reason": reason or (decision.moves[-1].reason if decision.moves else ""),
                "task.decision.action": str(decision.action or ""),
                **about,
            },
        )

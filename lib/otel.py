"""OpenTelemetry for every process: traces over OTLP/HTTP, on only when the standard `OTEL_*` variables ask.

Off by default: with no variables, no tracer provider is installed, so every span is the API's no-op and no
exporter thread runs. `OTEL_TRACES_EXPORTER=otlp` (or an `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`) switches
tracing on; `OTEL_SDK_DISABLED=true` always wins. The SDK reads everything else itself: the endpoint, headers
and timeout (`OTEL_EXPORTER_OTLP_*`), the sampler (`OTEL_TRACES_SAMPLER`), the batching (`OTEL_BSP_*`), the
service name and resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`).

Trace context crosses process boundaries through OpenTelemetry's own W3C propagator, never by hand: HTTP
requests (Django's instrumentation, and `incoming_trace_id` when it is off), Celery messages (Celery's
instrumentation). A task's trace id is fixed when it is submitted; spans of runs that start with no live
context (a countdown, the sweeper) are parented by `trace_parent` on a stable remote span of that trace.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, TraceFlags, format_trace_id
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

TRACER_NAME = "agent_ops"

# The project's own attributes (GenAI and error attributes come from the semantic conventions).
TASK_ID = "task.id"
TASK_CREATED = "task.created"
STEP_ATTEMPT = "task.step.attempt"
"""1 for a step's first attempt, 2 and up when it runs again (after a backoff, a lost worker)."""
STEP_REPLAYED = "task.step.replayed"
"""The call's result came from the journal: nothing ran in this run."""
RUN_SUSPENDED = "task.run.suspended"
"""Why the journal stopped the run here (a backoff, a hold for approval, a handoff): a wait, not a failure."""

EXPORTERS = ("otlp", "console")
_W3C = TraceContextTextMapPropagator()


class TracingMisconfigured(ValueError):
    """An `OTEL_*` variable asks for something this deployment cannot do."""


def exporters_wanted(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The span exporters the standard variables ask for; empty when tracing is off (the default)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ()
    raw = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    names = tuple(dict.fromkeys(name.strip() for name in raw.split(",") if name.strip()))
    if not names:
        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        names = ("otlp",) if endpoint and endpoint.strip() else ()
    if names == ("none",):
        return ()
    unknown = [name for name in names if name not in EXPORTERS]
    if unknown:
        raise TracingMisconfigured(
            f"OTEL_TRACES_EXPORTER={raw!r}: {', '.join(unknown)} is not available here "
            f"(use {', '.join(EXPORTERS)}, or none)"
        )
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    ).strip()
    if "otlp" in names and protocol not in ("", "http/protobuf"):
        raise TracingMisconfigured(f"OTLP protocol {protocol!r} is not installed here: use http/protobuf")
    return names


# --- the tracer provider, once per process ---------------------------------------------------------------

_lock = threading.Lock()
_provider: TracerProvider | None = None


def tracing_configure(
    *, service_name: str, exporters: Sequence[str], django: bool = False, celery: bool = False
) -> bool:
    """Install the tracer provider (one batching processor per exporter) and instrument Django and Celery, if
    `exporters` (from `exporters_wanted`) names any. Returns whether tracing is on in this process.

    Call it where the process starts serving: before Django loads its middleware, and in each Celery pool process
    (`worker_process_init`), since a batching processor's thread does not survive a fork.
    """
    if not exporters:
        return False
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    with _lock:
        if _provider is None:
            for name in exporters:
                exporter: SpanExporter
                if name == "otlp":
                    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                    exporter = OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_[TRACES_]* itself
                else:
                    exporter = ConsoleSpanExporter()
                _install_locked(service_name, BatchSpanProcessor(exporter))
    instrument(django=django, celery=celery)
    return True


def tracing_install(*, service_name: str, processor: SpanProcessor) -> None:
    """Install the tracer provider with `processor` (or add it to the one installed): for tests, which export to
    memory (`SimpleSpanProcessor(InMemorySpanExporter())`) whatever the environment says."""
    with _lock:
        _install_locked(service_name, processor)


def _install_locked(service_name: str, processor: SpanProcessor) -> None:
    global _provider
    from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider

    if _provider is None:
        # Ours is the default: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, read by the SDK, win over it.
        resource = Resource.create({SERVICE_NAME: service_name}).merge(OTELResourceDetector().detect())
        _provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER, else parent-based
        trace.set_tracer_provider(_provider)
    _provider.add_span_processor(processor)


def enabled() -> bool:
    """Whether this process records spans (cheap: callers skip building attributes when it is off)."""
    return _provider is not None


def tracing_flush(timeout_millis: int = 5000) -> None:
    """Export what is batched: before a process exits without running its atexit hooks (a pool process)."""
    if _provider is not None:
        _provider.force_flush(timeout_millis)


def instrument(*, django: bool = False, celery: bool = False) -> None:
    """Django: a server span per request, continuing the client's `traceparent` (its middleware goes first in
    MIDDLEWARE, so call this before the handler loads it). Celery: a producer span per message sent, with the
    context injected in its headers, and a consumer span per task run, continuing it."""
    if django:
        from opentelemetry.instrumentation.django import DjangoInstrumentor

        if not DjangoInstrumentor().is_instrumented_by_opentelemetry:
            DjangoInstrumentor().instrument()
    if celery:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        if not CeleryInstrumentor().is_instrumented_by_opentelemetry:
            CeleryInstrumentor().instrument()


def uninstrument() -> None:
    """Undo `instrument` (tests)."""
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    for instrumentor in (DjangoInstrumentor(), CeleryInstrumentor()):
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


# --- trace context ---------------------------------------------------------------------------------------


def incoming_trace_id(headers: Mapping[str, str]) -> str | None:
    """The trace a request belongs to, as 32 hex digits: the server span's when Django is instrumented (it has
    continued the client's trace, or started one), else the one in a valid W3C `traceparent`, as the propagator
    reads it. None when there is none: the caller starts a new trace."""
    current = trace.get_current_span().get_span_context()
    if current.is_valid:
        return format_trace_id(current.trace_id)
    remote = trace.get_current_span(_W3C.extract(headers)).get_span_context()
    return format_trace_id(remote.trace_id) if remote.is_valid else None


def traceparent_inject(carrier: MutableMapping[str, str], *, trace_id: str) -> None:
    """Write the W3C `traceparent` of the trace `trace_id` into `carrier` (a response's headers): the current
    span's when it belongs to that trace, else a new span id in it."""
    current = trace.get_current_span().get_span_context()
    if current.is_valid and format_trace_id(current.trace_id) == trace_id:
        _W3C.inject(carrier)
        return
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    span = NonRecordingSpan(
        SpanContext(
            trace_id=int(trace_id, 16),
            span_id=RandomIdGenerator().generate_span_id(),
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
    )
    _W3C.inject(carrier, context=trace.set_span_in_context(span))


def anchor_span_id(anchor: str) -> int:
    """A stable, valid span id for `anchor` (a task's id): the remote parent of that task's spans."""
    return int.from_bytes(hashlib.sha256(anchor.encode()).digest()[:8], "big") or 1


def trace_parent(trace_id: str, *, anchor: str) -> tuple[Context | None, list[Link]]:
    """Where a span of the trace `trace_id` starts, and what it links to.

    Under the current span when that is in the trace (a request, a message that carried the context); otherwise
    (a run after a countdown, a message the sweeper re-sent) under a remote span of that trace whose id is
    derived from `anchor`, linked to the current span if there is one, so both traces lead to each other.
    """
    current = trace.get_current_span().get_span_context()
    if current.is_valid and format_trace_id(current.trace_id) == trace_id:
        return None, []
    parent = NonRecordingSpan(
        SpanContext(
            trace_id=int(trace_id, 16),
            span_id=anchor_span_id(anchor),
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
    )
    return trace.set_span_in_context(parent), [Link(current)] if current.is_valid else []


# --- the open run and step -------------------------------------------------------------------------------

_run_span: ContextVar[Span | None] = ContextVar("otel_run_span", default=None)


@contextmanager
def run_scope(span: Span) -> Iterator[Span]:
    """Mark `span` as the run's: `run_span()` finds it from anywhere inside (a step, a decision)."""
    token = _run_span.set(span)
    try:
        yield span
    finally:
        _run_span.reset(token)


def run_span() -> Span:
    """The open run's span, else the current span (a no-op one when there is none)."""
    return _run_span.get() or trace.get_current_span()


@dataclass
class StepScope:
    """A step's span while it is open, and what the step's owner (the orchestrator) says about it."""

    name: str
    span: Span
    attempt: int | None = None
    """Set by `step_attempt_record` when the step really ran; None: its result was replayed."""
    error_type: str | None = None


_step_scope: ContextVar[StepScope | None] = ContextVar("otel_step_scope", default=None)


@contextmanager
def step_scope(name: str, span: Span) -> Iterator[StepScope]:
    scope = StepScope(name=name, span=span)
    token = _step_scope.set(scope)
    try:
        yield scope
    finally:
        _step_scope.reset(token)


def step_attempt_record(*, name: str, attempt: int, error_type: str | None = None) -> None:
    """The step open in this context (if it is `name`) ran as attempt `attempt`, and failed with `error_type`."""
    scope = _step_scope.get()
    if scope is None or scope.name != name:
        return
    scope.attempt = attempt
    scope.span.set_attribute(STEP_ATTEMPT, attempt)
    if error_type:
        scope.error_type = error_type

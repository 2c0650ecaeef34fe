"""Spans exported to memory, with Django and Celery instrumented, for one test at a time."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import format_trace_id

from lib import otel

# A process has one tracer provider: installed by the first test that asks for spans, kept for the session
# (later tests run with tracing on, exporting to memory); Django and Celery are instrumented per test.
EXPORTER = InMemorySpanExporter()
_installed: list[bool] = []


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    if not _installed:
        otel.tracing_install(service_name="agent-ops-test", processor=SimpleSpanProcessor(EXPORTER))
        _installed.append(True)
    otel.instrument(django=True, celery=True)
    EXPORTER.clear()
    try:
        yield EXPORTER
    finally:
        otel.uninstrument()
        EXPORTER.clear()


def named(finished: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in finished if span.name == name]


def one(finished: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = named(finished, name)
    assert len(found) == 1, f"{len(found)} spans named {name!r} in {[span.name for span in finished]}"
    return found[0]


def trace_of(span: ReadableSpan) -> str:
    assert span.context is not None
    return format_trace_id(span.context.trace_id)


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None

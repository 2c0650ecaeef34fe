"""The SDK's traces: kept with the task in every mode, exported to OpenAI only when a key is configured.

Each run is traced as `trace_<the task's trace id>`; spans (model calls, tool calls, the agent) are collected
in memory as they end and stored on the task by the orchestrator after the run (`pop_spans`).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

from agents.tracing import (
    Span,
    Trace,
    TracingProcessor,
    add_trace_processor,
    set_trace_processors,
    set_tracing_export_api_key,
)
from django.conf import settings


class SpanCollector(TracingProcessor):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def on_trace_start(self, trace: Trace) -> None:
        pass

    def on_trace_end(self, trace: Trace) -> None:
        pass

    def on_span_start(self, span: Span[Any]) -> None:
        pass

    def on_span_end(self, span: Span[Any]) -> None:
        exported = span.export()
        if exported is not None:
            with self._lock:
                self._spans[span.trace_id].append(exported)

    def pop(self, trace_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return self._spans.pop(trace_id, [])

    def shutdown(self) -> None:
        pass

    def force_flush(self) -> None:
        pass


COLLECTOR = SpanCollector()
_installed = False


def sdk_trace_id(trace_id: str) -> str:
    return f"trace_{trace_id}"


def install_tracing() -> None:
    """Once per process: collect spans; keep the SDK's exporter to OpenAI only if there is a key."""
    global _installed
    if _installed:
        return
    if settings.OPENAI_API_KEY:
        set_tracing_export_api_key(settings.OPENAI_API_KEY)
        add_trace_processor(COLLECTOR)
    else:
        set_trace_processors([COLLECTOR])  # replaces the exporter: nothing leaves the machine
    _installed = True


def pop_spans(trace_id: str) -> list[dict[str, Any]]:
    """The spans of the task's runs since the last pop."""
    return COLLECTOR.pop(sdk_trace_id(trace_id))

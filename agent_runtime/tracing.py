"""The SDK's traces: kept with the task in every mode, exported to OpenAI only when a key is configured.

Each run is traced as `trace_<the task's trace id>`; spans (model calls, tool calls, the agent) are collected
in memory as they end and stored on the task by the orchestrator after the run (`pop_spans`).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

from agents.tracing import Span, Trace, TracingProcessor, set_trace_processors, set_tracing_export_api_key
from agents.tracing.processors import default_processor
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
_installed_for: tuple[bool, str] | None = None


def sdk_trace_id(trace_id: str) -> str:
    return f"trace_{trace_id}"


def install_tracing() -> None:
    """Collect spans always; keep the SDK's exporter to OpenAI only when export is on and a key is set.
    Re-done only when those settings change (once per process in practice)."""
    global _installed_for
    wanted = (bool(settings.OPENAI_TRACE_EXPORT and settings.OPENAI_API_KEY), settings.OPENAI_API_KEY)
    if wanted == _installed_for:
        return
    if wanted[0]:
        set_tracing_export_api_key(settings.OPENAI_API_KEY)
        set_trace_processors([default_processor(), COLLECTOR])
    else:
        set_trace_processors([COLLECTOR])  # replaces the exporter: nothing leaves the machine
    _installed_for = wanted


def pop_spans(trace_id: str) -> list[dict[str, Any]]:
    """The spans of the task's runs since the last pop."""
    return COLLECTOR.pop(sdk_trace_id(trace_id))

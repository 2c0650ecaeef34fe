"""Trace context: W3C `traceparent` in, a trace id on every task, step, Celery message and log line."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from django.http import HttpRequest, HttpResponse

TRACE_HEADER = "trace_id"  # Celery message header carrying the task's trace id
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_INVALID_TRACE_ID = "0" * 32

trace_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)
task_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("task_id", default=None)


def new_trace_id() -> str:
    return secrets.token_hex(16)


def trace_id_from_traceparent(header: str | None) -> str | None:
    """The trace id of a valid W3C traceparent header, or None (an invalid header starts a new trace)."""
    if not header:
        return None
    match = _TRACEPARENT.match(header.strip().lower())
    if match is None or match.group(1) == _INVALID_TRACE_ID:
        return None
    return match.group(1)


def traceparent_for(trace_id: str) -> str:
    return f"00-{trace_id}-{secrets.token_hex(8)}-01"


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
    """Take the trace from `traceparent` or start one; echo it back so clients can correlate."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        trace_id = trace_id_from_traceparent(request.headers.get("traceparent")) or new_trace_id()
        request.trace_id = trace_id  # type: ignore[attr-defined]
        with bound(trace_id=trace_id):
            response = self.get_response(request)
        response["traceparent"] = traceparent_for(trace_id)
        return response


class TraceContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "trace_id", None) is None:
            record.trace_id = trace_id_var.get()
        if getattr(record, "task_id", None) is None:
            record.task_id = task_id_var.get()
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
        return json.dumps(payload, default=str)

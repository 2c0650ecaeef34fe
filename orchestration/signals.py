"""Signal hooks: the trace id rides in every Celery message's headers and is bound in the worker's logs; a
process's metric series are created at zero before its first request or task."""

from __future__ import annotations

from typing import Any

from celery.signals import before_task_publish, task_postrun, task_prerun
from django.core.signals import request_started

from orchestration import metrics
from orchestration.tracing import TRACE_HEADER, task_id_var, trace_id_var

_TOKENS: dict[str, Any] = {}


@before_task_publish.connect
def _add_trace_header(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None and not headers.get(TRACE_HEADER):
        current = trace_id_var.get()
        if current:
            headers[TRACE_HEADER] = current


@task_prerun.connect
def _bind_trace(task_id: str | None = None, task: Any = None, args: Any = None, **_: Any) -> None:
    trace_id = getattr(task.request, TRACE_HEADER, None) if task is not None else None
    task_ref = args[0] if args else None
    _TOKENS[task_id or ""] = (trace_id_var.set(trace_id), task_id_var.set(str(task_ref) if task_ref else None))


@task_postrun.connect
def _unbind_trace(task_id: str | None = None, **_: Any) -> None:
    tokens = _TOKENS.pop(task_id or "", None)
    if tokens is not None:
        trace_id_var.reset(tokens[0])
        task_id_var.reset(tokens[1])


def _metric_series_warm_up(**_: Any) -> None:
    metrics.series_warm_up()  # once per process; a no-op after that


task_prerun.connect(_metric_series_warm_up, weak=False)
request_started.connect(_metric_series_warm_up, weak=False, dispatch_uid="metric-series-warm-up")

"""Keeping the agent SDK's spans with their task."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agent_runtime.snapshots import to_jsonable
from agent_runtime.tracing import pop_spans
from memory.vault import protect, redaction_scope
from orchestration.models import Task, TaskSpan


def _when(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def task_spans_store(*, task: Task) -> int:
    """Store the spans this process collected for the task's trace, redacted (an endpoint's raw answer is in
    them); returns how many."""
    scope = redaction_scope(owner_id=task.owner_id, session_id=task.session_id, task_id=str(task.pk))
    spans = [
        TaskSpan(
            task=task,
            span_id=str(span.get("id", "")),
            parent_id=str(span.get("parent_id") or ""),
            kind=str((span.get("span_data") or {}).get("type", "")),
            started_at=_when(span.get("started_at")),
            ended_at=_when(span.get("ended_at")),
            data=protect(to_jsonable(span.get("span_data") or {}), scope=scope),
            error=protect(to_jsonable(span.get("error")), scope=scope),
        )
        for span in pop_spans(task.trace_id)
    ]
    TaskSpan.objects.bulk_create(spans)
    return len(spans)

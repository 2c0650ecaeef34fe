"""Small builders for test data, through the same services production uses."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.models import User

from orchestration.models import Task
from orchestration.services.submission import task_submit
from orchestration.tracing import new_trace_id

LOOKUP_AND_NOTE: dict[str, Any] = {
    "goal": "Look up order A-1001 and add an order note that the parcel is late.",
    "input": {"order_number": "A-1001", "note": "Parcel is late."},
}


def submit_task(owner: User, *, goal: str | None = None, task_input: dict[str, Any] | None = None) -> Task:
    return task_submit(
        owner=owner,
        goal=goal or str(LOOKUP_AND_NOTE["goal"]),
        task_input=task_input if task_input is not None else dict(LOOKUP_AND_NOTE["input"]),
        session_id="",
        agent="default",
        metadata={},
        idempotency_key=f"test-{uuid.uuid4().hex}",
        trace_id=new_trace_id(),
    ).task

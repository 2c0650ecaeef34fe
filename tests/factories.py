"""Small builders for test data, through the same services production uses."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib.auth.models import User

from agent_runtime.models import AgentConfig
from orchestration.models import Task
from orchestration.services.submission import task_submit
from orchestration.tracing import new_trace_id

LOOKUP_AND_NOTE: dict[str, Any] = {
    "goal": "Look up order A-1001 and add an order note that the parcel is late.",
    "input": {"order_number": "A-1001", "note": "Parcel is late."},
}


def submit_task(
    owner: User,
    *,
    goal: str | None = None,
    task_input: dict[str, Any] | None = None,
    session_id: str = "",
    routing_key: str = "",
    forced_version: int | None = None,
) -> Task:
    return task_submit(
        owner=owner,
        goal=goal or str(LOOKUP_AND_NOTE["goal"]),
        task_input=task_input if task_input is not None else dict(LOOKUP_AND_NOTE["input"]),
        session_id=session_id,
        agent="default",
        metadata={},
        idempotency_key=f"test-{uuid.uuid4().hex}",
        trace_id=new_trace_id(),
        routing_key=routing_key,
        forced_version=forced_version,
    ).task


LOOKUP: dict[str, Any] = {"goal": "Look up order A-1001", "task_input": {"order_number": "A-1001"}}
"""One tool call between two model turns: three steps."""


def agent_form(**changes: object) -> dict[str, object]:
    """The default agent's admin form as it stands, with `changes` over it."""
    current = AgentConfig.objects.get(name="default").current
    assert current is not None
    data: dict[str, object] = {
        "instructions": current.instructions,
        "model": current.model,
        "model_settings": json.dumps(current.model_settings),
        "tools": json.dumps(current.tools),
        "tool_contracts": json.dumps(current.tool_contracts),
        "max_turns": current.max_turns,
        "memory_window_turns": current.memory_window_turns,
        "memory_summary_tokens": current.memory_summary_tokens,
        "memory_inject_tokens": current.memory_inject_tokens,
    }
    return {**data, **changes}


def api_key(user: User, scopes: list[str] | None = None, rate_per_minute: int | None = 10**6) -> str:
    """A new API token's key for `user`: the client scopes unless told otherwise, and a rate no test reaches
    unless it is testing the rate limit (pass rate_per_minute=None for the platform's default)."""
    from access.models import ApiToken
    from access.services import token_issue

    scopes = scopes or ApiToken.default_scopes()
    return token_issue(user=user, name="test", scopes=scopes, rate_per_minute=rate_per_minute).key


def every_scope() -> list[str]:
    from access.scopes import Scope

    return list(Scope.values)

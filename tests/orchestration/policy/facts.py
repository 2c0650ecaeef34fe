"""Facts for the policy's table tests: plain values, no database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from orchestration.policy.decision import Decision, Limits
from tools.contract import Contract
from tools.envelope import ToolResult
from tools.errors import SHARED_ERROR_CODES, ErrorCodeSpec, RecoveryAction
from tools.policy import DEFAULT_RETRY, CircuitPolicy, RetryPolicy

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LIMITS = Limits(
    replan_cap=3,
    jitter=0.2,
    default_tool_retry=DEFAULT_RETRY,
    model_retry=RetryPolicy(max_retries=3, base_seconds=1.0, cap_seconds=30.0),
    database_retry=RetryPolicy(max_retries=5, base_seconds=1.0, cap_seconds=30.0),
)


def contract(name: str = "refund_order", **own: tuple[bool, RecoveryAction]) -> Contract:
    """A contract whose dictionary holds the shared codes and `own` (code=(retryable, action))."""
    codes = {code: ErrorCodeSpec(code, code.lower(), retryable, action) for code, (retryable, action) in own.items()}
    return Contract(
        name=name,
        adapter=name,
        version_id=7,
        version=2,
        description=name,
        parameters_schema={"type": "object", "properties": {}, "required": []},
        result_schema={"type": "object"},
        error_codes={**codes, **SHARED_ERROR_CODES},
        timeout_seconds=10,
        retry=DEFAULT_RETRY,
        circuit=CircuitPolicy(5, 60, 30),
        approval_mode="never",
        approval_rule=None,
    )


def failed(code: str, *, retryable: bool = False, message: str = "it failed") -> ToolResult:
    return ToolResult.failure(code, message, retryable=retryable)


def moves(decision: Decision) -> list[str]:
    return [str(move.transition) for move in decision.moves]


def actions(decision: Decision) -> list[str]:
    return [str(ruling.action) for ruling in decision.rulings]


def seconds_until_due(decision: Decision) -> float | None:
    return (decision.due_at - NOW).total_seconds() if decision.due_at else None


def summary(decision: Decision) -> dict[str, Any]:
    return {
        "moves": moves(decision),
        "actions": actions(decision),
        "due_in": seconds_until_due(decision),
        "handoff": str(decision.handoff.reason) if decision.handoff else None,
    }

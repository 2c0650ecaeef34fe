"""The fault plan: one switch for injected faults, read by the tool call path (and later the runtime).

Set through the FAULT_PLAN setting (environment variable) as JSON, keyed by tool name, for example
`{"lookup_order": {"delay_seconds": 30}}` or `{"add_order_note": {"error_code": "BUSY", "retryable": true}}`.
Empty in production; tests start workers with a plan, or override the setting in-process.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings

from tools.envelope import ToolResult


@dataclass(frozen=True)
class ToolFault:
    delay_seconds: float = 0.0
    """Sleep this long before the adapter runs: a hanging tool, or a window to kill the worker in."""
    error_code: str | None = None
    """Instead of running the adapter, return this error."""
    retryable: bool = True
    """Whether the injected error is retryable."""
    crash_after_effect: bool = False
    """Raise after the adapter's effect and before the ledger records it (same transaction)."""
    delay_after_effect_seconds: float = 0.0
    """Sleep between the effect and its record: a window to kill the worker in."""


class InjectedCrash(Exception):
    """The fault plan's crash between a tool's effect and its record."""


@lru_cache(maxsize=4)
def _plan(raw: str) -> dict[str, ToolFault]:
    if not raw:
        return {}
    parsed = json.loads(raw)
    return {name: ToolFault(**spec) for name, spec in parsed.items()}


def tool_fault(tool_name: str) -> ToolFault | None:
    return _plan(settings.FAULT_PLAN).get(tool_name)


def injected_result(tool_name: str) -> ToolResult | None:
    """Apply the plan's fault for this tool: sleep, and/or return the error the adapter must not produce."""
    fault = tool_fault(tool_name)
    if fault is None:
        return None
    if fault.delay_seconds:
        time.sleep(fault.delay_seconds)
    if fault.error_code:
        return ToolResult.failure(fault.error_code, "injected fault", retryable=fault.retryable)
    return None


def after_effect_fault(tool_name: str) -> None:
    fault = tool_fault(tool_name)
    if fault is None:
        return
    if fault.delay_after_effect_seconds:
        time.sleep(fault.delay_after_effect_seconds)
    if fault.crash_after_effect:
        raise InjectedCrash(f"injected crash after the effect of {tool_name}")

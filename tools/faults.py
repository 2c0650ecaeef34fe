"""The fault plan: one switch for injected faults, read by the tool call path (and later the runtime).

Set through the FAULT_PLAN setting (environment variable) as JSON, keyed by tool name, for example
`{"lookup_order": {"delay_seconds": 30}}`. Empty in production; tests start workers with a plan.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings


@dataclass(frozen=True)
class ToolFault:
    delay_seconds: float = 0.0
    """Sleep this long before the adapter runs: a hanging tool, or a window to kill the worker in."""


@lru_cache(maxsize=1)
def _plan(raw: str) -> dict[str, ToolFault]:
    if not raw:
        return {}
    parsed = json.loads(raw)
    return {name: ToolFault(**spec) for name, spec in parsed.items()}


def tool_fault(tool_name: str) -> ToolFault | None:
    return _plan(settings.FAULT_PLAN).get(tool_name)


def apply_tool_fault(tool_name: str) -> None:
    fault = tool_fault(tool_name)
    if fault is not None and fault.delay_seconds:
        time.sleep(fault.delay_seconds)

"""The built-in `handoff_to_human` tool every agent has. The orchestrator acts on it; the adapter only records."""

from __future__ import annotations

from typing import Any

from tools.adapters.base import CallContext, ToolAdapter, register
from tools.envelope import ToolResult

HANDOFF_TOOL = "handoff_to_human"


@register
class HandoffToHuman(ToolAdapter):
    name = HANDOFF_TOOL
    description = (
        "Hand this task to a human operator when you cannot finish it safely. Give the reason and a short "
        "summary of what has been done so far."
    )
    parameters_schema = {
        "type": "object",
        "properties": {
            "reason": {"type": "string", "minLength": 1, "maxLength": 1000},
            "summary": {"type": "string", "maxLength": 4000},
        },
        "required": ["reason", "summary"],
        "additionalProperties": False,
    }
    result_schema = {
        "type": "object",
        "properties": {"handed_off": {"type": "boolean"}},
        "required": ["handed_off"],
    }

    def run(self, arguments: dict[str, Any], context: CallContext) -> ToolResult:
        return ToolResult.success({"handed_off": True})

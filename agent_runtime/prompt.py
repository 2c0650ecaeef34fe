"""How a task is put to the model as its first user message, and read back by the offline model."""

from __future__ import annotations

import json
from typing import Any

_INPUT_MARKER = "\n\nTask input (JSON):\n"


def compose_task_message(goal: str, task_input: dict[str, Any]) -> str:
    return f"{goal}{_INPUT_MARKER}{json.dumps(task_input, sort_keys=True)}"


def parse_task_message(text: str) -> tuple[str, dict[str, Any]]:
    goal, _, raw_input = text.partition(_INPUT_MARKER)
    try:
        parsed = json.loads(raw_input) if raw_input else {}
    except json.JSONDecodeError:
        parsed = {}
    return goal, parsed if isinstance(parsed, dict) else {}

"""How a task is put to the model as its first user message, and read back by the offline model."""

from __future__ import annotations

import json
from typing import Any

_INPUT_MARKER = "\n\nTask input (JSON):\n"


def compose_task_message(goal: str, task_input: dict[str, Any]) -> str:
    return f"{goal}{_INPUT_MARKER}{json.dumps(task_input, sort_keys=True)}"


def is_task_message(text: str) -> bool:
    return _INPUT_MARKER in text


def parse_task_message(text: str) -> tuple[str, dict[str, Any]]:
    goal, _, raw_input = text.partition(_INPUT_MARKER)
    try:
        parsed = json.loads(raw_input) if raw_input else {}
    except json.JSONDecodeError:
        parsed = {}
    return goal, parsed if isinstance(parsed, dict) else {}


OPERATOR_INSTRUCTION = "Instruction from a human operator: "
"""Starts the user message that carries an operator's instruction into a run (after a send-back)."""


def operator_instruction_item(text: str) -> dict[str, Any]:
    return {"role": "user", "content": f"{OPERATOR_INSTRUCTION}{text}"}


def instruction_text(item: dict[str, Any]) -> str | None:
    """The operator's instruction this input item carries, or None."""
    content = item.get("content")
    if item.get("role") == "user" and isinstance(content, str) and content.startswith(OPERATOR_INSTRUCTION):
        return content.removeprefix(OPERATOR_INSTRUCTION)
    return None

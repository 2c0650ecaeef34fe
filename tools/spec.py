"""What the model is shown of a tool, as plain data the agent runtime builds its function tools from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ToolSpec:
    """Exactly what the model sees of a tool: its contract's name, description and parameter schema."""

    name: str
    description: str
    parameters_schema: dict[str, Any]
    """A strict JSON Schema: every property required, no additional properties."""

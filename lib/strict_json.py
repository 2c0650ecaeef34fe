"""JSON that PostgreSQL can store and that a model or a client wrote: parsed strictly, NUL characters found."""

from __future__ import annotations

import json
from typing import Any


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def loads_strict(raw: str) -> Any:
    """json.loads for text a model wrote: NaN/Infinity, nesting too deep and over-long integers all raise
    ValueError (json.loads alone accepts the first and raises RecursionError for the second)."""
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def contains_nul(value: Any) -> bool:
    """True if any string (or key) holds a NUL character, which PostgreSQL text and jsonb cannot store."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(key) or contains_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(contains_nul(item) for item in value)
    return False


def without_nul(value: Any) -> Any:
    """The value with every NUL character replaced by U+FFFD, so it can be stored (snapshots only)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [without_nul(item) for item in value]
    return value

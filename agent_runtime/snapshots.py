"""Model responses to and from JSON, so a recorded turn can be replayed byte for byte."""

from __future__ import annotations

import json
from typing import Any

from agents import ModelResponse, Usage
from openai.types.responses import ResponseOutputItem
from pydantic import BaseModel, TypeAdapter

_OUTPUT_ITEMS: TypeAdapter[list[ResponseOutputItem]] = TypeAdapter(list[ResponseOutputItem])


def to_jsonable(value: Any) -> Any:
    """Pydantic models, dataclass-free containers and primitives, as plain JSON values."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


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


def response_to_snapshot(response: ModelResponse) -> dict[str, Any]:
    return {
        "output": to_jsonable(response.output),
        "usage": {
            "input_tokens": response.usage.input_tokens,
            "output_tokens": response.usage.output_tokens,
            "total_tokens": response.usage.total_tokens,
            "requests": response.usage.requests,
        },
        "response_id": response.response_id,
    }


def response_from_snapshot(snapshot: dict[str, Any]) -> ModelResponse:
    """Rebuild the response; usage is zero because a replayed turn costs nothing."""
    return ModelResponse(
        output=_OUTPUT_ITEMS.validate_python(snapshot["output"]),
        usage=Usage(),
        response_id=snapshot.get("response_id"),
    )

"""Model responses to and from JSON, so a recorded turn can be replayed byte for byte."""

from __future__ import annotations

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

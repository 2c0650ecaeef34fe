"""The one shape of every tool result: {ok, data, error_code, error_message, retryable}."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ToolResult:
    ok: bool
    data: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None
    retryable: bool = False

    @classmethod
    def success(cls, data: dict[str, Any]) -> ToolResult:
        return cls(ok=True, data=data)

    @classmethod
    def failure(cls, code: str, message: str, *, retryable: bool) -> ToolResult:
        return cls(ok=False, error_code=code, error_message=message, retryable=retryable)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ToolResult:
        return cls(
            ok=bool(raw.get("ok")),
            data=raw.get("data"),
            error_code=raw.get("error_code"),
            error_message=raw.get("error_message"),
            retryable=bool(raw.get("retryable")),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

"""The small base class every adapter implements, and the registry that finds them by tool name."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from tools.envelope import ToolResult


@dataclass(frozen=True)
class CallContext:
    """What an adapter knows about the call: never anything the model chose beyond its arguments."""

    idempotency_key: str
    """Pass this on to any outside service (e.g. as an `Idempotency-Key` header): one key, one effect."""
    trace_id: str
    task_id: str


class ToolAdapter(ABC):
    """One business action. Subclasses declare their contract and implement `run`.

    `run` returns a ToolResult for every expected outcome (not found, locked, ...); an exception means a bug
    or an outage and becomes an INTERNAL envelope at the call path.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    parameters_schema: ClassVar[dict[str, Any]]
    result_schema: ClassVar[dict[str, Any]]
    timeout_seconds: ClassVar[float] = 10.0

    @abstractmethod
    def run(self, arguments: dict[str, Any], context: CallContext) -> ToolResult: ...


_REGISTRY: dict[str, type[ToolAdapter]] = {}


def register(adapter: type[ToolAdapter]) -> type[ToolAdapter]:
    if adapter.name in _REGISTRY and _REGISTRY[adapter.name] is not adapter:
        raise ValueError(f"two adapters claim the tool name {adapter.name!r}")
    _REGISTRY[adapter.name] = adapter
    return adapter


def adapter_for(name: str) -> ToolAdapter | None:
    adapter = _REGISTRY.get(name)
    return adapter() if adapter is not None else None


def registered_adapters() -> list[type[ToolAdapter]]:
    return sorted(_REGISTRY.values(), key=lambda adapter: adapter.name)

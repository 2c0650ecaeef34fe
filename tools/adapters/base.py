"""The small base class every adapter implements, and the registry that finds them by name.

An adapter executes one business action. Its class attributes are the *default* contract, installed into the
database the first time (`contracts_install_defaults`); from then on the contract is edited in the admin and
the database version is what the agent sees and what calls are checked against.
"""

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
    timeout_seconds: float
    """The contract's timeout: give outside calls a client timeout no longer than this."""
    attempt: int = 1
    """Which attempt of this call (same key) this is: 2 and up are retries, or reruns after a lost worker."""
    redaction_scope: str = ""
    """Where the call's redaction tokens live: the ledger keeps the result as the model reads it, redacted."""
    agent_version: int | None = None
    """The number of the agent version the task runs on (the fault plan can single out a canary's calls)."""


class ToolAdapter(ABC):
    """Subclasses set `name` and the default contract, and implement `run`.

    `run` returns a ToolResult for every expected outcome (not found, locked, ...), using only codes of its
    contract's error dictionary; an exception means a bug or an outage and becomes an INTERNAL envelope.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    parameters_schema: ClassVar[dict[str, Any]]
    result_schema: ClassVar[dict[str, Any]]
    error_codes: ClassVar[list[dict[str, Any]]] = []
    timeout_seconds: ClassVar[float] = 10.0
    approval_mode: ClassVar[str] = "never"
    approval_rule: ClassVar[dict[str, Any] | None] = None
    sensitive_fields: ClassVar[list[str]] = []
    database_backed: ClassVar[bool] = True
    """True when every effect is a write to this database: the call path then runs `run` and writes the
    idempotency ledger in one transaction, so a crash can never apply the effect without recording it."""

    @abstractmethod
    def run(self, arguments: dict[str, Any], context: CallContext) -> ToolResult: ...

    @classmethod
    def default_contract(cls) -> dict[str, Any]:
        return {
            "description": cls.description,
            "parameters_schema": cls.parameters_schema,
            "result_schema": cls.result_schema,
            "error_codes": cls.error_codes,
            "timeout_seconds": cls.timeout_seconds,
            "approval_mode": cls.approval_mode,
            "approval_rule": cls.approval_rule,
            "sensitive_fields": cls.sensitive_fields,
        }


_REGISTRY: dict[str, type[ToolAdapter]] = {}


def register(adapter: type[ToolAdapter]) -> type[ToolAdapter]:
    if adapter.name in _REGISTRY and _REGISTRY[adapter.name] is not adapter:
        raise ValueError(f"two adapters claim the name {adapter.name!r}")
    _REGISTRY[adapter.name] = adapter
    return adapter


def adapter_for(name: str) -> ToolAdapter | None:
    adapter = _REGISTRY.get(name)
    return adapter() if adapter is not None else None


def registered_adapters() -> list[type[ToolAdapter]]:
    return sorted(_REGISTRY.values(), key=lambda adapter: adapter.name)

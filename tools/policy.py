"""How a tool is retried and when its circuit opens, as plain data: what a contract version says, and the
default a new contract starts from. Imports nothing from the app, so the models can use the defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int
    base_seconds: float
    cap_seconds: float


@dataclass(frozen=True)
class CircuitPolicy:
    failure_threshold: int
    """Failures within the window that open the circuit."""
    window_seconds: int
    open_seconds: int
    """How long the circuit stays open before one probe is let through."""


DEFAULT_RETRY = RetryPolicy(max_retries=3, base_seconds=1.0, cap_seconds=30.0)
"""A new contract's retries, and what a step whose contract is gone is retried with."""

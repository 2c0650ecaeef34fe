"""The circuit breaker's state machine, as pure functions over plain data (the stores only persist it).

closed --(threshold failures within the window)--> open --(open_seconds pass)--> half_open: one probe call
half_open --probe succeeds--> closed;  half_open --probe fails--> open again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tools.policy import CircuitPolicy

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
RECENT_FAILURES_KEPT = 10


@dataclass
class CircuitState:
    status: str = CLOSED
    failures: list[float] = field(default_factory=list)
    """Times of failures inside the current window."""
    open_until: float = 0.0
    probe_until: float = 0.0
    """While half-open: a probe is in flight until then (after that, another may go)."""
    recent: list[dict[str, Any]] = field(default_factory=list)
    """The last failures, newest first, for operators: {"at": ts, "code": ...}."""

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> CircuitState:
        return cls(**raw) if raw else cls()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def allow(state: CircuitState, *, now: float, probe_seconds: float) -> bool:
    """May a call go through now? Mutates `state` (open -> half_open, probe taken)."""
    if state.status == OPEN:
        if now < state.open_until:
            return False
        state.status = HALF_OPEN
        state.probe_until = 0.0
    if state.status == HALF_OPEN:
        if now < state.probe_until:
            return False
        state.probe_until = now + probe_seconds
    return True


def record(state: CircuitState, *, now: float, policy: CircuitPolicy, failed: bool, code: str | None) -> None:
    """Fold one call's outcome into the state."""
    if not failed:
        if state.status == HALF_OPEN:
            state.status, state.failures, state.probe_until = CLOSED, [], 0.0
        return
    state.recent = [{"at": now, "code": code}, *state.recent][:RECENT_FAILURES_KEPT]
    if state.status == HALF_OPEN:
        _open(state, now=now, policy=policy)
        return
    state.failures = [at for at in state.failures if at > now - policy.window_seconds] + [now]
    if len(state.failures) >= policy.failure_threshold:
        _open(state, now=now, policy=policy)


def _open(state: CircuitState, *, now: float, policy: CircuitPolicy) -> None:
    state.status = OPEN
    state.open_until = now + policy.open_seconds
    state.probe_until = 0.0
    state.failures = []

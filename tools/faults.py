"""The fault plan's tool faults, applied inside the call path (the plan itself: faults/plan.py).

An injected error is returned as if the adapter had returned it, so the contract's error dictionary decides what
follows, exactly as for a real failure. Hangs sleep on the worker's main thread, where the call's deadline
(SIGALRM) interrupts them, unless the rule says `uninterruptible`.
"""

from __future__ import annotations

import signal
import threading
import time

from faults.plan import Fault, active_plan
from tools.adapters.base import CallContext
from tools.envelope import ToolResult


class InjectedCrash(Exception):
    """The fault plan's crash between a tool's effect and its record."""


def tool_fault(tool_name: str, context: CallContext) -> Fault | None:
    return active_plan().tool_fault(
        tool_name, key=context.idempotency_key, attempt=context.attempt, agent_version=context.agent_version
    )


def before_effect(fault: Fault | None) -> ToolResult | None:
    """Apply a fault that strikes before the adapter runs; a result means the adapter must not run."""
    if fault is None:
        return None
    if fault.kind == "hang":
        _sleep(fault.seconds, uninterruptible=fault.uninterruptible)
    if fault.kind == "error":
        # Retryability is the dictionary's to decide; the call path overrides this flag from it.
        return ToolResult.failure(fault.code, fault.message, retryable=False)
    return None


def after_effect(fault: Fault | None, tool_name: str) -> None:
    """Apply a fault that strikes between the adapter's effect and its record in the ledger."""
    if fault is None:
        return
    if fault.kind == "hang_after_effect":
        _sleep(fault.seconds, uninterruptible=fault.uninterruptible)
    if fault.kind == "crash_after_effect":
        raise InjectedCrash(f"injected crash after the effect of {tool_name}")


def _sleep(seconds: float, *, uninterruptible: bool) -> None:
    if not uninterruptible or threading.current_thread() is not threading.main_thread():
        time.sleep(seconds)
        return
    # A pending SIGALRM is delivered when the mask is restored: the deadline fires late, as it would for a
    # call stuck in C code.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    try:
        time.sleep(seconds)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)

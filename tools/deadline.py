"""A hard deadline for a synchronous adapter call, whatever pool the worker runs.

On the main thread (Celery's prefork children, the test runner) a SIGALRM timer interrupts a hung call (a sleep,
a stuck socket read in Python code). Off it (Celery's threads pool) no signal can be used: the call runs on a
helper thread the caller stops waiting for at the deadline, and a `CommitGate` decides, once, between the caller
giving up and the call committing its result, so a database-backed call abandoned at its deadline rolls back
instead of committing behind the timeout it was recorded as. The server's own statement timeout ends a hung
statement there, so an abandoned call frees its locks and connection.
"""

from __future__ import annotations

import contextvars
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from types import FrameType
from typing import TypeVar

from django.db import connections

from lib.db import connection_release

logger = logging.getLogger(__name__)

T = TypeVar("T")

COMMIT_GRACE_SECONDS = 30.0
"""How long the caller waits, past the deadline, for a call that had already begun to commit when it expired."""


class DeadlineExceeded(Exception):
    pass


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """SIGALRM after `seconds`, on the main thread only (elsewhere it does nothing: see `call_with_deadline`)."""
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise DeadlineExceeded(f"no result within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class CommitGate:
    """Decides once between the caller giving up at the deadline and the call committing its result."""

    def __init__(self, *, seconds: float = 0, abandonable: bool = False) -> None:
        self.seconds = seconds
        self.abandonable = abandonable
        """True when the call runs on a helper thread its caller may stop waiting for."""
        self._lock = threading.Lock()
        self._state = "running"

    def commit_allowed(self) -> bool:
        """Called by the call before it commits: False once its caller has given up on it."""
        with self._lock:
            if self._state == "abandoned":
                return False
            self._state = "committing"
            return True

    def abandon(self) -> bool:
        """Called by the caller at the deadline: False if the call is already committing (its result stands)."""
        with self._lock:
            if self._state == "committing":
                return False
            self._state = "abandoned"
            return True


def call_with_deadline(seconds: float, work: Callable[[CommitGate], T]) -> T:
    """`work` within `seconds` (0: no deadline), or DeadlineExceeded: by SIGALRM on the main thread, else on a
    helper thread that is abandoned at the deadline (see the module's docstring)."""
    if seconds <= 0:
        return work(CommitGate())
    if threading.current_thread() is threading.main_thread():
        with deadline(seconds):
            return work(CommitGate(seconds=seconds))
    gate = CommitGate(seconds=seconds, abandonable=True)
    done: Future[T] = Future()

    def run() -> None:
        try:
            done.set_result(work(gate))
        except BaseException as exc:  # handed to the caller, who re-raises it
            done.set_exception(exc)
        finally:
            connections.close_all()  # this helper thread's connection: closed, or back to the pool

    connection_release()  # the caller holds no connection while it waits: the helper thread takes its own
    context = contextvars.copy_context()  # the fault plan, the trace, the log's bound fields
    threading.Thread(target=context.run, args=(run,), name="tool-call", daemon=True).start()
    try:
        return done.result(timeout=seconds)
    except FutureTimeout:
        if gate.abandon():
            logger.warning("tool call abandoned at its deadline; it rolls back if it still tries to commit")
            raise DeadlineExceeded(f"no result within {seconds:g} s") from None
        return done.result(timeout=COMMIT_GRACE_SECONDS)  # it was committing as the deadline passed

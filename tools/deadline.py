"""A hard deadline for a synchronous adapter call, by SIGALRM.

Celery's prefork children and the test runner run tool calls on their main thread, where a timer signal can
interrupt a hung call (a sleep, a stuck socket read in Python code). Off the main thread no signal can be
used; there the adapter's own client timeouts (given `context.timeout_seconds`) and the step lease bound it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class DeadlineExceeded(Exception):
    pass


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
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

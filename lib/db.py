"""Database connection discipline for runs that wait: hold a connection for a transaction, not for a wait."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.conf import settings
from django.db import connection

P = ParamSpec("P")
R = TypeVar("R")


def connection_release() -> None:
    """Hand this thread's connection back to the pool between transactions (DATABASE_POOL_MAX_SIZE). Without a
    pool the connection stays: closing it would cost a new one per transaction."""
    if settings.DATABASE_POOL_MAX_SIZE and not connection.in_atomic_block:
        connection.close()


def released(work: Callable[P, R]) -> Callable[P, R]:
    """`work`, then its thread's connection back to the pool (see `connection_release`)."""

    @functools.wraps(work)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return work(*args, **kwargs)
        finally:
            connection_release()

    return run

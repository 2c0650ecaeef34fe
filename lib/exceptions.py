"""Finding what an exception was really about, through the wrappers (SDK, asyncio, retries) around it."""

from __future__ import annotations

from typing import TypeVar

E = TypeVar("E", bound=BaseException)


def cause_of(exc: BaseException | None, kind: type[E]) -> E | None:
    """The first exception of `kind` in `exc` or its chain of causes, or None.

    Follows `__cause__` (raise ... from) and, where there is none, `__context__` (raised while handling),
    which is what a traceback shows (even after `raise ... from None`: the wrapped exception is still the
    reason). A chain can loop (an exception re-raised inside its own handler), so
    each exception is visited once.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None

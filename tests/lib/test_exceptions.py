"""cause_of: the exception of a kind anywhere in a chain of causes, whatever wraps it."""

from __future__ import annotations

import pytest

from lib.exceptions import cause_of


class Wanted(Exception):
    pass


def test_the_exception_itself_counts() -> None:
    wanted = Wanted()
    assert cause_of(wanted, Wanted) is wanted


def test_an_explicit_cause_is_followed() -> None:
    wanted = Wanted()
    try:
        try:
            raise wanted
        except Wanted as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as outer:
        assert cause_of(outer, Wanted) is wanted


def test_the_context_is_followed_when_there_is_no_cause() -> None:
    wanted = Wanted()
    try:
        try:
            raise wanted
        except Wanted:
            raise RuntimeError("while handling") from None
    except RuntimeError as outer:
        assert outer.__cause__ is None and outer.__context__ is wanted
        assert cause_of(outer, Wanted) is wanted


def test_the_cause_is_preferred_to_the_context() -> None:
    in_context, in_cause = Wanted("context"), Wanted("cause")
    outer = RuntimeError("outer")
    outer.__context__, outer.__cause__ = in_context, in_cause
    assert cause_of(outer, Wanted) is in_cause


def test_a_subclass_matches_and_the_nearest_is_returned() -> None:
    class Narrower(Wanted):
        pass

    near, far = Narrower("near"), Wanted("far")
    near.__cause__ = far
    outer = ValueError()
    outer.__cause__ = near
    assert cause_of(outer, Wanted) is near


def test_not_found_is_none() -> None:
    outer = RuntimeError("outer")
    outer.__cause__ = ValueError("inner")
    assert cause_of(outer, Wanted) is None
    assert cause_of(None, Wanted) is None


@pytest.mark.timeout(5)
def test_a_cycle_ends_the_search() -> None:
    first, second = RuntimeError("first"), ValueError("second")
    first.__cause__, second.__cause__ = second, first
    assert cause_of(first, Wanted) is None
    assert cause_of(first, ValueError) is second
    alone = RuntimeError("re-raised in its own handler")
    alone.__context__ = alone
    assert cause_of(alone, Wanted) is None

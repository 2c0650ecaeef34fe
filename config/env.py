"""Typed readers for environment variables: the one place settings come from.

Every reader fails with a `ConfigError` that names the variable and what was wrong, so a bad deploy stops at
start-up with one clear line instead of failing later in a request.
"""

from __future__ import annotations

import os
from decimal import Decimal, InvalidOperation
from typing import TypeVar
from urllib.parse import urlparse

_Number = TypeVar("_Number", int, float)


class ConfigError(Exception):
    """A setting read from the environment is missing or malformed."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name)
    if value is None or value == "":
        if default is None:
            raise ConfigError(f"{name} must be set")
        return default
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name} must be a boolean (true/false/1/0), got {raw!r}")


def _env_number(name: str, default: _Number, cast: type[_Number], minimum: _Number | None, kind: str) -> _Number:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {kind}, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    value = _env_number(name, default, int, minimum, "an integer")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, got {value}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    return _env_number(name, default, float, minimum, "a number")


def env_decimal(
    name: str,
    default: Decimal,
    *,
    minimum: Decimal | None = None,
    maximum: Decimal | None = None,
    places: int | None = None,
) -> Decimal:
    """An exact amount (money): read as a decimal, never through a float."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise ConfigError(f"{name} must be a decimal number, got {raw!r}") from None
    if not value.is_finite() or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ConfigError(f"{name} must be a number from {minimum} to {maximum}, got {raw!r}")
    if places is not None and value != value.quantize(Decimal(1).scaleb(-places)):
        raise ConfigError(f"{name} has at most {places} decimals, got {raw!r}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_url(name: str, default: str | None, *, schemes: set[str]) -> str:
    """A URL whose scheme is one of `schemes` (e.g. postgres, sqlite)."""
    value = env_str(name, default)
    scheme = urlparse(value).scheme
    if scheme not in schemes:
        allowed = ", ".join(sorted(schemes))
        raise ConfigError(f"{name} must be a URL with scheme {allowed}, got {scheme or 'none'!r}")
    return value

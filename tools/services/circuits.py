"""Circuit breakers shared by every worker: state in Redis (production) or the database (embedded mode).

Each update is an atomic read-modify-write of one tool's state: a Redis WATCH/MULTI transaction, or a row
locked with SELECT ... FOR UPDATE, so two workers can never both take the half-open probe.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import lru_cache
from typing import TypeVar

import redis
from django.conf import settings
from django.db import transaction

from tools.circuit import CircuitState, allow, record
from tools.contract import Contract
from tools.models import CircuitRecord

T = TypeVar("T")
_KEY = "circuit:{tool}"


@lru_cache(maxsize=2)
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def _update(tool: str, change: Callable[[CircuitState], T]) -> T:
    if settings.REDIS_URL:
        return _update_in_redis(tool, change)
    return _update_in_database(tool, change)


def _update_in_redis(tool: str, change: Callable[[CircuitState], T]) -> T:
    client, key = _redis(settings.REDIS_URL), _KEY.format(tool=tool)
    with client.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                raw = pipe.get(key)
                state = CircuitState.from_dict(json.loads(raw) if raw else None)
                outcome = change(state)
                pipe.multi()
                pipe.set(key, json.dumps(state.to_dict()))
                pipe.execute()
                return outcome
            except redis.WatchError:
                continue


def _update_in_database(tool: str, change: Callable[[CircuitState], T]) -> T:
    with transaction.atomic():
        row, _ = CircuitRecord.objects.select_for_update().get_or_create(tool=tool)
        state = CircuitState.from_dict(row.state)
        outcome = change(state)
        row.state = state.to_dict()
        row.save(update_fields=["state"])
    return outcome


def circuit_allow(contract: Contract) -> bool:
    """True if the call may go through (closed, or the one half-open probe)."""
    probe_seconds = contract.timeout_seconds + 5
    return _update(contract.name, lambda state: allow(state, now=time.time(), probe_seconds=probe_seconds))


def circuit_record(contract: Contract, *, failed: bool, code: str | None) -> None:
    _update(
        contract.name,
        lambda state: record(state, now=time.time(), policy=contract.circuit, failed=failed, code=code),
    )


def circuit_state(tool: str) -> CircuitState:
    """Read-only, for operators."""
    if settings.REDIS_URL:
        raw = _redis(settings.REDIS_URL).get(_KEY.format(tool=tool))
        return CircuitState.from_dict(json.loads(raw) if raw else None)
    row = CircuitRecord.objects.filter(tool=tool).first()
    return CircuitState.from_dict(row.state if row else None)


def circuit_reset(tool: str) -> None:
    """An operator closes the circuit by hand."""

    def close(state: CircuitState) -> None:
        state.__dict__.update(CircuitState(recent=state.recent).__dict__)

    _update(tool, close)

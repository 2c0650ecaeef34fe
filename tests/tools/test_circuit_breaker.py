"""The circuit breaker: its state machine, and one breaker shared by separate worker processes over Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis
from django.conf import settings

from tests.tools.circuit_probe import THRESHOLD
from tools.circuit import CLOSED, HALF_OPEN, OPEN, CircuitState, allow, record
from tools.policy import CircuitPolicy

ROOT = Path(__file__).resolve().parents[2]
POLICY = CircuitPolicy(failure_threshold=3, window_seconds=10, open_seconds=5)


def _fail(state: CircuitState, at: float) -> None:
    record(state, now=at, policy=POLICY, failed=True, code="TIMEOUT")


def test_opens_after_the_threshold_within_the_window() -> None:
    state = CircuitState()
    for at in (0.0, 1.0):
        _fail(state, at)
    assert state.status == CLOSED and allow(state, now=2.0, probe_seconds=1)
    _fail(state, 2.0)
    assert state.status == OPEN and not allow(state, now=3.0, probe_seconds=1)
    assert [failure["code"] for failure in state.recent] == ["TIMEOUT"] * 3


def test_failures_outside_the_window_do_not_count() -> None:
    state = CircuitState()
    for at in (0.0, 1.0, 11.5):
        _fail(state, at)
    assert state.status == CLOSED and len(state.failures) == 1


def test_half_open_lets_one_probe_through_then_closes_or_reopens() -> None:
    state = CircuitState()
    for at in (0.0, 0.1, 0.2):
        _fail(state, at)
    assert not allow(state, now=5.1, probe_seconds=2)
    assert allow(state, now=5.3, probe_seconds=2) and state.status == HALF_OPEN
    assert not allow(state, now=5.4, probe_seconds=2), "a second call while the probe is in flight"
    _fail(state, 5.5)
    assert state.status == OPEN and not allow(state, now=6.0, probe_seconds=2)
    assert allow(state, now=10.6, probe_seconds=2)
    record(state, now=10.7, policy=POLICY, failed=False, code=None)
    assert state.status == CLOSED and state.failures == [] and allow(state, now=10.8, probe_seconds=2)


def test_a_lost_probe_is_replaced_after_its_time() -> None:
    state = CircuitState(status=HALF_OPEN, probe_until=7.0)
    assert not allow(state, now=6.9, probe_seconds=2)
    assert allow(state, now=7.1, probe_seconds=2)


def _probe(tool: str, action: str, *, wait: bool = False) -> subprocess.Popen[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.test_settings", "REDIS_URL": settings.REDIS_URL}
    args = [sys.executable, "-m", "tests.tools.circuit_probe", tool, action, *(["--wait"] if wait else [])]
    return subprocess.Popen(args, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _result(process: subprocess.Popen[str]) -> dict[str, object]:
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    return json.loads(out.strip().splitlines()[-1])


def _ready(process: subprocess.Popen[str]) -> subprocess.Popen[str]:
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def test_two_worker_processes_share_one_breaker() -> None:
    tool = f"probe_{uuid.uuid4().hex[:8]}"
    try:
        for _ in range(THRESHOLD):  # process A's calls fail until the circuit opens
            _result(_probe(tool, "fail"))
        assert _result(_probe(tool, "allow")) == {"allowed": False}, "process B must fail fast"

        client = redis.Redis.from_url(settings.REDIS_URL)
        stored = json.loads(client.get(f"circuit:{tool}") or b"{}")
        assert stored["status"] == "open"
        # Two processes, both up, ask at once after the open period has ended (moved into the past here).
        racers = [_ready(_probe(tool, "allow", wait=True)) for _ in range(2)]
        client.set(f"circuit:{tool}", json.dumps({**stored, "open_until": time.time() - 1}))
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.write("go\n")
            racer.stdin.flush()
        answers = sorted(bool(_result(racer)["allowed"]) for racer in racers)
        assert answers == [False, True], "exactly one half-open probe"

        _result(_probe(tool, "succeed"))  # the probe succeeded: closed for everyone
        assert _result(_probe(tool, "allow")) == {"allowed": True}
        assert _result(_probe(tool, "allow")) == {"allowed": True}
    finally:
        redis.Redis.from_url(settings.REDIS_URL).delete(f"circuit:{tool}")

"""The real processes a benchmark drives: Celery worker nodes and a gunicorn web server, on the benchmark's own
database and Redis database, stopped however the benchmark ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _environment(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "INFO",  # as in production: every line a JSON object, redacted
        **extra,
    }


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@contextmanager
def celery_worker(
    *,
    database_url: str,
    redis_url: str,
    concurrency: int = 2,
    pool: str = "prefork",
    env: Mapping[str, str] | None = None,
) -> Iterator[None]:
    """One worker node with `concurrency` pool processes (or threads), ready when this yields; `env` adds to its
    environment (an endpoint to talk to, a pool size)."""
    log = Path(tempfile.mkstemp(prefix="bench-worker-", suffix=".log")[1])
    command = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", pool, "--concurrency", str(concurrency),
        "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING",
        "--hostname", f"bench-{uuid.uuid4().hex[:8]}@%h",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=_environment(database_url, redis_url, **(env or {})),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for(lambda: "ready." in log.read_text(errors="replace"), process, log, what="the worker")
        yield
    finally:
        _stop(process)


@contextmanager
def gunicorn(*, database_url: str, redis_url: str, port: int, workers: int = 3) -> Iterator[str]:
    """The web app behind gunicorn with the production config; yields its base URL once it answers."""
    log = Path(tempfile.mkstemp(prefix="bench-web-", suffix=".log")[1])
    metrics = tempfile.mkdtemp(prefix="bench-web-metrics-")
    env = _environment(
        database_url,
        redis_url,
        GUNICORN_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY=str(workers),
        PROMETHEUS_MULTIPROC_DIR=metrics,
    )
    command = [sys.executable, "-m", "gunicorn", "config.wsgi", "-c", "deploy/gunicorn.conf.py"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: _answers(f"{base}/healthz"), process, log, what="gunicorn")
        yield base
    finally:
        _stop(process)


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1)
        return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _wait_for(ready: object, process: subprocess.Popen[bytes], log: Path, *, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(ready) and ready():
            return
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited early:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"{what} was not ready within {timeout:g} s:\n{log.read_text(errors='replace')[-4000:]}")

"""A private Redis server for tests that restart or flush the broker, so nothing else on the machine notices."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import current_app
from kombu import pools


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """`redis-server` on a free loopback port, keeping nothing on disk, as production's broker would after a crash."""

    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH")
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self, *, down_seconds: float = 1.0) -> None:
        """Stop the server (every queued and unacknowledged message is gone with it) and start an empty one."""
        self.stop()
        time.sleep(down_seconds)
        self.start()
        self.restarts += 1

    def flush(self) -> None:
        redis.Redis.from_url(self.url).flushall()


@contextmanager
def celery_broker(url: str) -> Iterator[None]:
    """Point this process's Celery app (what `task_enqueue` and the sweeper send through) at another broker."""
    app: Any = current_app  # reaches into Celery's pools, which its types do not show
    previous = app.conf.broker_url

    def point_at(target: str) -> None:
        # kombu keeps producer and connection pools in a global registry: empty it, so neither broker's pools
        # (the private one is about to stop) are handed out after the switch.
        pools.reset()
        app.conf.broker_url = target
        app._pool = None
        app.amqp._producer_pool = None

    point_at(url)
    try:
        yield
    finally:
        point_at(previous)


@pytest.fixture
def private_redis(tmp_path: Path, settings: object) -> Iterator[RedisServer]:
    """A running private Redis; this process's broker and REDIS_URL point at it for the test."""
    server = RedisServer(tmp_path)
    server.start()
    settings.REDIS_URL = server.url  # type: ignore[attr-defined]
    try:
        with celery_broker(server.url):
            yield server
    finally:
        server.stop()

"""Real Celery worker processes for tests, pointed at the test database and the test Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from django.conf import settings
from django.db import connection

from orchestration.services.sweeper import tasks_sweep

ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    """The URL of the database pytest-django created (test_<name>), for processes outside this one."""
    db = connection.settings_dict
    credentials = quote(db["USER"] or "")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"])
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> list[int]:
        """The pids of the pool's processes, as the kernel lists them."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()] if path.exists() else []

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once, as the OOM killer or a lost node would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()


def _wait_ready(worker: WorkerProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "ready." in worker.log():
            return
        if worker.process.poll() is not None:
            raise RuntimeError(f"worker exited early:\n{worker.log()[-4000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"worker not ready within {timeout}s:\n{worker.log()[-4000:]}")


StartWorker = Callable[..., WorkerProcess]


def _process_environment(env_overrides: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.test_settings",
        DATABASE_URL=test_database_url(),
        REDIS_URL=settings.REDIS_URL,
        LOG_LEVEL="INFO",
    )
    env.update(env_overrides)
    return env


def _spawn(command: list[str], env: dict[str, str], log_path: Path) -> WorkerProcess:
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return WorkerProcess(process=process, log_path=log_path)


@pytest.fixture
def start_worker(transactional_db: None, tmp_path: Path) -> Iterator[StartWorker]:
    """Start real `celery worker` processes; every one is stopped when the test ends.

    Environment variables given as keyword arguments override the test settings (REDIS_URL, FAULT_PLAN, ...).
    """
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    started: list[WorkerProcess] = []

    def start(*, concurrency: int = 1, args: Sequence[str] = (), **env_overrides: str) -> WorkerProcess:
        command = [
            sys.executable, "-m", "celery", "-A", "config", "worker",
            "--pool", "prefork", "--concurrency", str(concurrency),
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--loglevel", "INFO", "--hostname", f"test-{uuid.uuid4().hex[:8]}@%h", *args,
        ]  # fmt: skip
        worker = _spawn(command, _process_environment(env_overrides), tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        _wait_ready(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def start_beat(transactional_db: None, tmp_path: Path) -> Iterator[StartWorker]:
    """Start a real `celery beat` (it schedules the sweeper, which a worker runs); stopped when the test ends."""
    started: list[WorkerProcess] = []

    def start(**env_overrides: str) -> WorkerProcess:
        schedule = tmp_path / f"beat-{len(started)}-schedule"
        command = [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO", "-s", str(schedule)]
        beat = _spawn(command, _process_environment(env_overrides), tmp_path / f"beat-{len(started)}.log")
        started.append(beat)
        return beat

    yield start
    for beat in started:
        beat.stop()


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float = 60,
    sweep: bool = False,
    describe: str = "condition",
    watch: Sequence[WorkerProcess] = (),
) -> None:
    """Poll `condition`; with sweep=True, also act as Celery beat and run the sweeper every second. Fails at once,
    with its log, if a process in `watch` exits."""
    deadline = time.monotonic() + timeout
    last_sweep = 0.0
    while time.monotonic() < deadline:
        if condition():
            return
        for process in watch:
            if process.process.poll() is not None:
                raise AssertionError(f"a worker process exited while waiting for {describe}:\n{process.log()[-4000:]}")
        if sweep and time.monotonic() - last_sweep >= 1.0:
            tasks_sweep()
            last_sweep = time.monotonic()
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {describe}")

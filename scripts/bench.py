"""`make bench`: the platform's benchmarks against PostgreSQL, Redis and real worker and web processes.

Prints one JSON document (the figures, and the machine they were measured on), then a readable table. Each
benchmark runs in a process and a database of its own (`bench_<name>`, created afresh; Redis database 13), and
can be run alone: `make bench ONLY=orchestration`. Figures come from the system's own records where there are
any (step and task timestamps in PostgreSQL), and are printed, never asserted: these machines are shared.

- orchestration: BENCH_TASKS tasks (300) of three steps (model turn, tool call, model turn: the offline model,
  no latency, and `lookup_order`, one indexed read) through one worker node of 2 processes: steps per second,
  the gap between one step's end and the next one's start, a step's own time, queries per step; and one task
  alone, submission to COMPLETED.
- submission: `POST /api/v1/tasks/` with idempotency keys against gunicorn (3 workers) at 1, 10 and 50
  concurrent clients: requests per second, p50 and p95.
- memory, admin: `scripts/bench_memory.py` and `scripts/bench_console.py`, smaller unless BENCH_FULL=1.
- concurrency: BENCH_CONCURRENCY_TASKS tasks (100) against a loopback OpenAI-compatible endpoint that answers
  after BENCH_MODEL_DELAY seconds (1), through each worker configuration of BENCH_CONCURRENCY_POOLS
  ("prefork:2,threads:100"; a threads node with the production connection pool of 8): model calls in flight,
  tasks per second, PostgreSQL connections the workers hold (`scripts/bench_concurrency.py`).
- growth: bytes per task and per step by table, and a retention pass over the older half (BENCH_GROWTH_TASKS
  tasks, 1,000): `scripts/bench_growth.py`.
- langgraph: the orchestration workload through LangGraph and its PostgreSQL checkpointer (durability "sync"),
  from its own environment (`.bench-venv`, which `make bench` installs): `scripts/bench_langgraph.py`. The table
  sets our steps per second beside its own, from the same run on the same machine.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ("orchestration", "langgraph", "submission", "concurrency", "growth", "memory", "admin")
BENCH_VENV_PYTHON = ROOT / ".bench-venv" / "bin" / "python"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    ordered = sorted(values)

    def at(share: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 2)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99)}


def _submit(owner: Any, goal: str, task_input: dict[str, Any]) -> Any:
    from orchestration.services.submission import task_submit
    from orchestration.tracing import new_trace_id

    return task_submit(
        owner=owner, goal=goal, task_input=task_input, session_id="", agent="default", metadata={},
        idempotency_key=f"bench-{uuid.uuid4().hex}", trace_id=new_trace_id(),
    ).task  # fmt: skip


def _settled(task_ids: list[Any], timeout: float) -> None:
    from orchestration.models import TERMINAL_STATES, Task, TaskState

    deadline = time.monotonic() + timeout
    done = [*TERMINAL_STATES, TaskState.MANUAL_REVIEW]
    while Task.objects.filter(pk__in=task_ids).exclude(state__in=done).exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"tasks did not settle within {timeout:g} s")
        time.sleep(0.01)


def orchestration(*, database_url: str, redis_url: str, tasks: int, alone: int = 20) -> dict[str, Any]:
    """Throughput and per-step overhead through real workers; queries per step in this process."""
    from django.contrib.auth.models import User

    from orchestration.models import Step, Task, TaskState
    from scripts.bench_processes import celery_worker
    from shop.services import orders_seed_demo

    orders_seed_demo()
    owner, _ = User.objects.get_or_create(username="bench-orchestration")
    goal, task_input = "Look up order A-1001", {"order_number": "A-1001"}
    queries = _queries_per_step(owner, goal, task_input)
    with celery_worker(database_url=database_url, redis_url=redis_url, concurrency=2):
        _settled([_submit(owner, goal, task_input).pk for _ in range(5)], timeout=60)  # warm the processes up
        latencies = []
        for _ in range(alone):
            task = _submit(owner, goal, task_input)
            _settled([task.pk], timeout=30)
            task.refresh_from_db()
            latencies.append((task.finished_at - task.created_at).total_seconds() * 1000)
        batch = [_submit(owner, goal, task_input).pk for _ in range(tasks)]
        _settled(batch, timeout=60 + tasks)
    steps = list(Step.objects.filter(task_id__in=batch).order_by("task_id", "seq").values_list(
        "task_id", "started_at", "finished_at"
    ))  # fmt: skip
    gaps = [
        (start - before_end).total_seconds() * 1000
        for (task, _, before_end), (same, start, _) in itertools.pairwise(steps)
        if task == same
    ]
    own = [(end - start).total_seconds() * 1000 for _, start, end in steps]
    span = (max(end for _, _, end in steps) - min(start for _, start, _ in steps)).total_seconds()
    completed = Task.objects.filter(pk__in=batch, state=TaskState.COMPLETED).count()
    return {
        "tasks": tasks,
        "completed": completed,
        "steps": len(steps),
        "steps_per_second": round(len(steps) / span, 1),
        "gap_between_steps_ms": percentiles(gaps),
        "step_own_ms": percentiles(own),
        "overhead_per_step_ms_p50": round(percentiles(gaps)["p50"] + percentiles(own)["p50"], 2),
        "queries_per_step": queries,
        "single_task_submit_to_completed_ms": percentiles(latencies),
        "worker": {"pool": "prefork", "processes": 2},
    }


def _queries_per_step(owner: Any, goal: str, task_input: dict[str, Any]) -> float:
    """Database queries a run makes per step, counted in this process on the worker's own code path."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from orchestration.models import Step
    from orchestration.services.execution import task_run

    task = _submit(owner, goal, task_input)
    with CaptureQueriesContext(connection) as captured:
        task_run(task_id=str(task.pk), worker="bench")
    return round(len(captured.captured_queries) / max(Step.objects.filter(task=task).count(), 1), 1)


def submission(*, database_url: str, redis_url: str, requests: int, port: int = 8765) -> dict[str, Any]:
    """Requests per second and latency of submissions over HTTP, at 1, 10 and 50 clients."""
    from django.contrib.auth.models import User

    from access.services import token_issue
    from scripts.bench_processes import gunicorn

    # A rate far above what the bench can send: it measures the service, not the throttle's refusals.
    submitter = User.objects.create_user("bench-submitter")
    token = token_issue(user=submitter, name="bench", scopes=["tasks:submit"], rate_per_minute=10**9).key
    figures: dict[str, Any] = {}
    with gunicorn(database_url=database_url, redis_url=redis_url, port=port) as base:
        for clients in (1, 10, 50):
            figures[f"{clients} clients"] = _load(base, token, clients=clients, requests=max(requests, clients * 4))
    return figures


def _load(base: str, token: str, *, clients: int, requests: int) -> dict[str, Any]:
    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()
    body = json.dumps({"goal": "Look up order A-1001", "input": {"order_number": "A-1001"}}).encode()

    def client(count: int) -> None:
        for _ in range(count):
            request = urllib.request.Request(
                f"{base}/api/v1/tasks/", data=body, method="POST",
                headers={"Authorization": f"Token {token}", "Content-Type": "application/json",
                         "Idempotency-Key": uuid.uuid4().hex},
            )  # fmt: skip
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    status = response.status
            except urllib.error.HTTPError as error:
                status = error.code
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(elapsed)
                if status != 201:
                    failures.append(status)

    threads = [threading.Thread(target=client, args=(requests // clients,)) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "requests_per_second": round(len(latencies) / wall, 1),
        "latency_ms": percentiles(latencies),
        "not_201": len(failures),
    }


def langgraph(*, tasks: int, database: str = "bench_langgraph") -> dict[str, Any]:
    """The peer's figures, from its own environment: it shares no package with the project."""
    if not BENCH_VENV_PYTHON.exists():
        raise SystemExit(f"{BENCH_VENV_PYTHON} is missing: `make bench-env` installs LangGraph's environment")
    url = os.environ.get("BENCH_LANGGRAPH_DATABASE_URL", f"postgres://root@127.0.0.1:5432/{database}")
    command = [str(BENCH_VENV_PYTHON), str(ROOT / "scripts" / "bench_langgraph.py"), "--database-url", url]
    done = subprocess.run([*command, "--tasks", str(tasks)], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the LangGraph benchmark failed:\n{done.stderr[-4000:]}")
    figures: dict[str, Any] = json.loads(done.stdout)["langgraph"]
    return figures


def run_one(name: str) -> dict[str, Any]:
    """One benchmark, in this process, on a fresh database of its own."""
    full = os.environ.get("BENCH_FULL") == "1"
    if name == "memory":
        os.environ.setdefault("BENCH_TURNS", "200" if full else "60")
    if name == "admin":
        os.environ.setdefault("BENCH_TASKS", "100000" if full else "20000")
    sys.path.insert(0, str(ROOT))
    os.environ["REDIS_URL"] = REDIS_URL
    from scripts.bench_setup import bench_django

    bench_django(f"bench_{name}")
    database_url = os.environ["DATABASE_URL"]
    try:
        if name == "orchestration":
            tasks = int(os.environ.get("BENCH_TASKS", "300"))
            return orchestration(database_url=database_url, redis_url=REDIS_URL, tasks=tasks)
        if name == "submission":
            requests = int(os.environ.get("BENCH_REQUESTS", "300"))
            return submission(database_url=database_url, redis_url=REDIS_URL, requests=requests)
        if name == "concurrency":
            from scripts.bench_concurrency import concurrency, parse_pools

            return concurrency(
                database_url=database_url,
                redis_url=REDIS_URL,
                tasks=int(os.environ.get("BENCH_CONCURRENCY_TASKS", "100")),
                delay=float(os.environ.get("BENCH_MODEL_DELAY", "1")),
                pools=parse_pools(os.environ.get("BENCH_CONCURRENCY_POOLS", "prefork:2,threads:100")),
            )
        if name == "growth":
            from scripts.bench_growth import growth

            return growth(tasks=int(os.environ.get("BENCH_GROWTH_TASKS", "1000")))
        if name == "memory":
            from scripts.bench_memory import run

            return run(int(os.environ["BENCH_TURNS"]))
        from scripts.bench_console import figures_for

        return figures_for(tasks=int(os.environ["BENCH_TASKS"]))
    finally:
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    packages = ("django", "celery", "openai-agents", "psycopg", "gunicorn")
    postgres = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip()
    redis_server = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split(" ")
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgres_client": postgres,
        "redis": next((part.removeprefix("v=") for part in redis_server if part.startswith("v=")), "unknown"),
        **{name: version(name) for name in packages},
    }


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":  # a child: one benchmark, its figures as the last line
        os.environ.setdefault("LOG_LEVEL", "WARNING")
        print(json.dumps(run_one(sys.argv[2])))
        return
    chosen = [name.strip() for name in os.environ.get("ONLY", "").split(",") if name.strip()] or list(BENCHMARKS)
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    report: dict[str, Any] = {"machine": machine(), "benchmarks": {}}
    for name in chosen:
        print(f"running {name}...", file=sys.stderr)
        if name == "langgraph":  # its own environment, its own process: no Django child
            report["benchmarks"][name] = langgraph(tasks=int(os.environ.get("BENCH_TASKS", "300")))
            continue
        done = subprocess.run([sys.executable, __file__, "--one", name], cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"benchmark {name} failed:\n{done.stderr[-4000:]}")
        report["benchmarks"][name] = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=2))
    print()
    sys.path.insert(0, str(ROOT))
    from scripts.bench_table import table

    for line in table(report["benchmarks"]):
        print(line)


if __name__ == "__main__":
    main()

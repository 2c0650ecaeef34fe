"""Concurrency under model latency: how many model calls one worker host keeps in flight, and what it holds.

The demo task "Look up order A-1001" (a model turn that calls `lookup_order`, the tool call, a model turn that
answers) runs through the SDK's real OpenAI model class against a loopback OpenAI-compatible endpoint that answers
every request after `delay` seconds (`scripts/loopback_openai.py`). For each worker configuration (pool,
concurrency), one worker node (or `nodes` side by side) is started on this host, warmed up, and `tasks` tasks are
submitted at once:

- tasks per second: completed tasks over the span from the first one's submission to the last one's end, read
  from the tasks' own timestamps;
- model calls in flight: from the endpoint's record of every request (arrival, answer): the mean is the
  requests' summed durations over the span from the first arrival to the last answer; the steady mean is the
  same over the middle 80 % of that span (no ramp up, no tail); and the most at once. By Little's law the mean is
  model calls per second times the delay: it is bounded by the CPU each task costs as much as by the pool;
- PostgreSQL connections held: `pg_stat_activity` for the benchmark's database, sampled every 100 ms while the
  tasks run, leaving out this process's own connections: the mean and the most (the workers' own, tagged with
  PGAPPNAME, are also counted apart as a check).

Run alone: `.venv/bin/python scripts/bench_concurrency.py --tasks 60 --delay 1 --pool prefork --concurrency 2
--pool threads --concurrency 50` (its own database and Redis database; see `--help`). Figures are printed, never
asserted: these machines are shared.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import uuid
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scripts.loopback_openai import LoopbackModel

ROOT = Path(__file__).resolve().parent.parent

AGENT = "bench-loopback"
"""An agent of the benchmark's own, so the default agent (and the offline model) stay as they are."""
MODEL = "bench-loopback-model"
GOAL, TASK_INPUT = "Look up order A-1001", {"order_number": "A-1001"}
WORKER_APPLICATION = "bench-concurrency-worker"
"""libpq's application_name for every connection of the worker under test (PGAPPNAME), to tell them apart."""
SAMPLE_SECONDS = 0.1
DEFAULT_POOLS = [("prefork", 2), ("threads", 50)]
WARM_UP_TASKS = 2
THREADS_POOL_ENV = {"DATABASE_POOL_MAX_SIZE": "8"}
"""A threads-pool node as the README's production setting runs it: a pooled connection per transaction."""


def concurrency(
    *,
    database_url: str,
    redis_url: str,
    tasks: int,
    delay: float,
    pools: list[tuple[str, int]],
    worker_env: Mapping[str, str] | None = None,
    nodes: int = 1,
) -> dict[str, Any]:
    """The figures of each (pool, concurrency) configuration, one configuration at a time, on one endpoint.

    `nodes` worker nodes of that configuration run side by side on this host (one per core, say); `worker_env`
    adds environment variables to the workers' (a settings module to try, say)."""
    from django.contrib.auth.models import User

    from scripts.loopback_openai import LoopbackModel
    from shop.services import orders_seed_demo

    orders_seed_demo()
    _agent_install()
    owner, _ = User.objects.get_or_create(username="bench-concurrency")
    figures: dict[str, Any] = {"tasks": tasks, "model_delay_seconds": delay, "configurations": {}}
    with LoopbackModel(delay=delay) as endpoint:
        for pool, slots in pools:
            name = f"{pool} -c {slots}" + (f" x{nodes}" if nodes > 1 else "")
            figures["configurations"][name] = _configuration(
                database_url=database_url, redis_url=redis_url, endpoint=endpoint, owner=owner, tasks=tasks,
                delay=delay, pool=pool, concurrency=slots, nodes=nodes, worker_env=worker_env or {},
            )  # fmt: skip
    return figures


def _agent_install() -> None:
    """The benchmark's agent, on a model served by the configured endpoint, at zero price (no cost warnings)."""
    from agent_runtime.catalog import DEFAULT_INSTRUCTIONS
    from agent_runtime.models import AgentConfig, ModelPrice
    from agent_runtime.services import agent_create

    ModelPrice.objects.get_or_create(model=MODEL)
    if not AgentConfig.objects.filter(name=AGENT).exists():
        values = {"instructions": DEFAULT_INSTRUCTIONS, "model": MODEL, "max_turns": 12}
        agent_create(name=AGENT, values=values, user=None)


def _configuration(
    *,
    database_url: str,
    redis_url: str,
    endpoint: LoopbackModel,
    owner: Any,
    tasks: int,
    delay: float,
    pool: str,
    concurrency: int,
    nodes: int,
    worker_env: Mapping[str, str],
) -> dict[str, Any]:
    from orchestration.models import Task, TaskState
    from scripts.bench_processes import celery_worker
    from scripts.pg_connections import ConnectionSampler

    env = {
        "OPENAI_BASE_URL": endpoint.base_url,
        "OPENAI_API_KEY": "",
        "OPENAI_API_STYLE": "responses",
        "MEMORY_SUMMARIZER": "extractive",  # two model requests a task, no summary request
        "PGAPPNAME": WORKER_APPLICATION,
        **(THREADS_POOL_ENV if pool == "threads" else {}),
        **worker_env,
    }
    rounds = math.ceil(tasks / max(1, min(concurrency * nodes, tasks)))
    timeout = 60 + 3 * rounds * (2 * delay + 1)
    with ExitStack() as workers:
        for _ in range(nodes):
            workers.enter_context(
                celery_worker(
                    database_url=database_url, redis_url=redis_url, pool=pool, concurrency=concurrency, env=env
                )
            )
        _settle([_submit(owner) for _ in range(WARM_UP_TASKS * nodes)], timeout=60 + 4 * delay)
        endpoint.reset()
        with ConnectionSampler(database_url, application=WORKER_APPLICATION) as sampler:
            started = time.monotonic()
            batch = [_submit(owner) for _ in range(tasks)]
            settled = _settle(batch, timeout=timeout)
            wall = time.monotonic() - started
    rows = list(Task.objects.filter(pk__in=batch).values_list("state", "created_at", "finished_at"))
    completed = [(created, finished) for state, created, finished in rows if state == TaskState.COMPLETED]
    span = (max(f for _, f in completed) - min(c for _, c, _ in rows)).total_seconds() if completed else 0.0
    latencies = sorted((f - c).total_seconds() for c, f in completed)
    states: dict[str, int] = {}
    for state, _, _ in rows:
        states[state] = states.get(state, 0) + 1
    return {
        "pool": pool,
        "concurrency": concurrency,
        "nodes": nodes,
        "settled_in_time": settled,
        "states": states,
        "tasks_per_second": round(len(completed) / span, 2) if span > 0 else 0.0,
        "wall_seconds": round(wall, 2),
        "submit_to_completed_s": {"p50": _at(latencies, 0.5), "p95": _at(latencies, 0.95)},
        "model_calls": endpoint.figures(),
        "pg_connections": sampler.figures(),
    }


def _at(ordered: list[float], share: float) -> float:
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 2) if ordered else 0.0


def _submit(owner: Any) -> str:
    from orchestration.services.submission import task_submit
    from orchestration.tracing import new_trace_id

    return str(
        task_submit(
            owner=owner, goal=GOAL, task_input=TASK_INPUT, session_id="", agent=AGENT, metadata={},
            idempotency_key=f"bench-concurrency-{uuid.uuid4().hex}", trace_id=new_trace_id(),
        ).task.pk
    )  # fmt: skip


def _settle(task_ids: list[str], *, timeout: float) -> bool:
    """Wait until every task has settled (ended or in the manual queue); False if `timeout` passed first."""
    from orchestration.models import TERMINAL_STATES, Task, TaskState

    done = [*TERMINAL_STATES, TaskState.MANUAL_REVIEW]
    deadline = time.monotonic() + timeout
    while Task.objects.filter(pk__in=task_ids).exclude(state__in=done).exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(SAMPLE_SECONDS)  # not faster: this process's queries must not load the database under test
    return True


def parse_pools(text: str) -> list[tuple[str, int]]:
    """`prefork:2,threads:50` -> [("prefork", 2), ("threads", 50)] (for BENCH_CONCURRENCY_POOLS)."""
    pools = []
    for part in text.split(","):
        pool, _, slots = part.strip().partition(":")
        if pool and slots:
            pools.append((pool, int(slots)))
    return pools or list(DEFAULT_POOLS)


def table(figures: dict[str, Any]) -> list[str]:
    lines = [f"concurrency  {figures['tasks']} tasks, model answers after {figures['model_delay_seconds']:g} s"]
    for name, c in figures["configurations"].items():
        calls, held = c["model_calls"], c["pg_connections"]
        lines.append(
            f"  {name:<14} {c['tasks_per_second']:>6} tasks/s  model calls in flight mean {calls['in_flight_mean']}"
            f" (steady {calls['in_flight_steady_mean']}) max {calls['in_flight_max']}"
            f"  PostgreSQL connections mean {held['mean']} max {held['max']}"
            + ("" if c["settled_in_time"] else "  (did not settle in time)")
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=60)
    parser.add_argument("--delay", type=float, default=1.0, help="seconds before the endpoint answers")
    parser.add_argument("--pool", action="append", help="a Celery pool; repeat, paired with --concurrency")
    parser.add_argument("--concurrency", action="append", type=int)
    parser.add_argument("--database-url", default="postgres://root@127.0.0.1:5432/bench_concurrency_helper")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    parser.add_argument("--nodes", type=int, default=1, help="worker nodes of each configuration side by side")
    parser.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE", help="for the workers")
    args = parser.parse_args(argv)
    pools = list(DEFAULT_POOLS)
    if args.pool or args.concurrency:
        if len(args.pool or []) != len(args.concurrency or []):
            parser.error("give one --concurrency for every --pool")
        pools = list(zip(args.pool, args.concurrency, strict=True))
    sys.path.insert(0, str(ROOT))  # run as a script: the project importable, as scripts/bench.py does
    os.environ["DATABASE_URL"] = args.database_url
    os.environ["REDIS_URL"] = args.redis_url
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    from scripts.bench_setup import bench_django

    bench_django(args.database_url.rsplit("/", 1)[1])
    import redis

    try:
        figures = concurrency(
            database_url=args.database_url, redis_url=args.redis_url, tasks=args.tasks, delay=args.delay, pools=pools,
            worker_env=dict(item.split("=", 1) for item in args.worker_env), nodes=args.nodes,
        )  # fmt: skip
    finally:
        redis.Redis.from_url(args.redis_url).flushdb()
    print(json.dumps(figures, indent=2))
    print()
    for line in table(figures):
        print(line)


if __name__ == "__main__":
    main()

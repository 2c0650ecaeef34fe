"""`make bench`, run tiny as a smoke check: real workers and a real gunicorn on the test database; every figure
is reported. The figures themselves are read from `make bench`, never asserted here (shared, noisy machines)."""

from __future__ import annotations

import pytest
from django.conf import settings

from tests import workers
from tests.benches import bench_script

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_the_orchestration_benchmark_reports_throughput_overhead_and_queries() -> None:
    figures = bench_script("bench").orchestration(
        database_url=workers.test_database_url(), redis_url=settings.REDIS_URL, tasks=6, alone=2
    )
    assert figures["completed"] == 6 and figures["steps"] == 18
    assert figures["steps_per_second"] > 0 and figures["queries_per_step"] > 0
    assert set(figures["gap_between_steps_ms"]) == {"p50", "p95", "p99"}


def test_the_submission_benchmark_posts_at_every_concurrency() -> None:
    figures = bench_script("bench").submission(
        database_url=workers.test_database_url(), redis_url=settings.REDIS_URL, requests=4, port=8766
    )
    assert set(figures) == {"1 clients", "10 clients", "50 clients"}
    assert all(level["not_201"] == 0 and level["requests"] >= 4 for level in figures.values())


def test_the_langgraph_benchmark_runs_the_same_workload_side_by_side() -> None:
    figures = bench_script("bench").langgraph(tasks=4, database="test_bench_langgraph")
    assert figures["durability"] == "sync"
    for run in ("one_process", "two_processes"):
        assert figures[run]["steps"] == 12 and figures[run]["steps_per_second"] > 0


def test_the_concurrency_benchmark_counts_calls_in_flight_and_connections_held() -> None:
    figures = bench_script("bench_concurrency").concurrency(
        database_url=workers.test_database_url(),
        redis_url=settings.REDIS_URL,
        tasks=3,
        delay=0.1,
        pools=[("threads", 3)],
    )
    run = figures["configurations"]["threads -c 3"]
    assert run["settled_in_time"] and run["model_calls"]["requests"] == 6
    assert run["model_calls"]["in_flight_max"] >= 1 and run["pg_connections"]["max"] >= 1

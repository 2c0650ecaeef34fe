"""The console benchmark (make bench-console), run small as a smoke check: it seeds, every page answers, and it
reports its figures. Its speed is read from `make bench-console`, never asserted here (shared, noisy machines)."""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.benches import bench_script

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("queue_groups")]


def _bench() -> ModuleType:
    return bench_script("bench_console")


def test_the_console_benchmark_seeds_and_measures_every_page() -> None:
    bench = _bench()
    long_task = bench.seed(tasks=60, queued=10, steps=12)
    figures = bench.measure(requests=2, long_task=long_task)
    assert set(figures) == {"queue", "queue, one reason", "queue, search", "task page"}
    for page in figures.values():
        assert page["p50_ms"] > 0 and page["queries"] > 0 and page["bytes"] > 0

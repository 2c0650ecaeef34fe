"""The growth benchmark (scripts/bench_growth.py), run small as a smoke check: it runs tasks, measures the tables,
prunes the older half and sees the space reused. Its figures mean something only over many tasks (page-granular
sizes): they are read from the benchmark, never asserted here."""

from __future__ import annotations

import pytest

from tests.benches import bench_script

pytestmark = pytest.mark.django_db(transaction=True)  # VACUUM cannot run inside a transaction


def test_the_growth_benchmark_measures_and_prunes(demo_orders: None) -> None:
    figures = bench_script("bench_growth").growth(tasks=6)
    assert (figures["tasks"], figures["steps"]) == (6, 18)
    assert figures["disk_bytes_per_task"] > 0 and figures["row_bytes_per_task"] > 0
    assert "orchestration_step" in figures["top_tables"]
    retention = figures["retention"]
    assert retention["tasks_pruned"] == 3 + 3, "the older half and the three warm-up tasks"
    assert retention["rows_deleted_by_table"]["orchestration_step"] == 18
    assert retention["disk_bytes_right_after"] == retention["disk_bytes_before"], "a DELETE shrinks no file"
    assert retention["regrowth"]["tasks"] == 6

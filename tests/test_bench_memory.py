"""The memory benchmark (make bench-memory), run small as a smoke check: both conversations run through the real
path and every figure is reported. The figures themselves are read from `make bench-memory`, not asserted here."""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.benches import bench_script

pytestmark = pytest.mark.django_db


def _bench() -> ModuleType:
    return bench_script("bench_memory")


def test_the_memory_benchmark_runs_both_conversations_and_reports_every_figure() -> None:
    figures = _bench().run(24)
    assert set(figures["input_tokens"]) == {"memory", "naive"}
    assert figures["input_tokens"]["memory"]["10"] > 0 and figures["stored_bytes"]["naive"]["10"] > 0
    assert figures["late_turn"] == 19
    assert set(figures["late_turn_facts_present_pct"]) == {"memory", "naive"}

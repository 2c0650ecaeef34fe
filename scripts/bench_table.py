"""`make bench`'s readable table, from the figures of its JSON document."""

from __future__ import annotations

from typing import Any


def table(benchmarks: dict[str, Any]) -> list[str]:
    lines = []
    if "orchestration" in benchmarks:
        o = benchmarks["orchestration"]
        lines += [
            f"orchestration  {o['steps_per_second']} steps/s ({o['steps']} steps, 2 worker processes)",
            f"  gap between steps ms  p50 {o['gap_between_steps_ms']['p50']}  p95 {o['gap_between_steps_ms']['p95']}"
            f"  p99 {o['gap_between_steps_ms']['p99']}",
            f"  a step's own ms       p50 {o['step_own_ms']['p50']}  p95 {o['step_own_ms']['p95']}",
            f"  queries per step      {o['queries_per_step']}",
            f"  one task, submit to COMPLETED ms  p50 {o['single_task_submit_to_completed_ms']['p50']}"
            f"  p95 {o['single_task_submit_to_completed_ms']['p95']}",
        ]
    if "langgraph" in benchmarks:
        peer = benchmarks["langgraph"]["two_processes"]
        lines.append(
            f"langgraph  {peer['steps_per_second']} steps/s (PostgresSaver, durability sync, 2 processes); gap p50"
            f" {peer['gap_between_steps_ms']['p50']} ms; one workflow p50"
            f" {benchmarks['langgraph']['one_process']['workflow_latency_ms']['p50']} ms"
        )
        if "orchestration" in benchmarks:
            ratio = benchmarks["orchestration"]["steps_per_second"] / max(peer["steps_per_second"], 0.1)
            lines.append(f"  ours over langgraph's steps per second: {ratio:.2f}x (target: at least 1.5x)")
    for clients, figures in benchmarks.get("submission", {}).items():
        latency = figures["latency_ms"]
        lines.append(
            f"submission  {clients:>10}  {figures['requests_per_second']} req/s  p50 {latency['p50']} ms"
            f"  p95 {latency['p95']} ms  ({figures['not_201']} not 201)"
        )
    if "concurrency" in benchmarks:
        from scripts.bench_concurrency import table as concurrency_table

        lines += concurrency_table(benchmarks["concurrency"])
    if "growth" in benchmarks:
        g = benchmarks["growth"]
        pruned = g["retention"]
        lines.append(
            f"growth  {g['disk_bytes_per_task']} B on disk per task ({g['occupied_bytes_per_task']} B occupied),"
            f" {g['disk_bytes_per_step_step_table']} B per step in the step table; retention"
            f" {pruned['tasks_per_second']} tasks/s in {pruned['batches']} batches"
        )
    if "memory" in benchmarks:
        m = benchmarks["memory"]
        lines.append(
            f"memory  turn {m['turns']}/turn 10 tokens: {m['memory_tokens_last_over_turn_10']} (naive "
            f"{m['naive_tokens_last_over_turn_10']}); late turn facts {m['late_turn_facts_present_pct']['memory']} %"
        )
    for page, figures in benchmarks.get("admin", {}).items():
        if isinstance(figures, dict):
            lines.append(f"admin  {page:<20} p50 {figures['p50_ms']} ms  p95 {figures['p95_ms']} ms")
    return lines

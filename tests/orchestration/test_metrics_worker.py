"""A real prefork worker's metrics: counted in its children, served by its parent, and still equal to the journal
after a child is SIGKILLed mid-step and others are recycled (`--max-tasks-per-child`)."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from prometheus_client import REGISTRY

from orchestration.models import RecoveryDecision, RecoveryEvent, Step, StepState, Task, TaskTransition
from shop.services import orders_seed_demo
from tests.factories import submit_task
from tests.faults.checks import all_settled, reloaded
from tests.faults.test_flaky_tools import LOOKUP_AND_NOTE, PLAN, REFUND, _declare_flaky_upstreams
from tests.metrics_journal import Samples, reconciliation_problems
from tests.workers import StartWorker, WorkerProcess, wait_until
from tools.models import ToolContract
from tools.services.contracts import contract_update

pytestmark = pytest.mark.worker

TASKS = 24
_FLAKY: dict[str, list[dict[str, Any]]] = PLAN["tools"]  # type: ignore[assignment]
# The flaky suite's plan, each call lingering a little so the kill below lands inside one.
SLOW_PLAN = {**PLAN, "tools": {tool: [{"fault": "hang", "seconds": 0.3}, *faults] for tool, faults in _FLAKY.items()}}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _running_call(tasks: list[Task]) -> Step | None:
    running = Step.objects.select_related("task").filter(task__in=tasks, state=StepState.RUNNING, kind="tool_call")
    return running.exclude(task__lease_owner="").first()


def _kill_inside_a_call(worker: WorkerProcess, tasks: list[Task]) -> tuple[Step, int]:
    """SIGKILL the child running a tool call, and make sure the kill landed inside it (the call may end, or its
    child be recycled, just before the signal: then try again on another)."""
    for _ in range(20):
        wait_until(lambda: _running_call(tasks) is not None, timeout=60, describe="a tool call running", watch=[worker])
        call = _running_call(tasks)
        if call is None:
            continue
        victim = int(call.task.lease_owner.rsplit(":", 1)[1])
        if victim not in worker.children():
            continue
        os.kill(victim, signal.SIGKILL)
        wait_until(functools.partial(_gone, worker, victim), timeout=10, describe="the child gone")
        call.refresh_from_db()
        if call.state == StepState.RUNNING:
            return call, victim
    raise AssertionError("no kill landed inside a tool call in 20 tries")


def _gone(worker: WorkerProcess, pid: int) -> bool:
    return pid not in worker.children()


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def test_worker_counters_equal_the_journal_across_killed_and_recycled_children(
    start_worker: StartWorker, tmp_path: Path
) -> None:
    orders_seed_demo()
    _declare_flaky_upstreams()
    for tool in ("lookup_order", "add_order_note", "refund_order"):
        contract_update(contract=ToolContract.objects.get(name=tool), values={"timeout_seconds": 2.0}, user=None)
    metrics_dir, port = tmp_path / "metrics", _free_port()
    (metrics_dir / "stale").mkdir(parents=True)
    (metrics_dir / "counter_pool0.db").write_bytes(b"left over by a previous run")
    worker = start_worker(
        concurrency=2,
        args=["--max-tasks-per-child", "6"],
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        CELERY_METRICS_PORT=str(port),
        CELERY_METRICS_ADDRESS="127.0.0.1",
        FAULT_PLAN=json.dumps(SLOW_PLAN),
        STEP_LEASE_SECONDS="3",
        STEP_DEADLINE_GRACE_SECONDS="2",
        MODEL_CALL_TIMEOUT_SECONDS="5",
    )
    here_before = Samples.of(REGISTRY.collect())  # this process submits and sweeps, as the web app and beat would
    owner = User.objects.create_user("metrics-client")
    goals: list[tuple[str, dict[str, Any]]] = [LOOKUP_AND_NOTE[:2], REFUND[:2], LOOKUP_AND_NOTE[:2]]
    tasks = [submit_task(owner, goal=goal, task_input=dict(data)) for goal, data in goals * (TASKS // 3)]

    interrupted, victim = _kill_inside_a_call(worker, tasks)
    wait_until(lambda: all_settled(tasks), sweep=True, timeout=240, describe="every task settled", watch=[worker])

    samples = Samples.parse(_scrape(port)).plus(Samples.of(REGISTRY.collect()).minus(here_before))
    assert reconciliation_problems(samples, reloaded(tasks)) == []
    assert samples.sum("agent_steps_total", outcome="failed") > 0, "no step failed: the batch proved little"
    lost = RecoveryDecision.objects.filter(step=interrupted, event=RecoveryEvent.STEP_LOST, attempt=interrupted.attempt)
    assert lost.exists(), "the killed child's step was taken back as lost"
    children = {
        actor.rsplit(":", 1)[1]
        for actor in TaskTransition.objects.filter(task__in=tasks).values_list("actor", flat=True)
        if actor.startswith("worker:")
    }
    assert len(children) > 3, f"children were recycled and replaced: {len(children)} pids ran tasks"

    files = sorted(path.name for path in metrics_dir.glob("*.db"))
    owners = {re.sub(r"^[a-z_]+_(?=[^_]+\.db$)", "", name).removesuffix(".db") for name in files}
    slots = {name for name in owners if name.startswith("pool")}
    assert slots <= {"pool0", "pool1"}, files
    assert str(victim) not in owners, "the killed child's files are named after its slot, not its pid"
    assert len(owners - slots) <= 1, f"one parent and two slots, however many children came and went: {files}"
    assert "left over by a previous run" not in (metrics_dir / "counter_pool0.db").read_bytes().decode(errors="replace")


def test_a_second_worker_node_on_the_same_metrics_directory_refuses_to_start(
    start_worker: StartWorker, tmp_path: Path
) -> None:
    """Two nodes on one directory would write the same slot files (pool0, pool1) and corrupt each other's counts."""
    shared = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"), "CELERY_METRICS_ADDRESS": "127.0.0.1"}
    first = start_worker(concurrency=1, CELERY_METRICS_PORT=str(_free_port()), **shared)
    with pytest.raises(RuntimeError, match="in use by another running worker node"):
        start_worker(concurrency=1, CELERY_METRICS_PORT=str(_free_port()), **shared)
    assert first.process.poll() is None, "the first node runs on"
    with pytest.raises(RuntimeError, match="its metrics cannot be served"):
        start_worker(concurrency=1, CELERY_METRICS_PORT="not-a-port", PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "m2"))

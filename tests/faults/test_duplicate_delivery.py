"""Every task message delivered three times (at once, and again a moment later), to workers racing each other:
no effect twice, no illegal transition, and every copy after the first does nothing."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from django.contrib.auth.models import User

from shop.services import orders_seed_demo
from tests.factories import submit_task
from tests.faults.checks import (
    all_settled,
    effect_problems,
    nothing_lost_problems,
    outcomes,
    reloaded,
    worker_log_alarms,
)
from tests.faults.report import FaultFigures, record_figures
from tests.workers import StartWorker, WorkerProcess, wait_until
from tools.models import ToolContract
from tools.services.contracts import contract_update

ABSORBED = "task not due or leased elsewhere; nothing to do"
pytestmark = pytest.mark.worker

SCALE = int(os.environ.get("FAULT_SUITE_SCALE", "1"))
TASKS = 20 * SCALE
PLAN = {
    "seed": 3,
    "broker": {"duplicate_messages": 2, "duplicate_delay_seconds": 0.3},
    # Half the effectful calls fail once, so retry messages are duplicated too.
    "tools": {
        "add_order_note": [{"fault": "error", "code": "INTERNAL", "attempts": [1], "probability": 0.5}],
        "refund_order": [{"fault": "error", "code": "INTERNAL", "attempts": [1], "probability": 0.5}],
    },
}
GOALS: list[tuple[str, dict[str, Any]]] = [
    ("Look up order A-1001 and add an order note that the parcel is late.", {"order_number": "A-1001", "note": "late"}),
    ("Refund order A-1002", {"order_number": "A-1002", "amount_cents": 100, "currency": "USD", "reason": "late"}),
]


def test_duplicate_delivery_of_every_message_changes_nothing(start_worker: StartWorker, settings: Any) -> None:
    settings.FAULT_PLAN = json.dumps(PLAN)  # submissions are sent from this process: duplicate those too
    orders_seed_demo()
    for tool in ("add_order_note", "refund_order"):
        contract_update(
            contract=ToolContract.objects.get(name=tool), values={"circuit_failure_threshold": 1000}, user=None
        )
    workers = [start_worker(concurrency=2, FAULT_PLAN=json.dumps(PLAN)) for _ in range(2)]
    owner = User.objects.create_user("dup-client")
    submitted = [submit_task(owner, goal=goal, task_input=dict(data)) for goal, data in (GOALS * TASKS)[:TASKS]]

    wait_until(lambda: all_settled(submitted), sweep=True, timeout=120, describe="every task settled", watch=workers)

    # Copies still on their way when the last task settled arrive later; each must find nothing to do.
    wait_until(
        lambda: _logs(workers).count(ABSORBED) >= 2 * len(submitted),
        timeout=60,
        describe="every duplicate copy arrived and did nothing",
        watch=workers,
    )
    tasks = reloaded(submitted)
    problems = nothing_lost_problems(tasks) + worker_log_alarms(workers)
    logs = _logs(workers)
    received = logs.count("orchestration.tasks.run_task[") // 2  # each message: one "received", one "succeeded"
    absorbed = logs.count(ABSORBED)
    duplicates, _ = effect_problems(tasks)
    record_figures(
        FaultFigures(
            "every message delivered 3 times",
            len(tasks),
            received * 2 // 3,  # two extra copies of every message sent
            outcomes(tasks),
            duplicates,
            {"messages received": received, "copies that did nothing": absorbed},
        )
    )
    assert not problems, "\n".join(problems[:30])
    assert set(outcomes(tasks)) == {"COMPLETED"}


def _logs(workers: list[WorkerProcess]) -> str:
    return "".join(worker.log() for worker in workers)

"""Redis restarted, and separately flushed, while tasks wait in backoff: the delayed messages are gone, but
PostgreSQL knows when each retry is due and the sweeper (a real celery beat) sends it. All complete on schedule.

What each case guarantees is asserted, not how the outage happened to go: after a restart the worker may still
run a retry whose countdown fired just before it noticed the broker was gone, so whether the sweeper or the
original message starts a given retry depends on timing. The restart case therefore asserts that the worker
survives and every retry starts on schedule; the flush case also kills the worker that holds the delayed
messages, so no copy survives anywhere and the sweeper must send every pending retry.

A private Redis serves these tests, so restarting it disturbs nothing else on the machine.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from orchestration.models import RecoveryDecision, Step, Task, TaskState
from shop.services import orders_seed_demo
from tests.factories import submit_task
from tests.faults.checks import decisions_of, effect_problems, nothing_lost_problems, outcomes, reloaded
from tests.faults.report import FaultFigures, record_figures
from tests.redis_server import RedisServer
from tests.workers import StartWorker, WorkerProcess, wait_until
from tools.errors import RecoveryAction
from tools.models import ToolContract
from tools.services.contracts import contract_update

pytestmark = pytest.mark.worker

TASKS = 10
# The note fails twice, then goes through: two backoffs per task, of about 5 s and 10 s (long enough that every
# task still waits for its retry when the outage comes, on a loaded machine too).
PLAN = {"tools": {"add_order_note": [{"fault": "error", "code": "INTERNAL", "attempts": [1, 2]}]}}
RETRY_BASE_SECONDS = 5.0
# A retry may start this much after it was due, or after the worker was back on the broker if that came later:
# the sweep interval (1 s), the resend delay (1 s, ten times that while the queue holds messages), beat.
ON_SCHEDULE_SLACK = timedelta(seconds=20)
_SWEPT = re.compile(r"sweep_due_tasks\[[^\]]+\] succeeded in [0-9.]+s: (\d+)")


def _start(start_worker: StartWorker, start_beat: StartWorker, redis_server: RedisServer) -> list[WorkerProcess]:
    env = {"REDIS_URL": redis_server.url, "FAULT_PLAN": json.dumps(PLAN), "SWEEP_INTERVAL_SECONDS": "1"}
    return [start_worker(concurrency=2, **env), start_beat(**env)]


def _submit_tasks_into_backoff() -> list[Task]:
    orders_seed_demo()
    note = ToolContract.objects.get(name="add_order_note")
    # Twenty injected failures a minute would open the note's circuit; that has its own tests, so out of reach here.
    values = {"retry_base_seconds": RETRY_BASE_SECONDS, "circuit_failure_threshold": 1000}
    contract_update(contract=note, values=values, user=None)
    owner = User.objects.create_user("broker-client")
    tasks = [submit_task(owner) for _ in range(TASKS)]
    wait_until(
        lambda: (
            Task.objects.filter(pk__in=[t.pk for t in tasks], state=TaskState.TOOL_FAILED_RETRYABLE).count() == TASKS
        ),
        timeout=30,
        describe="every task in its first backoff",
    )
    return tasks


def _lateness(tasks: list[Task], back_at: datetime) -> tuple[list[timedelta], list[str]]:
    """How long after it was due each retry started; problems for any that started early, or far too late after
    both its due time and `back_at` (when the worker was connected to the broker again)."""
    late, problems = [], []
    for task in tasks:
        step = Step.objects.get(task=task, name="add_order_note")
        starts: dict[int, datetime | None] = {d.attempt or 0: d.attempt_started_at for d in decisions_of(step)}
        starts[step.attempt] = step.started_at
        for decision in (d for d in decisions_of(step) if d.action == RecoveryAction.RETRY):
            due, started = decision.next_attempt_at, starts.get((decision.attempt or 0) + 1)
            assert due is not None
            if started is None or started < due - timedelta(milliseconds=1):
                problems.append(f"task {task.pk}: attempt {(decision.attempt or 0) + 1} started {started}, due {due}")
                continue
            late.append(started - due)
            if started - max(due, back_at) > ON_SCHEDULE_SLACK:
                problems.append(f"task {task.pk}: attempt {(decision.attempt or 0) + 1} started {started - due} late")
    return late, problems


def _logged_at(line: str) -> datetime | None:
    if '"ts": "' not in line:
        return None
    return datetime.fromisoformat(line.split('"ts": "', 1)[1].split('"', 1)[0])


def _sweeps_after(workers: list[WorkerProcess], moment: datetime) -> int:
    """Tasks the sweeper re-sent after `moment` (from the worker's log of sweep_due_tasks results)."""
    sent = 0
    for line in workers[0].log().splitlines():
        found, logged = _SWEPT.search(line), _logged_at(line)
        if found and logged is not None and logged > moment:
            sent += int(found.group(1))
    return sent


def _back_on_the_broker(workers: list[WorkerProcess], moment: datetime) -> datetime:
    """When the worker (re)connected to the broker after `moment`: the moment itself if it never had to."""
    connected = [
        logged
        for line in workers[0].log().splitlines()
        if "Connected to redis://" in line and (logged := _logged_at(line)) is not None and logged > moment
    ]
    return max(connected, default=moment)


def _retries_due_after(tasks: list[Task], *, decided_before: datetime, due_after: datetime) -> int:
    """Retries decided before the outage and due well after it: their message was in Redis or held by the worker
    (when the worker dies too, as in the flush case, their only copy died with it)."""
    return RecoveryDecision.objects.filter(
        task__in=tasks, action=RecoveryAction.RETRY, created_at__lt=decided_before, next_attempt_at__gt=due_after
    ).count()


def _settle_and_check(
    case: str, tasks: list[Task], workers: list[WorkerProcess], outage: Callable[[], datetime]
) -> tuple[int, int]:
    """Cause the outage (it returns when the last copy of a delayed message was gone), wait for every task, check
    the schedule; returns (retries whose message the outage destroyed, retries the sweeper re-sent after it)."""
    moment = timezone.now()
    gone_at = outage()
    # A retry due within a second of the outage may have started from its message just before it: not counted.
    lost = _retries_due_after(tasks, decided_before=moment, due_after=gone_at + timedelta(seconds=1))
    wait_until(
        lambda: Task.objects.filter(pk__in=[t.pk for t in tasks], state=TaskState.COMPLETED).count() == TASKS,
        timeout=90,
        describe="every task completed after the outage",
        watch=workers,
    )
    tasks = reloaded(tasks)
    late, problems = _lateness(tasks, _back_on_the_broker(workers, moment))
    problems += nothing_lost_problems(tasks)
    resent = _sweeps_after(workers, moment)
    duplicates, _ = effect_problems(tasks)
    worst = max(late, default=timedelta(0)).total_seconds()
    record_figures(
        FaultFigures(case, TASKS, 2 * TASKS + 1, outcomes(tasks), duplicates,
                     {"retries waiting through the outage": lost, "retries re-sent by the sweeper": resent,
                      "latest retry after its due time": f"{worst:.1f} s"})
    )  # fmt: skip
    assert not problems, "\n".join(problems)
    return lost, resent


def test_redis_restarted_with_tasks_in_backoff(
    start_worker: StartWorker, start_beat: StartWorker, private_redis: RedisServer
) -> None:
    workers = _start(start_worker, start_beat, private_redis)
    worker_pid = workers[0].process.pid
    tasks = _submit_tasks_into_backoff()

    def restart() -> datetime:
        private_redis.restart()
        return timezone.now()

    _settle_and_check("Redis restarted (tasks in backoff)", tasks, workers, restart)
    assert private_redis.restarts == 1
    assert workers[0].process.pid == worker_pid and workers[0].process.poll() is None, "the worker survived"
    assert workers[0].log().count("Connected to redis://") >= 2, "the worker reconnected to the restarted broker"


def test_redis_flushed_with_tasks_in_backoff(
    start_worker: StartWorker, start_beat: StartWorker, private_redis: RedisServer
) -> None:
    """Flushed while the worker holding the delayed messages is replaced, so no copy survives anywhere."""
    workers = _start(start_worker, start_beat, private_redis)
    tasks = _submit_tasks_into_backoff()

    def flush_and_replace_worker() -> datetime:
        private_redis.flush()
        workers[0].kill()
        gone_at = timezone.now()
        env = {"REDIS_URL": private_redis.url, "FAULT_PLAN": json.dumps(PLAN)}
        workers[0] = start_worker(concurrency=2, **env)
        return gone_at

    lost, resent = _settle_and_check("Redis flushed (tasks in backoff)", tasks, workers, flush_and_replace_worker)
    assert lost > 0, "the outage came when no retry was waiting: it tested nothing"
    assert resent >= lost, f"{lost} retries lost their only message, but the sweeper re-sent only {resent}"

"""Gauges read from the database at scrape time: what waits, for whom, and for how long.

These describe shared state, not one process's events, so they are computed fresh on each scrape of the web
app (every web replica reports the same values; rules take `max`, never `sum`). A database that does not answer
turns them into `agent_state_up 0` rather than failing the whole scrape: the process's own counters still go out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import redis
from django.conf import settings
from django.db import Error as DatabaseLayerError
from django.db.models import Count, Min, Q
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from agent_runtime.models import Rollout, RolloutEvent, RolloutEventKind, RolloutState
from orchestration.models import OPEN_STATES, RUNNABLE_STATES, Task, TaskState
from tools.circuit import CLOSED
from tools.models import ToolContract
from tools.services.circuits import circuit_state

logger = logging.getLogger(__name__)


class DatabaseStateCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("agent_state_up", "1 if the database-state gauges below could be read")
        try:
            gauges = [*_task_gauges(), _circuit_gauge(), *_rollout_metrics()]
        except (DatabaseLayerError, redis.RedisError):  # InterfaceError (a closed connection) included
            logger.warning("the database-state gauges could not be read for this scrape", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from gauges


def _task_gauges() -> Iterator[Metric]:
    now = timezone.now()
    counts = dict(
        Task.objects.filter(state__in=OPEN_STATES)
        .values_list("state")
        .annotate(n=Count("pk"))
        .values_list("state", "n")
    )
    open_tasks = GaugeMetricFamily("agent_tasks_open", "Open tasks by state", labels=["state"])
    for state in OPEN_STATES:
        open_tasks.add_metric([str(state)], counts.get(state, 0))
    yield open_tasks

    due = (
        Task.objects.filter(state__in=RUNNABLE_STATES, next_run_at__lte=now)
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
        .count()
    )
    yield GaugeMetricFamily(
        "agent_tasks_due", "Tasks whose next step is due and that no worker holds: waiting for a worker", value=due
    )

    oldest = Task.objects.filter(state=TaskState.MANUAL_REVIEW).aggregate(at=Min("handed_off_at"))["at"]
    age = max((now - oldest).total_seconds(), 0.0) if oldest else 0.0
    yield GaugeMetricFamily(
        "agent_manual_review_oldest_age_seconds", "How long the oldest task in MANUAL_REVIEW has waited", value=age
    )
    yield GaugeMetricFamily(
        "agent_manual_review_sla_seconds",
        "The manual queue's SLA (MANUAL_REVIEW_SLA_SECONDS)",
        value=settings.MANUAL_REVIEW_SLA_SECONDS,
    )


def _circuit_gauge() -> Metric:
    circuits = GaugeMetricFamily(
        "agent_circuit_open", "1 while the tool's circuit breaker is open or half-open", labels=["tool"]
    )
    for tool in ToolContract.objects.order_by("name").values_list("name", flat=True):
        circuits.add_metric([tool], 0 if circuit_state(tool).status == CLOSED else 1)
    return circuits


_ROLLBACK_TRIGGERS = {RolloutEventKind.ROLLED_BACK: "manual", RolloutEventKind.AUTO_ROLLED_BACK: "automatic"}


def _rollout_metrics() -> Iterator[Metric]:
    """The canaries running now, and every rollback so far, per agent: one series per agent and trigger, from the
    first rollout of the agent on, at 0 until it happens, so that `increase` sees the first one."""
    share = GaugeMetricFamily(
        "agent_rollout_canary_share",
        "The share of new tasks an agent's running canary gets (0 to 1)",
        labels=["agent", "stable_version", "canary_version"],
    )
    active = Rollout.objects.filter(state=RolloutState.ACTIVE).values_list(
        "agent__name", "stable__number", "canary__number", "canary_percent"
    )
    for agent, stable, canary, percent in active:
        share.add_metric([agent, str(stable), str(canary)], float(percent) / 100)
    yield share
    rollbacks = CounterMetricFamily(
        "agent_rollout_rollbacks", "Canaries rolled back, by hand or automatically", labels=["agent", "trigger"]
    )
    by_agent_kind = {
        (agent, kind): n
        for agent, kind, n in RolloutEvent.objects.filter(kind__in=list(_ROLLBACK_TRIGGERS))
        .values_list("rollout__agent__name", "kind")
        .annotate(n=Count("pk"))
        .values_list("rollout__agent__name", "kind", "n")
    }
    for agent in Rollout.objects.values_list("agent__name", flat=True).distinct().order_by("agent__name"):
        for kind, trigger in _ROLLBACK_TRIGGERS.items():
            rollbacks.add_metric([agent, trigger], by_agent_kind.get((agent, kind), 0))
    yield rollbacks

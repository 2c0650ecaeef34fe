"""A real Prometheus scrapes the web app and a prefork worker (two children) while a batch with known outcomes runs
(retries, handoffs, fatal failures); each recording rule, read through Prometheus's HTTP API, matches the database.

Rules that divide counters of one process group (the worker's) must match exactly: every series starts at zero
and is scraped at the same instants, so Prometheus's extrapolation of `rate` cancels out. `manual_handoff_ratio`
divides the worker's handoffs by the web app's submissions, two targets scraped at different instants: each `rate`
may be stretched by up to 1.1 scrape intervals at the window's end (and half of one at its start, for a series
that did not start at zero: this process counted submissions in earlier tests), so over a run of T seconds the
ratio is held to 3 intervals / T (about 10 % for this short batch; 1 % over the rule's 5-minute window).
"""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.contrib.auth.models import User
from django.db.models import Sum
from pytest_django.live_server_helper import LiveServer

from agent_runtime.models import ModelPrice
from orchestration import metrics
from orchestration.models import RecoveryDecision, Step, StepKind, StepState, Task, TaskState
from shop.services import orders_seed_demo
from tests.factories import submit_task
from tests.faults.checks import all_settled, reloaded
from tests.faults.test_flaky_tools import FATAL, LOOKUP_AND_NOTE, REFUND, RETRYABLE, _declare_flaky_upstreams
from tests.metrics_journal import journal_expectations
from tests.workers import ROOT, StartWorker, WorkerProcess, wait_until

pytestmark = pytest.mark.worker

SCRAPE_INTERVAL = 1
RECORDING_RULES = ROOT / "deploy" / "prometheus" / "rules" / "recording.yml"
# Every lookup fails once (a retryable error, retried after its backoff); every refund fails for good.
PLAN = {
    "seed": 7,
    "tools": {
        "lookup_order": [{"fault": "error", "code": RETRYABLE, "attempts": [1]}, {"fault": "hang", "seconds": 0.03}],
        "refund_order": [{"fault": "error", "code": FATAL}],
    },
}
NOT_FOUND = ("Look up order Z-9999", {"order_number": "Z-9999"})  # the model hands it to a human


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        address = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        with urllib.request.urlopen(address, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return [(item["metric"], float(item["value"][1])) for item in body["data"]["result"]]

    def value(self, expr: str) -> float:
        result = self.query(expr)
        assert len(result) == 1, f"{expr}: {result}"
        return result[0][1]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Any]:
    binary = shutil.which("prometheus")
    assert binary, "Prometheus is missing: run `make monitoring-tools` (Debian's prometheus package)"
    started: list[subprocess.Popen[bytes]] = []

    def start(*, web: str, worker: str, scrape_token: str) -> Prometheus:
        # As in production (deploy/prometheus/prometheus.yml): the app answers only scrapes with its token.
        (tmp_path / "scrape-token").write_text(scrape_token)
        authorization = {"type": "Bearer", "credentials_file": str(tmp_path / "scrape-token")}
        config = {
            "global": {"scrape_interval": f"{SCRAPE_INTERVAL}s", "evaluation_interval": f"{SCRAPE_INTERVAL}s"},
            "rule_files": [str(RECORDING_RULES)],
            "scrape_configs": [
                {"job_name": name, "static_configs": [{"targets": [target]}], "authorization": authorization}
                for name, target in (("agent-web", web), ("agent-workers", worker))
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = _free_port()
        log = (tmp_path / "prometheus.log").open("wb")
        process = subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        started.append(process)
        server = Prometheus(f"http://127.0.0.1:{port}")
        wait_until(lambda: _answers(f"{server.url}/-/ready"), timeout=30, describe="Prometheus ready")
        return server

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=20)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _journal_figures(tasks: list[Task]) -> dict[str, Any]:
    """The seven figures as the database has them, for the batch."""
    journal = journal_expectations(tasks)

    def figure(name: str, **labels: str) -> float:
        """The journal's figure for exactly these labels (each expectation is one query of the counters)."""
        return sum(v for (n, have), v in journal.items() if n == name and set(labels.items()) == set(have))

    def total(name: str, breakdown: int) -> float:
        """Summed over the expectations broken down by `breakdown` labels (kind; kind and outcome)."""
        return sum(v for (n, have), v in journal.items() if n == name and len(have) == breakdown)

    rows = Task.objects.filter(pk__in=[t.pk for t in tasks])
    tools = sorted({dict(labels)["tool"] for (name, labels) in journal if name == "agent_tool_calls_total"})
    turns = figure("gen_ai_client_token_usage_count", gen_ai_token_type="input")
    return {
        "tool_call_success_rate": {
            tool: figure("agent_tool_calls_total", tool=tool, outcome="ok")
            / figure("agent_tool_calls_total", tool=tool)
            for tool in tools
        },
        "agent_step_retry_rate": total("agent_step_retries_total", 1) / total("agent_steps_total", 2),
        "token_input_per_request": float(rows.aggregate(n=Sum("input_tokens"))["n"]) / turns,
        "token_output_per_request": float(rows.aggregate(n=Sum("output_tokens"))["n"]) / turns,
        "cost_per_successful_task": float(rows.aggregate(c=Sum("cost"))["c"])
        / rows.filter(state=TaskState.COMPLETED).count(),
        "manual_handoff_ratio": figure("agent_handoffs_total") / len(tasks),
    }


def _attempt_durations(tasks: list[Task], tool: str) -> list[float]:
    """Every attempt's duration: the last from its step, earlier ones from the decision that followed each."""
    steps = Step.objects.filter(task__in=tasks, kind=StepKind.TOOL_CALL, name=tool)
    durations = [(step.duration_ms or 0) / 1000 for step in steps if step.state != StepState.RUNNING]
    last_attempt = {step.pk: step.attempt for step in steps}
    for decision in RecoveryDecision.objects.filter(step__in=steps).exclude(attempt_started_at=None):
        earlier = decision.attempt is not None and decision.attempt < last_attempt.get(decision.step_id or 0, 0)
        if earlier and decision.attempt_started_at is not None:
            durations.append((decision.created_at - decision.attempt_started_at).total_seconds())
    return durations


def _bucket_of(seconds: float) -> int:
    return next(
        (i for i, bound in enumerate(metrics.TOOL_DURATION_BUCKETS) if seconds <= bound),
        len(metrics.TOOL_DURATION_BUCKETS),
    )


def test_each_recording_rule_matches_the_database(
    start_worker: StartWorker,
    live_server: LiveServer,
    prometheus: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
) -> None:
    orders_seed_demo()
    _declare_flaky_upstreams()
    ModelPrice.objects.update_or_create(
        model="offline", defaults={"input_usd_per_million": Decimal("2.5"), "output_usd_per_million": Decimal("10")}
    )
    worker_port = _free_port()
    # No address may scrape, only the token (production's setting): the scrape really authenticates.
    scrape_token = "scrape-" + uuid.uuid4().hex
    settings.METRICS_ALLOWED_NETWORKS, settings.METRICS_SCRAPE_TOKEN = [], scrape_token
    worker: WorkerProcess = start_worker(
        METRICS_ALLOWED_NETWORKS="",
        METRICS_SCRAPE_TOKEN=scrape_token,
        concurrency=2,
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "worker-metrics"),
        CELERY_METRICS_PORT=str(worker_port),
        CELERY_METRICS_ADDRESS="127.0.0.1",
        FAULT_PLAN=json.dumps(PLAN),
    )
    assert len(worker.children()) == 2
    monkeypatch.setattr(metrics, "_warm", False)
    metrics._version_labels.cache_clear()
    metrics.series_warm_up()  # this process is the web app: its series at zero before the first submission
    web = urllib.parse.urlsplit(live_server.url).netloc
    server = prometheus(web=web, worker=f"127.0.0.1:{worker_port}", scrape_token=scrape_token)
    wait_until(
        lambda: (
            sorted(v for _, v in server.query("up")) == [1.0, 1.0]
            and server.query('count(agent_steps_total{job="agent-workers"})') != []
        ),
        timeout=30,
        describe="both targets scraped, the worker's series at zero",
    )
    time.sleep(2)  # a few scrapes of the zeros
    zeros_seen = time.monotonic()

    owner = User.objects.create_user("prometheus-client")
    batch = [LOOKUP_AND_NOTE[:2]] * 6 + [REFUND[:2]] * 2 + [NOT_FOUND] * 2
    tasks = [submit_task(owner, goal=goal, task_input=dict(data)) for goal, data in batch]
    wait_until(lambda: all_settled(tasks), sweep=True, timeout=120, describe="the batch settled", watch=[worker])
    tasks = reloaded(tasks)
    states = sorted(str(task.state) for task in tasks)
    assert states == ["COMPLETED"] * 6 + ["MANUAL_REVIEW"] * 2 + ["TOOL_FAILED_FATAL"] * 2, states

    finished = sum(task.state != TaskState.MANUAL_REVIEW for task in tasks)
    wait_until(
        lambda: server.query('sum(agent_tasks_finished_total{job="agent-workers"})') == [({}, float(finished))],
        timeout=30,
        describe="Prometheus scraped the settled batch",
    )
    time.sleep(3)  # and evaluated the rules on it

    want = _journal_figures(tasks)
    version = tasks[0].agent_version
    assert version is not None
    # This process may hold other versions' series from earlier tests (their rules have no traffic: NaN).
    ours = f'agent="{version.agent.name}",agent_version="{version.number}"'
    assert want["agent_step_retry_rate"] > 0 and want["manual_handoff_ratio"] == 0.2
    problems = []
    for tool, rate in want["tool_call_success_rate"].items():
        have = server.value(f'tool_call_success_rate{{{ours},tool="{tool}"}}')
        if not math.isclose(have, rate, rel_tol=1e-9):
            problems.append(f"tool_call_success_rate{{{tool}}}: Prometheus {have}, database {rate}")
    for name in ("agent_step_retry_rate", "token_input_per_request", "token_output_per_request",
                 "cost_per_successful_task"):  # fmt: skip
        have = server.value(f"{name}{{{ours}}}")
        if not math.isclose(have, want[name], rel_tol=1e-6):
            problems.append(f"{name}: Prometheus {have}, database {want[name]}")
    handoffs = server.value(f"manual_handoff_ratio{{{ours}}}")
    extrapolation = 3 * SCRAPE_INTERVAL / (time.monotonic() - zeros_seen)
    if not math.isclose(handoffs, want["manual_handoff_ratio"], rel_tol=extrapolation):
        problems.append(f"manual_handoff_ratio: Prometheus {handoffs}, database {want['manual_handoff_ratio']}")
    for tool in want["tool_call_success_rate"]:
        durations = sorted(_attempt_durations(tasks, tool))
        p95 = durations[min(len(durations) - 1, math.ceil(0.95 * len(durations)) - 1)]
        have = server.value(f'tool_call_p95_latency{{{ours},tool="{tool}"}}')
        if abs(_bucket_of(have) - _bucket_of(p95)) > 1:
            problems.append(f"tool_call_p95_latency{{{tool}}}: Prometheus {have}, database {p95} (buckets apart)")
    print(f"\nrecording rules vs the database ({len(tasks)} tasks): {json.dumps(want, indent=1, sort_keys=True)}")
    assert problems == [], "\n".join(problems)

"""OpenTelemetry traces in-process: a submission continues the client's trace, a task's runs are spans of that
trace with a span per model request and tool call, and nothing is set up when no OTEL_* variable asks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, format_span_id

from agent_runtime.offline_model import OfflineModel
from lib import otel
from orchestration.models import Step, StepKind, Task, TaskState
from orchestration.services.execution import task_run
from shop.models import Order
from tests.factories import submit_task
from tests.tracing.conftest import named, one, parent_id, span_id, trace_of

URL = "/api/v1/tasks/"
BODY = {"goal": "Look up order A-1001", "input": {"order_number": "A-1001"}}
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
REFUND = {"order_number": "A-1002", "amount_cents": 2000, "currency": "USD", "reason": "damaged box"}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def owner(demo_orders: None) -> User:
    return User.objects.create(username="owner")


def _run(task: Task) -> Task:
    task_run(task_id=str(task.pk), worker="worker:test")
    task.refresh_from_db()
    return task


def _make_due(task: Task) -> None:
    Task.objects.filter(pk=task.pk).update(next_run_at=timezone.now())


# --- the submission ------------------------------------------------------------------------------------


@pytest.mark.django_db
class TestSubmission:
    def test_the_task_continues_the_clients_trace(self, api: Any, spans: InMemorySpanExporter) -> None:
        response = api.post(URL, BODY, format="json", HTTP_TRACEPARENT=f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01")
        assert response.status_code == 201
        task = Task.objects.get(pk=response.json()["id"])
        assert task.trace_id == CLIENT_TRACE

        finished = spans.get_finished_spans()
        server = next(span for span in finished if span.kind == SpanKind.SERVER)
        submit = one(finished, "task.submit")
        assert trace_of(server) == trace_of(submit) == CLIENT_TRACE
        assert server.parent is not None and server.parent.is_remote
        assert parent_id(server) == int(CLIENT_SPAN, 16), "the client's span is the server span's parent"
        assert parent_id(submit) == span_id(server)
        assert submit.attributes is not None
        assert submit.attributes[otel.TASK_ID] == str(task.pk)
        assert submit.attributes[otel.TASK_CREATED] is True
        assert submit.attributes["gen_ai.agent.name"] == "default"
        # The response names the server span, so the client can hang what follows under it.
        assert response["traceparent"] == f"00-{CLIENT_TRACE}-{format_span_id(span_id(server))}-01"

    @pytest.mark.parametrize(
        "header", [None, "00-" + "0" * 32 + "-b7ad6b7169203331-01", "00-abc-def-01", f"00-{CLIENT_TRACE}-{'0' * 16}-01"]
    )
    def test_no_valid_traceparent_starts_a_new_trace(
        self, api: Any, spans: InMemorySpanExporter, header: str | None
    ) -> None:
        extra = {} if header is None else {"HTTP_TRACEPARENT": header}
        response = api.post(URL, BODY, format="json", **extra)
        trace_id = response.json()["trace_id"]
        assert trace_id not in ("0" * 32, CLIENT_TRACE)
        finished = spans.get_finished_spans()
        server = next(span for span in finished if span.kind == SpanKind.SERVER)
        assert server.parent is None, "a new trace: the server span is its root"
        assert trace_of(server) == trace_of(one(finished, "task.submit")) == trace_id
        # Sampled (and, for a root the SDK started, the W3C "random trace id" flag: 03).
        assert response["traceparent"] in {f"00-{trace_id}-{format_span_id(span_id(server))}-{f}" for f in ("01", "03")}

    def test_a_repeated_key_is_traced_as_the_existing_task(self, api: Any, spans: InMemorySpanExporter) -> None:
        first = api.post(URL, BODY, format="json", HTTP_IDEMPOTENCY_KEY="same")
        api.post(URL, BODY, format="json", HTTP_IDEMPOTENCY_KEY="same")
        submits = named(spans.get_finished_spans(), "task.submit")
        assert [(s.attributes or {}).get(otel.TASK_CREATED) for s in submits] == [True, False]
        assert {(s.attributes or {}).get(otel.TASK_ID) for s in submits} == {first.json()["id"]}

    def test_with_django_not_instrumented_the_propagator_still_reads_the_header(self, api: Any) -> None:
        """Tracing off for requests: the trace id is the header's all the same, and echoed with a new span id."""
        response = api.post(URL, BODY, format="json", HTTP_TRACEPARENT=f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01")
        assert response.json()["trace_id"] == CLIENT_TRACE
        version, trace_id, parent, flags = response["traceparent"].split("-")
        assert (version, trace_id, flags) == ("00", CLIENT_TRACE, "01") and parent != CLIENT_SPAN


# --- runs ----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_run_is_a_span_with_a_child_per_model_request_and_tool_call(owner: User, spans: InMemorySpanExporter) -> None:
    task = submit_task(owner)  # look up an order, then add a note: three turns, two tool calls
    submit = one(spans.get_finished_spans(), "task.submit")
    spans.clear()
    task = _run(task)
    assert task.state == TaskState.COMPLETED

    finished = spans.get_finished_spans()
    run = one(finished, "task.run")
    anchor = otel.anchor_span_id(str(task.pk))
    assert trace_of(run) == trace_of(submit) == task.trace_id
    assert parent_id(run) == parent_id(submit) == anchor, "no live context: both hang off the task's own parent"
    assert run.attributes is not None
    assert run.attributes[otel.TASK_ID] == str(task.pk)
    assert run.attributes["gen_ai.agent.name"] == "default"
    assert run.attributes["gen_ai.agent.version"] == str(task.agent_version_id)
    assert (run.attributes["task.state"], run.attributes["task.state.after"]) == ("RECEIVED", "COMPLETED")
    assert run.attributes["task.run.steps_recorded"] == 0 and run.attributes["task.run.retries_before"] == 0

    chats = [span for span in finished if span.name == "chat offline"]
    assert len(chats) == 3
    for number, chat in enumerate(chats, start=1):
        assert chat.kind == SpanKind.CLIENT and trace_of(chat) == task.trace_id and parent_id(chat) == span_id(run)
        attributes = chat.attributes or {}
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.request.model"] == "offline"
        assert attributes["gen_ai.agent.name"] == "default"
        assert attributes["gen_ai.usage.input_tokens"] > 0 and attributes["gen_ai.usage.output_tokens"] > 0  # type: ignore[operator]
        assert attributes["task.turn"] == number and attributes[otel.STEP_ATTEMPT] == 1
        assert "gen_ai.provider.name" not in attributes, "the offline model has no provider"
    turns = Step.objects.filter(task=task, kind=StepKind.MODEL_TURN).order_by("seq")
    assert [(c.attributes or {})["gen_ai.usage.input_tokens"] for c in chats] == [t.input_tokens for t in turns]

    tools = [span for span in finished if span.name.startswith("execute_tool ")]
    assert [span.name for span in tools] == ["execute_tool lookup_order", "execute_tool add_order_note"]
    calls = Step.objects.filter(task=task, kind=StepKind.TOOL_CALL).order_by("seq")
    for tool, step in zip(tools, calls, strict=True):
        assert trace_of(tool) == task.trace_id and parent_id(tool) == span_id(run)
        attributes = tool.attributes or {}
        assert attributes["gen_ai.operation.name"] == "execute_tool"
        assert attributes["gen_ai.tool.name"] == step.name
        assert step.ref.endswith(":" + str(attributes["gen_ai.tool.call.id"]))
        assert attributes[otel.STEP_ATTEMPT] == 1 and attributes[otel.STEP_REPLAYED] is False
        assert "error.type" not in attributes and tool.status.status_code == StatusCode.UNSET


@pytest.mark.django_db
def test_a_retried_tool_call_runs_again_in_the_same_trace_after_a_recorded_wait(
    owner: User, spans: InMemorySpanExporter
) -> None:
    Order.objects.filter(number="A-1002").update(settlement_locked_until=timezone.now() + timedelta(hours=1))
    task = _run(submit_task(owner, goal="Refund order A-1002", task_input=REFUND))
    assert task.state == TaskState.TOOL_FAILED_RETRYABLE and task.next_run_at is not None
    first_next_run_at = task.next_run_at
    Order.objects.filter(number="A-1002").update(settlement_locked_until=None)
    _make_due(task)
    task = _run(task)
    assert task.state == TaskState.COMPLETED

    finished = spans.get_finished_spans()
    first, second = named(finished, "task.run")
    assert trace_of(first) == trace_of(second) == task.trace_id
    assert parent_id(first) == parent_id(second) == otel.anchor_span_id(str(task.pk))

    (wait,) = [event for event in first.events if event.name == "wait"]
    assert wait.attributes is not None
    assert wait.attributes["task.wait.until"] == first_next_run_at.isoformat()
    assert 0 < wait.attributes["task.wait.seconds"] <= 2  # type: ignore[operator]
    assert "ORDER_LOCKED" in str(wait.attributes["task.wait.reason"])
    assert wait.attributes["task.decision.action"] == "retry"
    assert (wait.attributes["task.step.name"], wait.attributes[otel.STEP_ATTEMPT]) == ("refund_order", 1)
    assert first.attributes is not None and first.attributes["task.state.after"] == "TOOL_FAILED_RETRYABLE"
    assert second.attributes is not None and second.attributes["task.run.retries_before"] == 1
    assert not [event for event in second.events if event.name == "wait"]

    failed, retried = named(finished, "execute_tool refund_order")
    assert parent_id(failed) == span_id(first) and parent_id(retried) == span_id(second)
    assert failed.attributes is not None and retried.attributes is not None
    assert failed.attributes[otel.STEP_ATTEMPT] == 1 and retried.attributes[otel.STEP_ATTEMPT] == 2
    assert failed.attributes["error.type"] == "ORDER_LOCKED" and failed.status.status_code == StatusCode.ERROR
    assert "paused, not failed" in str(failed.attributes[otel.RUN_SUSPENDED])
    (decided,) = [event for event in failed.events if event.name == "task.decision"]
    assert decided.attributes is not None and decided.attributes["task.decision.action"] == "retry"
    assert "error.type" not in retried.attributes
    # The first turn was recorded before the wait: the second run replays it without a request, so no span.
    assert [(s.attributes or {})["task.turn"] for s in named(finished, "chat offline")] == [1, 2]


class FailingModel(OfflineModel):
    def __init__(self, fail_on: set[int]) -> None:
        self.requests = 0
        self.fail_on = fail_on

    async def get_response(self, *args: Any, **kwargs: Any) -> Any:
        self.requests += 1
        if self.requests in self.fail_on:
            raise ConnectionError("endpoint unavailable")
        return await super().get_response(*args, **kwargs)


@pytest.mark.django_db
def test_a_failed_model_request_is_an_error_span_and_the_resumed_run_marks_replayed_calls(
    owner: User, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent_runtime.runner.resolve_model", lambda name: FailingModel(fail_on={3}))
    task = _run(submit_task(owner))
    assert task.state == TaskState.PLANNED and task.next_run_at is not None
    monkeypatch.setattr("agent_runtime.runner.resolve_model", lambda name: FailingModel(fail_on=set()))
    _make_due(task)
    task = _run(task)
    assert task.state == TaskState.COMPLETED

    finished = spans.get_finished_spans()
    first, second = named(finished, "task.run")
    chats = named(finished, "chat offline")
    assert [(s.attributes or {})["task.turn"] for s in chats] == [1, 2, 3, 3]
    failed, retried = chats[2], chats[3]
    assert failed.attributes is not None and retried.attributes is not None
    assert failed.attributes["error.type"] == "ConnectionError" and failed.status.status_code == StatusCode.ERROR
    assert (failed.attributes[otel.STEP_ATTEMPT], retried.attributes[otel.STEP_ATTEMPT]) == (1, 2)
    assert parent_id(failed) == span_id(first) and parent_id(retried) == span_id(second)
    (wait,) = [event for event in first.events if event.name == "wait"]
    assert wait.attributes is not None and wait.attributes["task.decision.action"] == "retry"
    assert [event.name for event in first.events].count("task.decision") == 1

    # The resumed run replays both tool results from the journal: spans, but marked, with no attempt.
    replayed = [s for s in finished if s.name.startswith("execute_tool ") and parent_id(s) == span_id(second)]
    assert [span.name for span in replayed] == ["execute_tool lookup_order", "execute_tool add_order_note"]
    for span in replayed:
        assert span.attributes is not None
        assert span.attributes[otel.STEP_REPLAYED] is True and otel.STEP_ATTEMPT not in span.attributes


# --- off by default --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, ()),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, ("otlp",)),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ()),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, ()),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "TRUE"}, ()),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "false"}, ("otlp",)),
        ({"OTEL_TRACES_EXPORTER": " OTLP , console"}, ("otlp", "console")),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, ("otlp",)),
    ],
)
def test_which_exporters_the_standard_variables_ask_for(environ: dict[str, str], wanted: tuple[str, ...]) -> None:
    assert otel.exporters_wanted(environ) == wanted


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "zipkin is not available"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, "'grpc' is not installed"),
    ],
)
def test_what_cannot_be_honoured_is_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(otel.TracingMisconfigured, match=message):
        otel.exporters_wanted(environ)


_START_UP = """
import json, threading
import config.wsgi  # the web process starts as gunicorn and runserver start it
from celery import signals
from config.celery import app
signals.worker_process_init.send(sender=None)  # a worker's pool process starts
from django.conf import settings
from opentelemetry import trace
print(json.dumps({
    "provider": type(trace.get_tracer_provider()).__name__,
    "threads": [thread.name for thread in threading.enumerate()],
    "middleware": settings.MIDDLEWARE,
    "exporters": settings.TRACING_EXPORTERS,
}))
"""


def _start_up(**environ: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    env.update(DJANGO_SETTINGS_MODULE="config.test_settings", **environ)
    return subprocess.run(
        [sys.executable, "-c", _START_UP], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def _started(**environ: str) -> dict[str, Any]:
    done = _start_up(**environ)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


_OTEL_MIDDLEWARE = "opentelemetry.instrumentation.django.middleware.otel_middleware._DjangoMiddleware"


def test_off_by_default_no_provider_no_exporter_thread_no_instrumentation() -> None:
    started = _started()
    assert started["provider"] == "ProxyTracerProvider", "the API's default: every span is a no-op"
    assert not [name for name in started["threads"] if name.startswith("OtelBatch")]
    assert _OTEL_MIDDLEWARE not in started["middleware"] and started["exporters"] == []


def test_the_disable_switch_wins() -> None:
    started = _started(OTEL_TRACES_EXPORTER="otlp", OTEL_SDK_DISABLED="true")
    assert started["provider"] == "ProxyTracerProvider" and _OTEL_MIDDLEWARE not in started["middleware"]


def test_switched_on_by_the_standard_variables() -> None:
    """The same start-up with an OTLP endpoint set (nothing listens there; nothing is sent before a span ends)."""
    started = _started(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://127.0.0.1:9/v1/traces")
    assert started["provider"] == "TracerProvider" and started["exporters"] == ["otlp"]
    assert "OtelBatchSpanRecordProcessor" in started["threads"]
    assert started["middleware"][0] == _OTEL_MIDDLEWARE, "the server span opens before anything else runs"


def test_a_bad_value_stops_start_up_with_one_clear_line() -> None:
    done = _start_up(OTEL_TRACES_EXPORTER="jaeger")
    assert done.returncode != 0
    assert "ConfigError: OTEL_TRACES_EXPORTER='jaeger': jaeger is not available here" in done.stderr

"""A client's trace continues through a real Celery worker process: the worker exports over OTLP/HTTP to a
receiver on loopback, and its spans carry the client's trace id, parented through the message's context."""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from rest_framework.test import APIClient

from lib import otel
from orchestration.models import Task, TaskState
from shop.services import orders_seed_demo
from tests.factories import LOOKUP_AND_NOTE, api_key, submit_task
from tests.tracing.conftest import named, one, span_id, trace_of
from tests.workers import StartWorker, wait_until

pytestmark = pytest.mark.worker

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


@dataclass
class Received:
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    service: str
    links: list[tuple[str, str]]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver (POST /v1/traces, protobuf), keeping every span it is sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[Received] = []
        self.lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.spans)


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        if self.path != "/v1/traces":
            self.send_response(404)
            self.end_headers()
            return
        request = ExportTraceServiceRequest.FromString(body)
        found = []
        for resource_spans in request.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(
                        Received(
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes={kv.key: _value(kv.value) for kv in span.attributes},
                            service=str(resource.get("service.name")),
                            links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                        )
                    )
        with self.server.lock:
            self.server.spans.extend(found)
        payload = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _names(spans: list[Received]) -> list[str]:
    return [span.name for span in spans]


def test_a_clients_trace_continues_through_the_worker(
    start_worker: StartWorker, receiver: Receiver, spans: InMemorySpanExporter
) -> None:
    orders_seed_demo()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_key(User.objects.create(username='c'))}")
    worker = start_worker(
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_SERVICE_NAME="worker-under-test",
    )

    response = client.post(
        "/api/v1/tasks/", LOOKUP_AND_NOTE, format="json", HTTP_TRACEPARENT=f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
    )
    assert response.status_code == 201 and response.json()["trace_id"] == CLIENT_TRACE
    task_id = response.json()["id"]
    wait_until(
        lambda: Task.objects.get(pk=task_id).state == TaskState.COMPLETED, describe="task COMPLETED", watch=[worker]
    )
    wait_until(
        lambda: (
            "task.run" in _names(receiver.received())
            and _names(receiver.received()).count("chat offline") == 3
            and len([n for n in _names(receiver.received()) if n.startswith("execute_tool ")]) == 2
        ),
        timeout=30,
        describe="the worker's spans at the receiver",
    )

    # This process: the request, the submission, and the message sent with the trace context in its headers.
    local = spans.get_finished_spans()
    submit = one(local, "task.submit")
    publish = one(local, "apply_async/orchestration.tasks.run_task")
    assert publish.kind == SpanKind.PRODUCER
    assert trace_of(submit) == trace_of(publish) == CLIENT_TRACE
    assert publish.parent is not None and publish.parent.span_id == span_id(submit)

    # The worker: every span in the client's trace, each under the one that led to it.
    received = receiver.received()
    assert {span.trace_id for span in received} == {CLIENT_TRACE}
    assert {span.service for span in received} == {"worker-under-test"}, "OTEL_SERVICE_NAME, read by the SDK"
    consume = next(span for span in received if span.name == "run/orchestration.tasks.run_task")
    assert consume.parent_span_id == f"{span_id(publish):016x}", "the consumer span continues the message's"
    run = next(span for span in received if span.name == "task.run")
    assert run.parent_span_id == consume.span_id
    assert run.attributes["task.id"] == task_id and run.attributes["task.state.after"] == "COMPLETED"
    children = [span for span in received if span.name.startswith(("chat ", "execute_tool "))]
    assert len(children) == 5 and {span.parent_span_id for span in children} == {run.span_id}
    tools = [span for span in children if span.name.startswith("execute_tool ")]
    assert [span.attributes["gen_ai.tool.name"] for span in tools] == ["lookup_order", "add_order_note"]
    chats = [span for span in children if span.name.startswith("chat ")]
    assert all(span.attributes["gen_ai.usage.output_tokens"] > 0 for span in chats)


def _run_and_its_consumer(received: list[Any]) -> tuple[Any, Any] | None:
    """The one task.run span and the consumer span of the copy that ran it, once both arrived."""
    runs = [span for span in received if span.name == "task.run"]
    if not runs:
        return None
    (run,) = runs
    consumes = [span for span in received if span.name == "run/orchestration.tasks.run_task"]
    ran = [span for span in consumes if (span.trace_id, span.span_id) in run.links]
    return (run, ran[0]) if ran else None


def test_a_run_the_sweeper_resent_stays_in_the_tasks_trace(
    start_worker: StartWorker, receiver: Receiver, spans: InMemorySpanExporter
) -> None:
    """The message is lost; the sweeper's copy carries the sweeper's context, not the task's: the run is still in
    the task's trace, under the task's stable parent, and links to the consumer span of the sweeper's trace."""
    orders_seed_demo()
    task = submit_task(User.objects.create(username="swept"))
    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # the message is gone
    worker = start_worker(
        OTEL_TRACES_EXPORTER="otlp", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="100"
    )
    wait_until(
        lambda: Task.objects.get(pk=task.pk).state == TaskState.COMPLETED,
        sweep=True,
        describe="task COMPLETED after the sweeper re-sent it",
        watch=[worker],
    )
    # Under load the sweeper may re-send more than once before a copy starts: the consumer span that matters is the
    # one whose copy ran the task (the others found it leased or done), and it ends (is exported) after the run.
    wait_until(lambda: _run_and_its_consumer(receiver.received()) is not None, timeout=30, describe="the run's spans")

    received = receiver.received()
    run, consume = _run_and_its_consumer(received) or (None, None)
    assert run is not None and consume is not None
    lost, *resent = named(spans.get_finished_spans(), "apply_async/orchestration.tasks.run_task")
    assert trace_of(lost) == task.trace_id, "sent at submission, in the task's trace"
    assert task.trace_id not in {trace_of(span) for span in resent}, "the sweeper's copies: traces of their own"
    assert consume.trace_id in {trace_of(span) for span in resent}
    assert run.trace_id == task.trace_id != consume.trace_id
    assert run.parent_span_id == f"{otel.anchor_span_id(str(task.pk)):016x}"
    assert run.links == [(consume.trace_id, consume.span_id)]
    children = [span for span in received if span.name.startswith(("chat ", "execute_tool "))]
    assert len(children) == 5 and {(span.trace_id, span.parent_span_id) for span in children} == {
        (task.trace_id, run.span_id)
    }

"""Traces of a run: the SDK's own, and OpenTelemetry spans for every model request and tool call.

The SDK's: each run is traced as `trace_<the task's trace id>`; spans (model calls, tool calls, the agent) are
collected in memory as they end and stored on the task by the orchestrator after the run (`pop_spans`), and
exported to OpenAI only when a key is configured.

OpenTelemetry's (`TracedJournal`, when `lib.otel` is on): the journal is the one door every real model request
and tool call goes through, whatever the model class (the SDK's own spans for model calls come only from its
OpenAI model classes, and know nothing of replays, call ids or attempts). A turn replayed from the journal costs
nothing and gets no span; a tool call gets a span either way, marked when its result was replayed.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from typing import Any

from agents.tracing import Span, Trace, TracingProcessor, set_trace_processors, set_tracing_export_api_key
from agents.tracing.processors import default_processor
from django.conf import settings
from opentelemetry import trace
from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GEN_AI_AGENT_NAME,
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MAX_TOKENS,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_REQUEST_TEMPERATURE,
    GEN_AI_REQUEST_TOP_P,
    GEN_AI_RESPONSE_ID,
    GEN_AI_TOOL_CALL_ID,
    GEN_AI_TOOL_NAME,
    GEN_AI_TOOL_TYPE,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from agent_runtime.endpoints import OFFLINE
from agent_runtime.journal import ModelCall, RunJournal, RunSuspended, TurnUsage
from agent_runtime.specs import AgentSpec
from lib import otel
from lib.exceptions import cause_of


class SpanCollector(TracingProcessor):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def on_trace_start(self, trace: Trace) -> None:
        pass

    def on_trace_end(self, trace: Trace) -> None:
        pass

    def on_span_start(self, span: Span[Any]) -> None:
        pass

    def on_span_end(self, span: Span[Any]) -> None:
        exported = span.export()
        if exported is not None:
            with self._lock:
                self._spans[span.trace_id].append(exported)

    def pop(self, trace_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return self._spans.pop(trace_id, [])

    def shutdown(self) -> None:
        pass

    def force_flush(self) -> None:
        pass


COLLECTOR = SpanCollector()
_installed_for: tuple[bool, str] | None = None


def sdk_trace_id(trace_id: str) -> str:
    return f"trace_{trace_id}"


def install_tracing() -> None:
    """Collect spans always; keep the SDK's exporter to OpenAI only when export is on and a key is set.
    Re-done only when those settings change (once per process in practice)."""
    global _installed_for
    wanted = (bool(settings.OPENAI_TRACE_EXPORT and settings.OPENAI_API_KEY), settings.OPENAI_API_KEY)
    if wanted == _installed_for:
        return
    if wanted[0]:
        set_tracing_export_api_key(settings.OPENAI_API_KEY)
        set_trace_processors([default_processor(), COLLECTOR])
    else:
        set_trace_processors([COLLECTOR])  # replaces the exporter: nothing leaves the machine
    _installed_for = wanted


def pop_spans(trace_id: str) -> list[dict[str, Any]]:
    """The spans of the task's runs since the last pop."""
    return COLLECTOR.pop(sdk_trace_id(trace_id))


# --- OpenTelemetry: model requests and tool calls --------------------------------------------------------

_REQUEST_SETTINGS = {
    "temperature": GEN_AI_REQUEST_TEMPERATURE,
    "top_p": GEN_AI_REQUEST_TOP_P,
    "max_tokens": GEN_AI_REQUEST_MAX_TOKENS,
}


def traced_journal(journal: RunJournal, spec: AgentSpec) -> RunJournal:
    """`journal`, traced when OpenTelemetry is on in this process (and untouched, at no cost, when it is off)."""
    return TracedJournal(journal, spec) if otel.enabled() else journal


def provider_name(model: str) -> str | None:
    """`gen_ai.provider.name`: OpenAI's API when no other endpoint is configured; unknown for a compatible server."""
    if model == OFFLINE or settings.OPENAI_BASE_URL:
        return None
    return "openai"


class TracedJournal:
    """A `RunJournal` that opens a span for each model request (`chat <model>`, from the moment the journal has
    recorded that it begins until the response or the failure) and each tool call (`execute_tool <name>`),
    children of the current span (the run's), with the GenAI semantic conventions' attributes."""

    def __init__(self, inner: RunJournal, spec: AgentSpec) -> None:
        self.inner = inner
        self.agent = spec.name
        self._request: dict[str, AttributeValue] = {
            key: value
            for name, key in _REQUEST_SETTINGS.items()
            if isinstance(value := spec.model_settings.get(name), int | float)
        }
        self._turns: dict[tuple[int, ModelCall], trace.Span] = {}

    async def replay_turn(self, turn: int, call: ModelCall = "turn") -> dict[str, Any] | None:
        return await self.inner.replay_turn(turn, call)

    async def begin_turn(
        self, turn: int, model: str, request: dict[str, Any], worst_case: TurnUsage, call: ModelCall = "turn"
    ) -> int:
        attempt = await self.inner.begin_turn(turn, model, request, worst_case, call)
        attributes: dict[str, AttributeValue] = {
            GEN_AI_OPERATION_NAME: "chat",
            GEN_AI_REQUEST_MODEL: model,
            GEN_AI_AGENT_NAME: self.agent,
            "task.turn": turn,
            "task.model_call": call,
            otel.STEP_ATTEMPT: attempt,
            **self._request,
        }
        provider = provider_name(model)
        if provider:
            attributes[GEN_AI_PROVIDER_NAME] = provider
        span = otel.tracer().start_span(f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes)
        self._turns[(turn, call)] = span
        return attempt

    async def end_turn(
        self, turn: int, response: dict[str, Any], usage: TurnUsage, call: ModelCall = "turn"
    ) -> dict[str, Any]:
        span = self._turns.pop((turn, call), None)
        if span is not None:
            span.set_attributes(
                {GEN_AI_USAGE_INPUT_TOKENS: usage.input_tokens, GEN_AI_USAGE_OUTPUT_TOKENS: usage.output_tokens}
            )
            if response.get("response_id"):
                span.set_attribute(GEN_AI_RESPONSE_ID, str(response["response_id"]))
            span.end()
        return await self.inner.end_turn(turn, response, usage, call)

    async def fail_turn(self, turn: int, error: dict[str, Any], call: ModelCall = "turn") -> None:
        span = self._turns.pop((turn, call), None)
        if span is not None:
            span.set_attribute(ERROR_TYPE, str(error.get("type") or "_OTHER"))
            span.set_status(Status(StatusCode.ERROR, str(error.get("message", ""))[:500]))
            span.end()
        await self.inner.fail_turn(turn, error, call)

    async def operator_instructions(self) -> list[tuple[int, str]]:
        return await self.inner.operator_instructions()

    async def call_tool(self, call_id: str, name: str, arguments: str) -> str:
        attributes: dict[str, AttributeValue] = {
            GEN_AI_OPERATION_NAME: "execute_tool",
            GEN_AI_TOOL_NAME: name,
            GEN_AI_TOOL_CALL_ID: call_id,
            GEN_AI_TOOL_TYPE: "function",
            GEN_AI_AGENT_NAME: self.agent,
        }
        with (
            otel.tracer().start_as_current_span(
                f"execute_tool {name}", attributes=attributes, record_exception=False, set_status_on_exception=False
            ) as span,
            otel.step_scope(name, span) as scope,
        ):
            error_type: str | None = None
            try:
                envelope = await self.inner.call_tool(call_id, name, arguments)
                # The orchestrator records the attempt of a call that runs; one it did not came from the journal.
                span.set_attribute(otel.STEP_REPLAYED, scope.attempt is None)
                error_type = _error_code(envelope)
                return envelope
            except Exception as exc:
                suspended = cause_of(exc, RunSuspended)
                if suspended is None:
                    error_type = type(exc).__qualname__
                    span.record_exception(exc)
                else:
                    span.set_attribute(otel.RUN_SUSPENDED, str(suspended))  # a wait, not a failure
                raise
            finally:
                error_type = error_type or scope.error_type  # a failure the run stopped on (a retry's backoff)
                if error_type:
                    span.set_attribute(ERROR_TYPE, error_type)
                    span.set_status(Status(StatusCode.ERROR, error_type))


def _error_code(envelope: str) -> str | None:
    """The error code of a failed tool result, as the model reads it."""
    try:
        parsed = json.loads(envelope)
    except ValueError:
        return None
    if isinstance(parsed, dict) and parsed.get("ok") is False:
        return str(parsed.get("error_code") or "_OTHER")
    return None

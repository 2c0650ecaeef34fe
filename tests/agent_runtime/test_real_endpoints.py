"""The SDK's real OpenAI model classes, over a faked HTTP transport, drive tasks end to end."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx2
import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from agent_runtime.models import AgentConfig, ModelPrice
from agent_runtime.services import agent_update
from orchestration.models import Step, StepKind, StepState, Task, TaskState
from orchestration.services.execution import task_run
from tests.agent_runtime.fake_openai import (
    FakeEndpoint,
    chat_call,
    chat_message,
    responses_call,
    responses_message,
    use_endpoint,
)
from tests.factories import submit_task

pytestmark = pytest.mark.django_db

LOOKUP = {"order_number": "A-1001"}


def _default_agent_model(model: str) -> None:
    agent_update(agent=AgentConfig.objects.get(name="default"), values={"model": model}, user=None)


@pytest.fixture
def responses_api(settings: Any, demo_orders: None) -> None:
    _default_agent_model("gpt-test")
    ModelPrice.objects.create(
        model="gpt-test", input_usd_per_million=Decimal("2.50"), output_usd_per_million=Decimal("10.00")
    )
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_BASE_URL = ""
    settings.OPENAI_API_STYLE = "responses"


@pytest.fixture
def chat_completions_api(settings: Any, demo_orders: None) -> None:
    _default_agent_model("local-model")
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = "http://llm.local/v1"
    settings.OPENAI_API_STYLE = "chat_completions"


def _task() -> Task:
    return submit_task(User.objects.create(username="client"), goal="Look up order A-1001", task_input=LOOKUP)


def _run(task: Task) -> Task:
    task_run(task_id=str(task.pk), worker="worker:test")
    task.refresh_from_db()
    return task


def _make_due(task: Task) -> None:
    Task.objects.filter(pk=task.pk).update(next_run_at=timezone.now())


def _turns(task: Task) -> list[Step]:
    return list(Step.objects.filter(task=task, kind=StepKind.MODEL_TURN).order_by("seq"))


def test_responses_model_completes_a_task_with_tokens_from_usage(
    responses_api: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = FakeEndpoint(
        [responses_call("lookup_order", LOOKUP, "call_a", (120, 30)), responses_message("Shipped.", (200, 12))]
    )
    use_endpoint(monkeypatch, endpoint)
    task = _run(_task())
    assert task.state == TaskState.COMPLETED
    assert task.result == {"output": "Shipped."}
    assert endpoint.paths == ["/v1/responses", "/v1/responses"]
    assert [(t.input_tokens, t.output_tokens) for t in _turns(task)] == [(120, 30), (200, 12)]
    assert (task.input_tokens, task.output_tokens) == (320, 42)
    # gpt-test costs 2.50 USD per million input tokens and 10.00 per million output tokens.
    assert [t.cost for t in _turns(task)] == [Decimal("0.000600"), Decimal("0.000620")]
    assert task.cost == Decimal("0.001220")
    # The model saw the contract's strict schema and, next turn, the tool's envelope.
    tool = next(tool for tool in endpoint.requests[0]["tools"] if tool["name"] == "lookup_order")
    assert tool["parameters"]["additionalProperties"] is False and tool["strict"] is True
    outputs = [item for item in endpoint.requests[1]["input"] if item.get("type") == "function_call_output"]
    assert json.loads(outputs[0]["output"])["data"]["order_number"] == "A-1001"


def test_chat_completions_model_completes_a_task(chat_completions_api: None, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = FakeEndpoint(
        [chat_call("lookup_order", LOOKUP, "call_b", (80, 9)), chat_message("It shipped.", (95, 4))]
    )
    use_endpoint(monkeypatch, endpoint)
    task = _run(_task())
    assert task.state == TaskState.COMPLETED
    assert endpoint.paths == ["/v1/chat/completions", "/v1/chat/completions"]
    assert [(t.input_tokens, t.output_tokens) for t in _turns(task)] == [(80, 9), (95, 4)]
    assert task.cost == 0, "no price row for local-model: recorded as 0"
    assert Step.objects.get(task=task, kind=StepKind.TOOL_CALL).output["ok"] is True


def test_rate_limit_honours_retry_after_then_succeeds(responses_api: None, monkeypatch: pytest.MonkeyPatch) -> None:
    limited = httpx2.Response(429, headers={"retry-after": "7"}, json={"error": {"message": "slow down"}})
    endpoint = FakeEndpoint([limited, responses_message("Done.", (10, 2))])
    use_endpoint(monkeypatch, endpoint)
    before = timezone.now()
    task = _run(_task())
    assert task.state == TaskState.RECEIVED
    assert task.next_run_at is not None and (task.next_run_at - before).total_seconds() >= 7
    assert "HTTP 429" in task.state_reason
    _make_due(task)
    task = _run(task)
    assert task.state == TaskState.COMPLETED
    assert [t.attempt for t in _turns(task)] == [2]


def test_server_errors_are_retried_by_the_policy(responses_api: None, monkeypatch: pytest.MonkeyPatch) -> None:
    error = httpx2.Response(500, json={"error": {"message": "upstream exploded"}})
    endpoint = FakeEndpoint([error, error, error, responses_message("Finally.", (10, 2))])
    use_endpoint(monkeypatch, endpoint)
    task = _task()
    for _ in range(3):
        task = _run(task)
        assert task.state == TaskState.RECEIVED and "HTTP 500" in task.state_reason
        _make_due(task)
    task = _run(task)
    assert task.state == TaskState.COMPLETED
    assert [t.attempt for t in _turns(task)] == [4]
    assert len(endpoint.requests) == 4


def test_server_errors_past_the_policy_hand_off(responses_api: None, monkeypatch: pytest.MonkeyPatch) -> None:
    use_endpoint(monkeypatch, FakeEndpoint([httpx2.Response(503, json={})] * 10))
    task = _task()
    for _ in range(4):
        task = _run(task)
        _make_due(task)
    assert task.state == TaskState.MANUAL_REVIEW
    assert "failed 4 times" in task.state_reason and "HTTP 503" in task.state_reason


def test_bad_credentials_are_fatal_with_a_clear_reason(responses_api: None, monkeypatch: pytest.MonkeyPatch) -> None:
    denied = httpx2.Response(401, json={"error": {"message": "Incorrect API key provided"}})
    endpoint = FakeEndpoint([denied])
    use_endpoint(monkeypatch, endpoint)
    task = _run(_task())
    assert task.state == TaskState.MANUAL_REVIEW
    assert "refused our credentials" in task.state_reason and "Incorrect API key" in task.state_reason
    assert len(endpoint.requests) == 1
    assert _turns(task)[0].state == StepState.FAILED


def test_malformed_function_arguments_are_replanned(responses_api: None, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = FakeEndpoint(
        [
            responses_call("lookup_order", '{"order_number": A-1001', "call_bad", (50, 5)),
            responses_call("lookup_order", LOOKUP, "call_good", (60, 5)),
            responses_message("Shipped.", (70, 3)),
        ]
    )
    use_endpoint(monkeypatch, endpoint)
    task = _run(_task())
    assert task.state == TaskState.COMPLETED
    bad = Step.objects.get(task=task, ref="call:1:call_bad")
    assert bad.output["error_code"] == "INVALID_ARGUMENTS" and "not valid JSON" in bad.output["error_message"]
    fed_back = [i for i in endpoint.requests[1]["input"] if i.get("type") == "function_call_output"]
    assert json.loads(fed_back[0]["output"])["error_code"] == "INVALID_ARGUMENTS"


def test_a_server_reusing_call_ids_gets_a_clear_reason(
    chat_completions_api: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """llama.cpp-style ids ("call_0" every turn): turn two must not replay turn one's result; the SDK refuses."""
    note = {"order_number": "A-1001", "note": "called"}
    endpoint = FakeEndpoint(
        [
            chat_call("lookup_order", LOOKUP, "call_0", (10, 2)),
            chat_call("add_order_note", note, "call_0", (10, 2)),
            chat_message("Done.", (10, 2)),
        ]
    )
    use_endpoint(monkeypatch, endpoint)
    task = _run(_task())
    assert task.state == TaskState.MANUAL_REVIEW
    assert "reused a completed tool call ID" in task.state_reason
    assert [s.name for s in Step.objects.filter(task=task, kind=StepKind.TOOL_CALL)] == ["lookup_order"]


def test_nul_characters_from_the_model_are_stored_safely(responses_api: None, monkeypatch: pytest.MonkeyPatch) -> None:
    note = {"order_number": "A-1001", "note": "bad\u0000byte"}
    endpoint = FakeEndpoint(
        [
            responses_call("add_order_note", note, "call_nul", (10, 2)),
            responses_message("Could not add it\u0000.", (10, 2)),
        ]
    )
    use_endpoint(monkeypatch, endpoint)
    task = _run(_task())
    assert task.state == TaskState.COMPLETED
    assert task.result == {"output": "Could not add it\ufffd."}
    step = Step.objects.get(task=task, kind=StepKind.TOOL_CALL)
    assert step.output["error_code"] == "INVALID_ARGUMENTS"
    assert step.input["arguments"]["note"] == "bad\ufffdbyte"


def test_non_json_numbers_from_the_model_are_replanned(responses_api: None, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = FakeEndpoint(
        [
            responses_call("lookup_order", '{"order_number": NaN}', "call_nan", (10, 2)),
            responses_message("Gave up.", (10, 2)),
        ]
    )
    use_endpoint(monkeypatch, endpoint)
    task = _run(_task())
    assert task.state == TaskState.COMPLETED and task.replans == 1
    output = Step.objects.get(task=task, kind=StepKind.TOOL_CALL).output
    assert output["error_code"] == "INVALID_ARGUMENTS" and "NaN" in output["error_message"]


def test_absurdly_nested_arguments_stop_with_a_clear_reason(
    responses_api: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK cannot parse them (RecursionError) and every replay would fail alike: a human, at once."""
    deep = "[" * 100_000 + "]" * 100_000
    endpoint = FakeEndpoint([responses_call("lookup_order", deep, "call_deep", (10, 2))])
    use_endpoint(monkeypatch, endpoint)
    task = _run(_task())
    assert task.state == TaskState.MANUAL_REVIEW and "nested too deeply" in task.state_reason
    assert len(endpoint.requests) == 1

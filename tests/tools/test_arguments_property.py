"""Property-based: for every demo contract, valid arguments reach the adapter and invalid ones never do."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from lib.strict_json import contains_nul
from tools.adapters.base import CallContext, ToolAdapter
from tools.contract import Contract
from tools.envelope import ToolResult
from tools.errors import ErrorCode
from tools.models import ToolContract, ToolContractVersion
from tools.services import calls
from tools.services.calls import tool_call

DEMO_TOOLS = ["lookup_order", "refund_order", "update_shipping_address", "add_order_note", "handoff_to_human"]
PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


class SpyAdapter(ToolAdapter):
    """Stands in for the real adapter: records what reached it."""

    name = "spy"
    description = "spy"
    parameters_schema = {}
    result_schema = {}
    database_backed = False

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def run(self, arguments: dict[str, Any], context: CallContext) -> ToolResult:
        self.calls.append(arguments)
        return ToolResult.failure("NOT_REALLY_RUN", "spy", retryable=False)


def _contract(name: str) -> Contract:
    version = ToolContractVersion.objects.select_related("contract").get(
        contract=ToolContract.objects.get(name=name), number=1
    )
    return Contract.from_version(version)


def _call(contract: Contract, raw: str, key: str) -> ToolResult:
    context = CallContext(idempotency_key=key, trace_id="t" * 32, task_id="task", timeout_seconds=5)
    return tool_call(contract=contract, raw_arguments=raw, context=context, approved=True)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> SpyAdapter:
    adapter = SpyAdapter()
    monkeypatch.setattr(calls, "adapter_for", lambda name: adapter)
    return adapter


def _counter() -> Any:
    count = iter(range(10**9))
    return lambda: f"key-{next(count)}"


@pytest.mark.django_db
@pytest.mark.parametrize("tool", DEMO_TOOLS)
def test_valid_arguments_reach_the_adapter(tool: str, spy: SpyAdapter) -> None:
    contract = _contract(tool)
    next_key = _counter()

    @PROPERTY
    @given(arguments=from_schema(contract.strict_parameters_schema))
    def check(arguments: dict[str, Any]) -> None:
        assume(not contains_nul(arguments))  # valid JSON Schema, but PostgreSQL cannot store NUL: refused apart
        before = len(spy.calls)
        result = _call(contract, json.dumps(arguments), next_key())
        assert result.error_code != ErrorCode.INVALID_ARGUMENTS, result.error_message
        assert spy.calls[before:] == [arguments]

    check()


def _breakages(schema: dict[str, Any]) -> st.SearchStrategy[tuple[dict[str, Any], str]]:
    """(a valid example broken one way, the name the error must mention)."""
    properties = schema["properties"]
    required = list(schema["required"])

    def drop(example: dict[str, Any], name: str) -> tuple[dict[str, Any], str]:
        return {k: v for k, v in example.items() if k != name}, name

    def extra(example: dict[str, Any], name: str) -> tuple[dict[str, Any], str]:
        return {**example, "unexpected_field": 1}, "unexpected_field"

    def wrong_type(example: dict[str, Any], name: str) -> tuple[dict[str, Any], str]:
        types = properties[name].get("type")
        wrong: Any = [1, 2] if types != "array" else {"not": "a list"}
        return {**example, name: wrong}, name

    return st.tuples(from_schema(schema), st.sampled_from(required), st.sampled_from([drop, extra, wrong_type])).map(
        lambda parts: parts[2](parts[0], parts[1])
    )


@pytest.mark.django_db
@pytest.mark.parametrize("tool", DEMO_TOOLS)
def test_invalid_arguments_never_reach_the_adapter_and_name_the_field(tool: str, spy: SpyAdapter) -> None:
    contract = _contract(tool)
    next_key = _counter()

    @PROPERTY
    @given(broken=_breakages(contract.strict_parameters_schema))
    def check(broken: tuple[dict[str, Any], str]) -> None:
        arguments, field = broken
        result = _call(contract, json.dumps(arguments), next_key())
        assert (result.ok, result.error_code, result.retryable) == (False, ErrorCode.INVALID_ARGUMENTS, False)
        assert field in (result.error_message or "")
        assert spy.calls == []

    check()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "raw",
    [
        "",
        "{",
        "[1, 2]",
        '"text"',
        "null",
        '{"order_number": NaN}',
        '{"order_number": Infinity}',
        "[" * 100_000 + "]" * 100_000,
        '{"order_number": ' + "1" * 5000 + "}",
    ],
)
def test_unparseable_arguments_are_invalid(raw: str, spy: SpyAdapter) -> None:
    result = _call(_contract("lookup_order"), raw, "k")
    assert result.error_code == ErrorCode.INVALID_ARGUMENTS and spy.calls == []


@pytest.mark.django_db
def test_approval_rule_holds_only_above_the_limit(spy: SpyAdapter) -> None:
    contract = _contract("refund_order")
    refund = {"order_number": "A-1002", "currency": "USD", "reason": "r"}
    context = CallContext(idempotency_key="k1", trace_id="t", task_id="task", timeout_seconds=5)
    held = tool_call(contract=contract, raw_arguments=json.dumps({**refund, "amount_cents": 50001}), context=context)
    assert held.error_code == ErrorCode.APPROVAL_REQUIRED and spy.calls == []
    context = CallContext(idempotency_key="k2", trace_id="t", task_id="task", timeout_seconds=5)
    at_limit = tool_call(
        contract=contract, raw_arguments=json.dumps({**refund, "amount_cents": 50000}), context=context
    )
    assert at_limit.error_code != ErrorCode.APPROVAL_REQUIRED and len(spy.calls) == 1

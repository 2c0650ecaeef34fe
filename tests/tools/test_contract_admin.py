"""Editing contracts in the admin: every save is a version the next call uses; every bad edit a form error."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from orchestration.models import Step
from orchestration.services.execution import task_run
from tests.factories import submit_task
from tools.circuit import CLOSED, OPEN
from tools.contract import Contract
from tools.models import ToolContract, ToolContractVersion
from tools.selectors import active_contract, tool_specs
from tools.services.circuits import circuit_record, circuit_state
from tools.services.contracts import version_values

pytestmark = pytest.mark.django_db


def _form_data(contract: ToolContract, **changes: Any) -> dict[str, Any]:
    assert contract.current is not None
    values = {**version_values(contract.current), **changes}
    data: dict[str, Any] = {}
    for name, value in values.items():
        if name in {"parameters_schema", "result_schema", "error_codes", "approval_rule", "sensitive_fields"}:
            data[name] = value if isinstance(value, str) else json.dumps(value)
        elif name == "enabled":
            if value:
                data[name] = "on"
        else:
            data[name] = value
    return data


def _url(contract: ToolContract) -> str:
    return f"/admin/tools/toolcontract/{contract.pk}/change/"


def _post(client: Client, contract: ToolContract, **changes: Any) -> Any:
    return client.post(_url(contract), _form_data(contract, **changes))


def test_an_edit_creates_a_version_that_the_next_call_uses(operator: Client, demo_orders: None) -> None:
    contract = ToolContract.objects.get(name="lookup_order")
    response = _post(operator, contract, description="Find an order by number.", comment="clearer wording")
    assert response.status_code == 302, response.content
    contract.refresh_from_db()
    assert contract.current is not None
    assert (contract.current.number, contract.current.comment) == (2, "clearer wording")
    assert contract.current.created_by is not None and contract.current.created_by.username == "ops"
    assert ToolContractVersion.objects.get(contract=contract, number=1).description != "Find an order by number."
    assert next(s for s in tool_specs() if s.name == "lookup_order").description == "Find an order by number."

    task = submit_task(
        User.objects.create(username="client"), goal="Look up order A-1001", task_input={"order_number": "A-1001"}
    )
    task_run(task_id=str(task.pk), worker="worker:test")
    step = Step.objects.get(task=task, name="lookup_order")
    assert step.contract_version_id == contract.current.pk


LOOKUP_PARAMS = {
    "type": "object",
    "properties": {"order_number": {"type": "string"}},
    "required": ["order_number"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("tool", "changes", "field", "message"),
    [
        ("lookup_order", {"parameters_schema": {"type": "objekt"}}, "parameters_schema", "not a valid JSON Schema"),
        ("lookup_order", {"parameters_schema": "{not json"}, "parameters_schema", "Enter a valid JSON"),
        (
            "lookup_order",
            {"error_codes": [{"code": "ORDER_NOT_FOUND", "meaning": "gone", "action": "replan"}]},
            "error_codes",
            "ORDER_NOT_FOUND: needs retryable",
        ),
        (
            "lookup_order",
            {"error_codes": [{"code": "ORDER_NOT_FOUND", "meaning": "gone", "retryable": False}]},
            "error_codes",
            "ORDER_NOT_FOUND: needs a recovery action",
        ),
        (
            "refund_order",
            {
                "parameters_schema": {
                    "type": "object",
                    "properties": {"order_number": {"type": "string"}, "amount_cents": {"type": "number"}},
                    "required": ["order_number", "amount_cents"],
                    "additionalProperties": False,
                }
            },
            "parameters_schema",
            "amount_cents: money must be an integer in minor units",
        ),
        (
            "lookup_order",
            {
                "parameters_schema": {
                    **LOOKUP_PARAMS,
                    "properties": {**LOOKUP_PARAMS["properties"], "placed_at": {"type": "string"}},  # type: ignore[dict-item]
                    "required": ["order_number", "placed_at"],
                }
            },
            "parameters_schema",
            'placed_at: a time must be ISO 8601: add "format": "date-time"',
        ),
        ("lookup_order", {"timeout_seconds": 0}, "timeout_seconds", "must be more than 0"),
        ("refund_order", {"approval_rule": {"field": "reason", "above": 5}}, "approval_rule", "integer parameter"),
        ("update_shipping_address", {"sensitive_fields": ["address.nope"]}, "sensitive_fields", "no such parameter"),
    ],
)
def test_an_invalid_edit_is_refused_with_a_form_error_and_changes_nothing(
    operator: Client, tool: str, changes: dict[str, Any], field: str, message: str
) -> None:
    contract = ToolContract.objects.get(name=tool)
    before = ToolContractVersion.objects.count()
    response = _post(operator, contract, **changes)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert field in errors, errors
    assert any(message in error for error in errors[field]), errors[field]
    assert ToolContractVersion.objects.count() == before
    contract.refresh_from_db()
    assert contract.current is not None and contract.current.number == 1


def test_change_page_shows_what_the_agent_sees(operator: Client) -> None:
    contract = ToolContract.objects.get(name="refund_order")
    page = operator.get(_url(contract)).content.decode()
    spec = Contract.from_version(contract.current).spec()  # type: ignore[arg-type]
    assert "exactly what the model is shown" in page.lower()
    assert "&quot;additionalProperties&quot;: false" in page
    assert spec.description.split(".")[0] in page


def test_a_version_shows_its_diff_and_can_be_restored(operator: Client) -> None:
    contract = ToolContract.objects.get(name="lookup_order")
    original = contract.current
    assert original is not None
    assert _post(operator, contract, timeout_seconds=3).status_code == 302
    contract.refresh_from_db()
    assert contract.current is not None
    diff_page = operator.get(f"/admin/tools/toolcontractversion/{contract.current.pk}/change/").content.decode()
    assert "-  &quot;timeout_seconds&quot;: 10.0" in diff_page and "+  &quot;timeout_seconds&quot;: 3.0" in diff_page

    response = operator.post(
        "/admin/tools/toolcontractversion/",
        {"action": "restore", "_selected_action": [original.pk]},
    )
    assert response.status_code == 302
    restored = active_contract("lookup_order")
    assert restored is not None and (restored.version, restored.timeout_seconds) == (3, 10.0)
    assert ToolContractVersion.objects.get(contract=contract, number=3).comment == "restored v1"


def test_operator_sees_and_resets_the_circuit(operator: Client) -> None:
    contract = active_contract("refund_order")
    assert contract is not None
    for _ in range(contract.circuit.failure_threshold):
        circuit_record(contract, failed=True, code="ORDER_LOCKED")
    assert circuit_state("refund_order").status == OPEN
    page = operator.get(_url(ToolContract.objects.get(name="refund_order"))).content.decode()
    assert "status: open" in page and "ORDER_LOCKED" in page
    operator.post(
        "/admin/tools/toolcontract/",
        {"action": "reset_circuits", "_selected_action": [ToolContract.objects.get(name="refund_order").pk]},
    )
    assert circuit_state("refund_order").status == CLOSED


def test_a_new_contract_can_be_added(operator: Client) -> None:
    template = ToolContract.objects.get(name="lookup_order")
    data = {**_form_data(template), "name": "lookup_order_v2", "adapter": "lookup_order"}
    response = operator.post("/admin/tools/toolcontract/add/", data)
    assert response.status_code == 302, response.content
    added = active_contract("lookup_order_v2")
    assert added is not None and added.version == 1 and added.adapter == "lookup_order"

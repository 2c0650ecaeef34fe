"""A task run in-process with the offline model: the scan sees its model requests and log records, finds a canary
that reaches the model through a goal or a tool's contract, and finds no card number the task was given."""

from __future__ import annotations

import random
import re

import pytest
from django.contrib.auth.models import User

from orchestration.models import TaskState
from orchestration.services.execution import task_run
from tests.factories import submit_task
from tests.lib.test_redaction import card
from tests.security_canaries import Observation, observed, planted
from tools.models import ToolContract
from tools.services.contracts import contract_update

pytestmark = pytest.mark.django_db


def _run(goal: str, task_input: dict[str, object]) -> tuple[Observation, TaskState]:
    with observed() as seen:
        task = submit_task(User.objects.create(username="client"), goal=goal, task_input=task_input)
        task_run(task_id=str(task.pk), worker="worker:test")
        task.refresh_from_db()
    return seen, TaskState(task.state)


def test_a_task_run_is_scanned_and_leaks_nothing(demo_orders: None) -> None:
    seen, state = _run("Look up order A-1001", {"order_number": "A-1001"})
    assert state == TaskState.COMPLETED
    assert len(seen.model_requests) >= 2, "every turn's request is scanned"
    assert any("lookup_order" in request for request in seen.model_requests), "tools' schemas are in the scan"
    assert seen.log_records, "the run's log records are scanned"
    assert seen.findings == []


def test_a_canary_in_a_goal_is_found_in_the_model_request(demo_orders: None) -> None:
    seen, _ = _run(f"Look up order A-1001 using key {planted()['SECRET_KEY']}", {"order_number": "A-1001"})
    found = {(finding.what, finding.where) for finding in seen.findings}
    assert ("secret canary SECRET_KEY", "the model request to OfflineModel ('offline')") in found


def test_a_canary_in_a_tool_contract_is_found_in_the_tool_schema_sent(demo_orders: None) -> None:
    contract = ToolContract.objects.get(name="lookup_order")
    description = f"Look up an order. Use api key {planted()['OPENAI_API_KEY']}."
    contract_update(contract=contract, values={"description": description}, user=None)
    seen, _ = _run("Look up order A-1001", {"order_number": "A-1001"})
    in_requests = [f for f in seen.findings if f.where.startswith("the model request")]
    assert in_requests and all(f.what == "secret canary OPENAI_API_KEY" for f in in_requests)
    assert "Use api key <OPENAI_API_KEY>" in in_requests[0].excerpt


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_a_card_number_in_a_task_reaches_no_log_line_and_no_model_request(demo_orders: None, seed: int) -> None:
    number = card(random.Random(seed))
    digits = number.replace(" ", "")
    seen, state = _run(
        f"Look up order A-1001; the customer paid with card {number}",
        {"order_number": "A-1001", "payment": {"card": number}, "note": f"card {digits}"},
    )
    assert state == TaskState.COMPLETED
    assert seen.model_requests and seen.log_records
    assert seen.findings == []
    for text in seen.model_requests + seen.log_records:
        assert digits not in re.sub(r"[ -]", "", text)
    # The model may read the card's redaction token, never the number (memory/vault.py).
    assert any(f"<card ****{digits[-4:]} #" in request for request in seen.model_requests)

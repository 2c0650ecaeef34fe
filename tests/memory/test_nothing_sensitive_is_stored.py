"""End to end: card numbers, IBANs, emails, phone numbers and secrets in a goal, its input, a tool's result and the
model's own words never reach a stored row or a log line; the tool still gets the real value behind a token.

The shop's tables are left out of the scan: they stand for the client's own system, which the tool writes to
with the real value (that is the point of revealing it to the adapter).
"""

from __future__ import annotations

import json
import logging
import random
import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from rest_framework.test import APIClient

from agent_runtime.models import AgentConfig
from agent_runtime.services import agent_update
from lib.redaction import TOKEN
from orchestration.models import Task, TaskState
from orchestration.services.execution import task_run
from orchestration.tracing import JsonFormatter
from shop.models import Order, OrderNote
from tests.agent_runtime.fake_openai import FakeEndpoint, responses_call, responses_message, use_endpoint
from tests.factories import api_key
from tests.lib.test_redaction import an_iban, card, email, phone, secret

pytestmark = pytest.mark.django_db


@pytest.fixture
def scripted_model(settings: Any, demo_orders: None, monkeypatch: pytest.MonkeyPatch) -> None:
    agent_update(agent=AgentConfig.objects.get(name="default"), values={"model": "gpt-test"}, user=None)
    settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL, settings.OPENAI_API_STYLE = "sk-test", "", "responses"


def _card_token(request: dict[str, Any]) -> str:
    """The token the model was shown for the goal's card (a real model copies what it reads)."""
    match = re.search(r"<card \*{4}\d{4} #[0-9a-f]{8}>", json.dumps(request["input"]))
    assert match, "the model is shown the card's token"
    return match.group()


def _stored_text() -> list[tuple[str, str, str]]:
    """(table, column, value) of every text and JSON value in the database, the shop's tables aside."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND data_type IN ('text', 'character varying', 'jsonb', 'json') AND table_name NOT LIKE 'shop_%%' "
            "AND NOT (table_name = 'memory_vaultedvalue' AND column_name = 'ciphertext')"
        )
        columns = cursor.fetchall()
        found = []
        for table, column in columns:
            cursor.execute(f'SELECT "{column}"::text FROM "{table}" WHERE "{column}" IS NOT NULL')
            found += [(table, column, row[0]) for row in cursor.fetchall()]
    return found


def _forms(value: str) -> list[str]:
    """The value as it might be stored: as written, and (numbers) as bare digits or characters."""
    bare = "".join(ch for ch in value.removeprefix("Bearer ") if ch.isalnum())
    return [value.removeprefix("Bearer "), *([bare] if len(bare) >= 8 else [])]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sensitive_values_are_stored_nowhere_and_tools_get_the_real_ones(
    scripted_model: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, seed: int
) -> None:
    rng = random.Random(seed)
    values = {"card": card(rng), "iban": an_iban(rng), "email": email(rng), "phone": phone(rng), "secret": secret(rng)}
    said_by_model, in_tool_result = email(rng), email(rng)
    Order.objects.filter(number="A-1001").update(customer_name=f"Jane Doe <{in_tool_result}>")
    endpoint = FakeEndpoint(
        [
            responses_call("lookup_order", {"order_number": "A-1001"}, "call_1", (100, 10)),
            lambda request: responses_call(
                "add_order_note",
                {"order_number": "A-1001", "note": f"refund to {_card_token(request)}; cc {said_by_model}"},
                "call_2",
                (120, 12),
            ),
            responses_message(f"Done. I told {said_by_model} and noted key {values['secret']}.", (140, 14)),
        ]
    )
    use_endpoint(monkeypatch, endpoint)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_key(User.objects.create(username='c'))}")
    body = {
        "goal": f"Look up order A-1001, note a refund to card {values['card']} for {values['email']}",
        "input": {"order_number": "A-1001", "iban": values["iban"], "contact": {"phone": values["phone"]}},
        "metadata": {"ticket": f"from {values['email']} with {values['secret']}"},
        "session_id": f"customer-{seed}",
    }
    caplog.set_level(logging.INFO)
    created = client.post("/api/v1/tasks/", body, format="json", HTTP_IDEMPOTENCY_KEY=f"sensitive-{seed}")
    assert created.status_code == 201, created.json()
    assert values["card"] not in json.dumps(created.json()), "the API shows what is stored: tokens"
    task_run(task_id=created.json()["id"], worker="worker:test")
    task = Task.objects.get(pk=created.json()["id"])
    assert task.state == TaskState.COMPLETED, task.state_reason

    note = OrderNote.objects.get(order__number="A-1001")
    assert values["card"] in note.text, "the tool got the real card behind the token the model passed on"
    assert TOKEN.search(str(task.result)), "the model's own words are stored redacted"

    secrets = [*values.values(), said_by_model, in_tool_result]
    leaks = [
        f"{table}.{column} holds {form!r}"
        for table, column, text in _stored_text()
        for value in secrets
        for form in _forms(value)
        if form in text
    ]
    assert leaks == []
    log_lines = [JsonFormatter().format(record) for record in caplog.records]
    assert log_lines, "the run logged"
    assert [line for line in log_lines for value in secrets for form in _forms(value) if form in line] == []

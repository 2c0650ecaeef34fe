"""The public contract of /api/v1/tasks/: shapes, idempotency, and a structured 4xx for every bad request."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from orchestration.models import Task, TaskState
from tests.factories import api_key, submit_task

URL = "/api/v1/tasks/"
BODY = {"goal": "Look up order A-1001", "input": {"order_number": "A-1001"}}

TASK_FIELDS = {
    "id", "state", "state_reason", "goal", "agent", "agent_version", "rollout_arm", "routing_key", "session_id",
    "trace_id", "idempotency_key", "result", "usage", "budget", "created_at", "updated_at", "finished_at", "input",
    "metadata", "next_run_at", "pending_approval", "steps", "transitions", "recovery", "handoff", "claimed_by",
    "claim_expires_at", "operator_actions",
}  # fmt: skip


def _error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    return error


@pytest.mark.django_db
class TestSubmit:
    def test_created_task_has_the_public_fields(self, api: APIClient) -> None:
        response = api.post(URL, BODY, format="json")
        assert response.status_code == 201
        task = response.json()
        assert set(task) == TASK_FIELDS
        assert task["state"] == "RECEIVED"
        assert task["usage"] == {"input_tokens": 0, "output_tokens": 0, "cost": 0.0}
        assert task["idempotency_key"].startswith("srv_")
        assert response["Idempotency-Key"] == task["idempotency_key"]
        assert len(task["trace_id"]) == 32
        assert task["agent"] == "default"

    @pytest.mark.parametrize(
        "body",
        [
            BODY,
            {**BODY, "session_id": "customer-7", "metadata": {"channel": "email"}, "budget": {"tokens": 5000}},
        ],
    )
    def test_a_created_task_is_shown_as_it_reads_back(self, api: APIClient, body: dict[str, Any]) -> None:
        # The 201 is built without reading the task back (selectors.task_detail_of_created): it must not differ.
        created = api.post(URL, body, format="json")
        assert created.status_code == 201
        assert api.get(f"{URL}{created.json()['id']}/").json() == created.json()

    def test_traceparent_sets_the_trace_id(self, api: APIClient) -> None:
        trace = "0af7651916cd43dd8448eb211c80319c"
        response = api.post(URL, BODY, format="json", HTTP_TRACEPARENT=f"00-{trace}-b7ad6b7169203331-01")
        assert response.json()["trace_id"] == trace
        assert response["traceparent"].startswith(f"00-{trace}-")

    def test_invalid_traceparent_starts_a_new_trace(self, api: APIClient) -> None:
        response = api.post(URL, BODY, format="json", HTTP_TRACEPARENT="00-" + "0" * 32 + "-b7ad6b7169203331-01")
        assert response.json()["trace_id"] != "0" * 32

    def test_same_key_same_body_returns_the_same_task(self, api: APIClient) -> None:
        first = api.post(URL, BODY, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
        again = api.post(URL, BODY, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json()["id"] == again.json()["id"]
        assert Task.objects.count() == 1

    def test_same_key_other_body_is_refused(self, api: APIClient) -> None:
        api.post(URL, BODY, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
        response = api.post(URL, {**BODY, "goal": "something else"}, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
        error = _error(response, 422, "idempotency_key_reused")
        assert "different request body" in error["message"]
        assert Task.objects.count() == 1

    def test_keys_are_scoped_to_the_client(self, api: APIClient) -> None:
        api.post(URL, BODY, format="json", HTTP_IDEMPOTENCY_KEY="shared")
        other = APIClient()
        other.credentials(HTTP_AUTHORIZATION=f"Token {api_key(User.objects.create(username='b'))}")
        response = other.post(URL, BODY, format="json", HTTP_IDEMPOTENCY_KEY="shared")
        assert response.status_code == 201
        assert Task.objects.count() == 2
        assert len(set(Task.objects.values_list("idempotency_key", flat=True))) == 1

    @pytest.mark.parametrize("key", ["", "has space", "x" * 256, "naïve"])
    def test_malformed_idempotency_key(self, api: APIClient, key: str) -> None:
        error = _error(api.post(URL, BODY, format="json", HTTP_IDEMPOTENCY_KEY=key), 400, "invalid")
        assert "Idempotency-Key" in error["fields"]

    def test_malformed_json(self, api: APIClient) -> None:
        response = api.post(URL, '{"goal": "x", "input": ', content_type="application/json")
        assert "malformed JSON" in _error(response, 400, "parse_error")["message"]

    @pytest.mark.parametrize(
        "raw",
        [
            '{"goal": "x", "input": {"n": NaN}}',
            '{"goal": "x", "input": {"n": Infinity}}',
            "[" * 100_000 + "]" * 100_000,
            "null",
            '"just a string"',
            "\ud800",
        ],
    )
    def test_bodies_that_are_not_a_task(self, api: APIClient, raw: str, settings: Any) -> None:
        settings.API_MAX_BODY_BYTES = 1_000_000
        response = api.post(URL, raw.encode("utf-8", "surrogatepass"), content_type="application/json")
        assert response.status_code == 400, response.content
        assert Task.objects.count() == 0

    @pytest.mark.parametrize(
        "body",
        [
            {"goal": "x\u0000y", "input": {}},
            {"goal": "x", "input": {"note": "a\u0000b"}},
            {"goal": "x", "input": {"a\u0000": 1}},
            {"goal": "x", "input": {}, "metadata": {"m": ["\u0000"]}},
        ],
    )
    def test_null_characters_are_refused(self, api: APIClient, body: dict[str, Any]) -> None:
        _error(api.post(URL, body, format="json"), 400, "invalid")
        assert Task.objects.count() == 0

    def test_oversize_body(self, api: APIClient, settings: Any) -> None:
        settings.API_MAX_BODY_BYTES = 2048
        body = {"goal": "x", "input": {"blob": "a" * 4096}}
        assert "larger than 2048 bytes" in _error(api.post(URL, body, format="json"), 413)["message"]
        assert Task.objects.count() == 0

    @pytest.mark.parametrize("depth", [33, 5000, 100_000])
    def test_json_nested_past_the_limit_is_a_400(self, api: APIClient, depth: int) -> None:
        """Past API_MAX_JSON_DEPTH (32) a body is refused before anything reads it; 100,000 levels would exhaust
        Python's recursion while parsing, and that too is a 400, not a crash."""
        nested = "[" * (depth - 1) + "]" * (depth - 1)
        raw = '{"goal": "x", "input": {"deep": ' + nested + "}}"
        response = api.post(URL, raw, content_type="application/json")
        assert "nested deeper than 32 levels" in _error(response, 400, "parse_error")["message"]
        assert Task.objects.count() == 0

    def test_json_within_the_depth_limit_is_accepted(self, api: APIClient) -> None:
        nested: Any = "leaf"
        for _ in range(29):  # the body, input and deep make 3 more levels: 32 in all
            nested = [nested]
        assert api.post(URL, {"goal": "x", "input": {"deep": nested}}, format="json").status_code == 201

    @pytest.mark.parametrize(
        ("body", "fields"),
        [
            ({}, {"goal", "input"}),
            ({"goal": 5, "input": {}}, {"goal"}),
            ({"goal": "", "input": {}}, {"goal"}),
            ({"goal": "x", "input": [1, 2]}, {"input"}),
            ({"goal": "x", "input": "text"}, {"input"}),
            ({"goal": "x", "input": {}, "session_id": 7}, {"session_id"}),
            ({"goal": "x", "input": {}, "agent": "nobody"}, {"agent"}),
            ({"goal": "x", "input": {}, "metadata": "m"}, {"metadata"}),
            ({"goal": "x", "input": {}, "surprise": 1}, {"surprise"}),
            ([1, 2, 3], {"non_field_errors"}),
        ],
    )
    def test_invalid_fields_get_field_errors(self, api: APIClient, body: Any, fields: set[str]) -> None:
        error = _error(api.post(URL, body, format="json"), 400, "invalid")
        assert set(error["fields"]) == fields
        assert Task.objects.count() == 0

    def test_form_encoded_body_is_refused(self, api: APIClient) -> None:
        _error(api.post(URL, {"goal": "x"}), 415, "unsupported_media_type")


@pytest.mark.django_db
class TestAuthentication:
    def test_missing_token(self) -> None:
        _error(APIClient().post(URL, BODY, format="json"), 401, "not_authenticated")

    def test_wrong_token(self) -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
        _error(client.get(URL), 401, "authentication_failed")


@pytest.mark.django_db
class TestReadAndCancel:
    def test_unknown_task_id(self, api: APIClient) -> None:
        _error(api.get(f"{URL}{uuid.uuid4()}/"), 404, "not_found")

    def test_non_uuid_task_id(self, api: APIClient) -> None:
        _error(api.get(f"{URL}not-a-uuid/"), 404, "not_found")

    def test_other_clients_tasks_are_invisible(self, api: APIClient) -> None:
        stranger = submit_task(User.objects.create(username="stranger"))
        _error(api.get(f"{URL}{stranger.pk}/"), 404)
        assert api.get(URL).json()["count"] == 0

    def test_list_is_filtered_and_paginated(self, api: APIClient, client_user: User) -> None:
        tasks = [submit_task(client_user) for _ in range(3)]
        api.post(f"{URL}{tasks[0].pk}/cancel/")
        everything = api.get(URL).json()
        assert everything["count"] == 3 and len(everything["results"]) == 3
        cancelled = api.get(URL, {"state": "CANCELLED"}).json()
        assert [task["id"] for task in cancelled["results"]] == [str(tasks[0].pk)]
        assert api.get(URL, {"state": "RECEIVED", "page": "1"}).json()["count"] == 2

    def test_list_with_unknown_state(self, api: APIClient) -> None:
        assert "state" in _error(api.get(URL, {"state": "DONE"}), 400, "invalid")["fields"]

    def test_list_page_out_of_range(self, api: APIClient) -> None:
        _error(api.get(URL, {"page": "99"}), 404)

    def test_cancel_then_cancel_again(self, api: APIClient, client_user: User) -> None:
        task = submit_task(client_user)
        response = api.post(f"{URL}{task.pk}/cancel/")
        assert response.status_code == 200
        assert response.json()["state"] == "CANCELLED"
        assert response.json()["finished_at"] is not None
        _error(api.post(f"{URL}{task.pk}/cancel/"), 409, "invalid_state")
        assert Task.objects.get(pk=task.pk).state == TaskState.CANCELLED

    def test_cancel_unknown_task(self, api: APIClient) -> None:
        _error(api.post(f"{URL}{uuid.uuid4()}/cancel/"), 404)

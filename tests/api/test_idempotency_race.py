"""20 clients racing with one Idempotency-Key over real HTTP and PostgreSQL: exactly one task."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
from django.contrib.auth.models import User

from orchestration.models import Task
from tests.factories import api_key

BODY = {"goal": "Look up order A-1001", "input": {"order_number": "A-1001"}}


def _submit(url: str, token: str, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json", "Idempotency-Key": key},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_submissions_create_one_task(live_server: Any) -> None:
    token = api_key(User.objects.create(username="racer"))
    barrier = threading.Barrier(20)
    results: list[tuple[int, dict[str, Any]]] = []

    def race() -> None:
        barrier.wait()
        results.append(_submit(f"{live_server.url}/api/v1/tasks/", token, "race-key", BODY))

    threads = [threading.Thread(target=race) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 19 + [201]
    assert len({body["id"] for _, body in results}) == 1
    assert Task.objects.count() == 1
    assert Task.objects.get().transitions.count() == 1

    status, body = _submit(f"{live_server.url}/api/v1/tasks/", token, "race-key", {**BODY, "goal": "changed"})
    assert status == 422 and body["error"]["code"] == "idempotency_key_reused"

"""Per-token rate limits: 429 with Retry-After past the limit, counted in Redis atomically, so concurrent requests
cannot slip past it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from access.models import ApiToken
from access.services import token_issue
from tests.factories import api_key

TASKS = "/api/v1/tasks/"


@pytest.mark.django_db
def test_past_its_rate_a_token_gets_429_with_retry_after() -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key(User.objects.create(username='t'), rate_per_minute=3)}")
    codes = [client.get(TASKS).status_code for _ in range(3)]
    refused = client.get(TASKS)
    assert codes == [200, 200, 200]
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused.json()["error"]["code"] == "throttled"


@pytest.mark.django_db
def test_each_token_has_its_own_budget() -> None:
    user = User.objects.create(username="two")
    first, second = APIClient(), APIClient()
    first.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key(user, rate_per_minute=1)}")
    second.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key(user, rate_per_minute=1)}")
    assert [first.get(TASKS).status_code, first.get(TASKS).status_code] == [200, 429]
    assert second.get(TASKS).status_code == 200


@pytest.mark.django_db
def test_the_platform_rate_applies_when_the_token_sets_none(settings: Any) -> None:
    settings.API_THROTTLE_RATE = "2/minute"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key(User.objects.create(username='d'), rate_per_minute=None)}")
    assert [client.get(TASKS).status_code for _ in range(3)] == [200, 200, 429]


def _get(url: str, key: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as refused:
        if refused.code == 429:
            json.loads(refused.read())  # a structured body, not a crash page
        return int(refused.code)


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_cannot_slip_past_the_limit(live_server: Any) -> None:
    """40 requests at once from 20 threads against a real server and Redis, with room for 10: exactly 10 pass."""
    issued = token_issue(
        user=User.objects.create(username="burst"), name="burst", scopes=["tasks:read"], rate_per_minute=10
    )
    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = list(pool.map(lambda _: _get(f"{live_server.url}{TASKS}", issued.key), range(40)))
    assert sorted(set(codes)) == [200, 429]
    assert codes.count(200) == 10
    assert ApiToken.objects.get(pk=issued.token.pk).last_used_at is not None

from __future__ import annotations

import importlib

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from tests.factories import api_key
from tests.services import unavailable_service

pytest_plugins = ["tests.workers", "tests.redis_server", "tests.security_canaries"]


def pytest_sessionstart(session: pytest.Session) -> None:
    problem = unavailable_service()
    if problem is not None:
        pytest.exit(problem, returncode=3)


@pytest.fixture(autouse=True)
def _closed_circuits() -> None:
    """Circuit state and rate-limit windows live in Redis and outlive a test's database: start every test with
    closed circuits and empty windows."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = [*client.scan_iter("circuit:*"), *client.scan_iter("LIMITS:*")]
    if keys:
        client.delete(*keys)


@pytest.fixture
def client_user(db: None) -> User:
    return User.objects.create_user("client-a", password="unused-password-1")


@pytest.fixture
def api(client_user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key(client_user)}")
    return client


@pytest.fixture
def operator(db: None) -> Client:
    """A logged-in superuser, for admin pages."""
    client = Client()
    client.force_login(User.objects.create_superuser("ops", "ops@example.invalid", "unused-password-1"))
    return client


@pytest.fixture
def demo_orders(db: None) -> None:
    from shop.services import orders_seed_demo

    orders_seed_demo()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.faults.report import summary_lines

    lines = summary_lines()
    if lines:
        terminalreporter.section("fault-injection suite")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def queue_groups(db: None) -> None:
    """The operators and platform engineers groups, as their migrations create them and grant them permissions (a
    transactional test's flush empties every table, groups included)."""
    from django.apps import apps

    importlib.import_module("orchestration.migrations.0008_operator_groups").create_groups(apps, None)
    importlib.import_module("orchestration.migrations.0014_rollout_permissions").grant(apps, None)
    importlib.import_module("orchestration.migrations.0016_webhook_and_token_permissions").grant(apps, None)

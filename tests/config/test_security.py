"""The admin and the service's own pages: `check --deploy` clean in production, a content security policy,
sessions that end, login attempts rate-limited, and /metrics only for an allowed scraper."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]


def test_check_deploy_is_clean_with_production_settings() -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DEBUG", "SECURE_", "SESSION_", "CSRF_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="agents.example.com",
        DATABASE_URL=settings.DATABASE_URL,
        REDIS_URL=settings.REDIS_URL,
    )
    checked = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "no issues" in checked.stdout


@pytest.mark.django_db
def test_admin_pages_carry_a_content_security_policy(operator: Client) -> None:
    response = operator.get("/admin/")
    policy = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
    assert policy["script-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["object-src"] == "'none'"


def test_admin_sessions_expire() -> None:
    assert settings.SESSION_COOKIE_AGE <= 12 * 3600
    assert settings.SESSION_EXPIRE_AT_BROWSER_CLOSE
    assert settings.SESSION_COOKIE_HTTPONLY


@pytest.mark.django_db
def test_repeated_failed_logins_lock_the_account_out_from_that_address() -> None:
    User.objects.create_superuser("admin", "a@example.invalid", "the-right-password-1")
    client = Client(REMOTE_ADDR="203.0.113.9")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        failed = client.post("/admin/login/", {"username": "admin", "password": "wrong"})
        assert failed.status_code == 200  # the form again, with its error
    assert client.post("/admin/login/", {"username": "admin", "password": "wrong"}).status_code == 429
    locked = client.post("/admin/login/", {"username": "admin", "password": "the-right-password-1"})
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    elsewhere = Client(REMOTE_ADDR="198.51.100.7")
    assert elsewhere.post("/admin/login/", {"username": "admin", "password": "the-right-password-1"}).status_code == 302


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("networks", "token", "remote", "authorization", "allowed"),
    [
        ([], "", "127.0.0.1", "", False),  # production's default: nobody, loopback included
        (["10.0.0.0/8"], "", "10.1.2.3", "", True),
        (["10.0.0.0/8"], "", "192.168.1.1", "", False),
        (["::1/128"], "", "::1", "", True),
        (["127.0.0.0/8"], "", "::ffff:127.0.0.1", "", True),
        ([], "scrape-secret", "203.0.113.1", "Bearer scrape-secret", True),
        ([], "scrape-secret", "203.0.113.1", "Bearer wrong", False),
        ([], "", "203.0.113.1", "Bearer ", False),  # no token configured: an empty one is no key
    ],
)
def test_metrics_answer_only_an_allowed_scraper(
    settings: Any, networks: list[str], token: str, remote: str, authorization: str, allowed: bool
) -> None:
    settings.METRICS_ALLOWED_NETWORKS, settings.METRICS_SCRAPE_TOKEN = networks, token
    headers = {"Authorization": authorization} if authorization else {}
    response = Client(REMOTE_ADDR=remote).get("/metrics", headers=headers)
    assert response.status_code == (200 if allowed else 403)
    if allowed:
        assert b"agent_tasks_submitted_total" in response.content

"""Settings come from the environment in one place, and a bad value stops start-up with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.env import ConfigError, env_bool, env_int, env_url

ROOT = Path(__file__).resolve().parents[2]


def test_typed_readers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_BOOL", "yes")
    monkeypatch.setenv("X_INT", "12")
    assert env_bool("X_BOOL", False) is True
    assert env_int("X_INT", 0) == 12
    monkeypatch.setenv("X_BOOL", "perhaps")
    with pytest.raises(ConfigError, match="X_BOOL must be a boolean"):
        env_bool("X_BOOL", False)
    monkeypatch.setenv("X_INT", "twelve")
    with pytest.raises(ConfigError, match="X_INT must be an integer"):
        env_int("X_INT", 0)
    monkeypatch.setenv("X_URL", "mysql://db/x")
    with pytest.raises(ConfigError, match="X_URL must be a URL with scheme postgres"):
        env_url("X_URL", None, schemes={"postgres"})


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    test_only = {"DJANGO_SETTINGS_MODULE", "DEBUG", "SECRET_KEY", "SECURE_SSL_REDIRECT", "SWEEP_REQUEUE_AFTER_SECONDS"}
    clean = {k: v for k, v in os.environ.items() if k not in test_only}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


PRODUCTION = {
    "SECRET_KEY": "a-production-secret-that-is-long-and-random-0123456789abcdefghijkl",
    "ALLOWED_HOSTS": "agents.example.com",
    "DATABASE_URL": os.environ["DATABASE_URL"],
    "REDIS_URL": os.environ["REDIS_URL"],
}


def test_check_deploy_is_clean_with_production_settings() -> None:
    done = _manage(PRODUCTION, "check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY must be set"),
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL must be a URL with scheme"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL must be a URL with scheme"),
        ({"STEP_LEASE_SECONDS": "soon"}, "STEP_LEASE_SECONDS must be a number"),
        ({"DEBUG": "maybe"}, "DEBUG must be a boolean"),
        ({"STEP_DEADLINE_GRACE_SECONDS": "0"}, "STEP_DEADLINE_GRACE_SECONDS must be at least 1.0"),
        (
            {"FAULT_PLAN": '{"tools": {"lookup_order": [{"fault": "explode"}]}}'},
            "FAULT_PLAN is invalid: tools/lookup_order/0/fault: 'explode' is not one of",
        ),
        ({"FAULT_PLAN": "{not json"}, "FAULT_PLAN is invalid: not valid JSON"),
    ],
)
def test_bad_values_stop_start_up_with_a_clear_error(override: dict[str, str], message: str) -> None:
    done = _manage({**PRODUCTION, **override}, "check")
    assert done.returncode != 0
    assert message in done.stderr

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client


def test_healthz_needs_nothing() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_checks_database_and_broker() -> None:
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_readyz_reports_a_dead_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    from celery import current_app

    monkeypatch.setattr(current_app.conf, "broker_url", "redis://127.0.0.1:1/0")
    response = Client().get("/readyz")
    body: dict[str, Any] = response.json()
    assert response.status_code == 503
    assert body["checks"]["database"] == "ok" and body["checks"]["broker"] != "ok"


@pytest.mark.django_db
def test_metrics_are_exposed() -> None:
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert b"django_http_requests" in response.content, "django-prometheus's request figures are still there"
    assert b"agent_tasks_open" in response.content

"""Liveness and readiness probes."""

from __future__ import annotations

from celery import current_app
from django.db import connection
from django.http import HttpRequest, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving requests."""
    return JsonResponse({"status": "ok"})


def _database_ok() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _broker_ok() -> str | None:
    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def readyz(request: HttpRequest) -> JsonResponse:
    """The database and the broker both answer; a load balancer sends traffic only then."""
    checks = {"database": _database_ok(), "broker": _broker_ok()}
    body = {name: ("ok" if problem is None else problem) for name, problem in checks.items()}
    ready = all(problem is None for problem in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": body}, status=200 if ready else 503)

"""Check that PostgreSQL and Redis answer before the suite runs; say which one does not and how to start it."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_REDIS = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
    "--dir /var/lib/redis --logfile /var/log/redis/ci.log"
)


def _answers(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=3):
            return True
    except OSError:
        return False


def unavailable_service() -> str | None:
    """One line naming the first service that does not answer, or None when both do."""
    database_url = os.environ["DATABASE_URL"]
    redis_url = os.environ["REDIS_URL"]
    if not _answers(database_url, 5432):
        return f"PostgreSQL does not answer at {database_url} (DATABASE_URL); start it with: {START_POSTGRES}"
    if not _answers(redis_url, 6379):
        return f"Redis does not answer at {redis_url} (REDIS_URL); start it with: {START_REDIS}"
    return None

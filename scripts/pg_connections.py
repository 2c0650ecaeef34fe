"""How many PostgreSQL connections a benchmark's workers hold: sampled from pg_stat_activity while it runs."""

from __future__ import annotations

import statistics
import threading
from typing import Any

SAMPLE_SECONDS = 0.1


class ConnectionSampler:
    """Counts the benchmark database's server connections every 100 ms on a thread of its own, over a
    connection of its own; this process's connections (the sampler's, Django's) are left out."""

    def __init__(self, database_url: str, *, application: str) -> None:
        self.database_url = database_url
        self.application = application
        """The workers' application_name (PGAPPNAME), to tell their connections from the rest."""
        self.samples: list[tuple[int, int]] = []
        """(connections, of which the worker's by application_name), one pair per sample."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="pg-connection-sampler", daemon=True)
        self._own: set[int] = set()

    def __enter__(self) -> ConnectionSampler:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self._own.add(int(cursor.fetchone()[0]))
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _sample(self) -> None:
        import psycopg

        name = self.database_url.rsplit("/", 1)[1].split("?", 1)[0]
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            own = [*self._own, int(conn.info.backend_pid)]
            while not self._stop.is_set():
                row = conn.execute(
                    "SELECT count(*), count(*) FILTER (WHERE application_name = %s) FROM pg_stat_activity"
                    " WHERE datname = %s AND NOT (pid = ANY(%s))",
                    (self.application, name, own),
                ).fetchone()
                if row is not None:
                    self.samples.append((int(row[0]), int(row[1])))
                self._stop.wait(SAMPLE_SECONDS)

    def figures(self) -> dict[str, Any]:
        held = [total for total, _ in self.samples] or [0]
        worker = [ours for _, ours in self.samples] or [0]
        return {
            "mean": round(statistics.fmean(held), 1),
            "max": max(held),
            "worker_mean": round(statistics.fmean(worker), 1),
            "worker_max": max(worker),
            "samples": len(self.samples),
        }

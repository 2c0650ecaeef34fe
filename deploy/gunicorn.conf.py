"""gunicorn for the web app (`gunicorn config.wsgi -c deploy/gunicorn.conf.py`).

The workers count their metrics in files under PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess
mode), so any worker answering `/metrics` shows every worker's figures. The master claims and empties that
directory when it starts, and drops a dead worker's live-gauge files when it exits (its counters stay).
Workers are not recycled (no max_requests): each new pid would leave one more set of files behind.
"""

import os

from lib import metrics_process

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
accesslog = "-"


def on_starting(server: object) -> None:
    metrics_process.node_start()


def post_worker_init(worker: object) -> None:
    """Every series at zero before the worker's first request, so the first submission counts."""
    from django.db import connections

    from orchestration.metrics import series_warm_up

    series_warm_up()
    connections.close_all()


def child_exit(server: object, worker: object) -> None:
    metrics_process.process_dead(getattr(worker, "pid", 0))

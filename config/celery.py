"""The Celery application: `celery -A config worker` and `celery -A config beat`."""

import os

from celery import Celery, signals
from kombu.transport import TRANSPORT_ALIASES

from lib import metrics_process

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
metrics_process.configure()  # before any metric exists in this process

# redis:// and rediss:// URLs use our Redis transport, which keeps a worker alive when Redis restarts.
TRANSPORT_ALIASES["redis"] = TRANSPORT_ALIASES["rediss"] = "config.broker:Transport"

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# Celery logs and swallows what a signal handler raises; a worker whose metrics are misconfigured must not start.
@signals.celeryd_init.connect
def _metrics_directory_claim(**_: object) -> None:
    try:
        metrics_process.node_start()
    except metrics_process.MetricsSetupError as refused:
        raise SystemExit(f"worker not started: {refused}") from None


@signals.worker_init.connect
def _metrics_serve(**_: object) -> None:
    try:
        metrics_process.worker_metrics_serve()
    except (metrics_process.MetricsSetupError, OSError) as refused:
        raise SystemExit(f"worker not started: its metrics cannot be served: {refused}") from None
    _metric_series_warm_up()


@signals.worker_process_init.connect
def _metrics_pool_child(**_: object) -> None:
    metrics_process.pool_child_start()


def _metric_series_warm_up() -> None:
    """The node's series at zero from its first scrape (in the parent's files: a scrape sums every process's),
    so the first task's increments count. The parent then lets go of its database connection, which the pool's
    children must never share."""
    import django
    from django.db import connections

    django.setup()
    from orchestration.metrics import series_warm_up

    series_warm_up()
    connections.close_all()


@signals.worker_process_shutdown.connect
def _metrics_child_gone(**_: object) -> None:
    metrics_process.process_dead(metrics_process.process_identifier())


# What Django does around each request, around each task: a connection past CONN_MAX_AGE, broken, or left in a failed
# transaction is closed, and a kept one is health-checked before its first query. Celery's own fixup would close
# it every time (settings.CELERY_DB_REUSE_MAX).
@signals.task_prerun.connect(weak=False)
@signals.task_postrun.connect(weak=False)
def _database_connections_checked(**_: object) -> None:
    from django.db import close_old_connections

    close_old_connections()


# OpenTelemetry (lib/otel.py), off unless OTEL_* ask: set up in each process that runs tasks, after the fork (a
# batching exporter's thread does not survive one), and flushed before a pool process exits without atexit.
def _tracing_configure() -> None:
    from django.conf import settings

    from lib import otel

    otel.tracing_configure(service_name="agent-ops-worker", exporters=settings.TRACING_EXPORTERS, celery=True)


@signals.worker_process_init.connect(weak=False)
def _tracing_pool_process(**_: object) -> None:
    _tracing_configure()


@signals.worker_init.connect(weak=False)
def _tracing_single_process(sender: object = None, **_: object) -> None:
    from celery.concurrency import get_implementation

    pool = get_implementation(getattr(sender, "pool_cls", "prefork"))  # an alias, a path or the class itself
    if pool.__module__ != "celery.concurrency.prefork":
        _tracing_configure()  # solo, threads, gevent: tasks run in this process, which never forks


@signals.beat_init.connect(weak=False)
def _tracing_beat(**_: object) -> None:
    _tracing_configure()  # beat sends the sweeper's messages


@signals.worker_process_shutdown.connect(weak=False)
def _tracing_flush(**_: object) -> None:
    from lib import otel

    otel.tracing_flush()

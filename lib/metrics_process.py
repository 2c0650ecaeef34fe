"""Metrics that survive forking: prometheus_client's multiprocess mode for Celery's prefork pool and gunicorn.

With `PROMETHEUS_MULTIPROC_DIR` set, every process writes its counters to memory-mapped files in that directory
and a scrape adds them up, dead processes included (a counter never goes back because a child died). One
directory belongs to one worker node or one gunicorn master: it is wiped when that node starts, and a second
node pointed at it refuses to start.

Files are named after the process. A prefork child is named after its pool slot (`pool0`, `pool1`, ...), not
its pid: a child recycled (`--max-tasks-per-child`) or killed is replaced in the same slot, and the new child
reopens that slot's files and counts on from their values, so the directory holds one set of files per slot
however many children come and go. Every other process (the worker's parent, gunicorn's workers) uses its pid.

`configure()` must run before any metric exists in the process; `config/celery.py` calls it first thing.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import billiard.process
from prometheus_client import REGISTRY, CollectorRegistry, disable_created_metrics, multiprocess, values
from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from lib.metrics_access import scrape_allowed

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
WORKER_PORT_ENV = "CELERY_METRICS_PORT"
WORKER_ADDRESS_ENV = "CELERY_METRICS_ADDRESS"
_OWNER_FILE = ".owner.lock"
_owner: IO[str] | None = None  # held open (and locked) for as long as the node runs
_generation = 0  # bumped when the directory is emptied, so the node's own process reopens its files instead of
# writing to deleted ones (metrics created at import, before the node started)
_node_pid = 0  # the process that claimed the directory (the worker's parent, gunicorn's master)
_slot_pid = 0  # a prefork child, from its start: only it is named after its slot (not what it forks itself)


class MetricsSetupError(RuntimeError):
    """The metrics directory cannot be used as configured."""


def multiprocess_dir() -> Path | None:
    raw = os.environ.get(MULTIPROC_ENV, "").strip()
    return Path(raw) if raw else None


def process_identifier() -> str:
    """Distinct among the processes running at once on one directory; stable for a prefork pool slot."""
    pid = os.getpid()
    index = getattr(billiard.process.current_process(), "index", None)
    if index is not None and pid == _slot_pid:
        return f"pool{index}"
    return f"{pid}-{_generation}" if _generation and pid == _node_pid else str(pid)


def pool_child_start() -> None:
    """A prefork child starts (before its first task): from now on it writes to its slot's files."""
    global _slot_pid
    _slot_pid = os.getpid()


def configure() -> None:
    """Switch this process to multiprocess mode if a directory is configured (before any metric is created)."""
    disable_created_metrics()  # no `_created` series: Prometheus does not use them, and they double each counter
    directory = multiprocess_dir()
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    if not os.access(directory, os.W_OK):
        raise MetricsSetupError(f"{MULTIPROC_ENV}={directory} is not writable")
    values.ValueClass = values.MultiProcessValue(process_identifier)


def node_start() -> None:
    """A worker node or gunicorn master starts: claim the directory, and empty what a previous run left."""
    global _owner, _generation, _node_pid
    directory = multiprocess_dir()
    if directory is None:
        return
    owner = (directory / _OWNER_FILE).open("a+")
    try:
        fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner.close()
        raise MetricsSetupError(
            f"{MULTIPROC_ENV}={directory} is in use by another running worker node or web server; give each its "
            "own directory (their counters would overwrite each other's)"
        ) from None
    _owner = owner
    for leftover in directory.glob("*.db"):
        leftover.unlink()
    _generation += 1
    _node_pid = os.getpid()


def process_dead(identifier: str | int) -> None:
    """A child ended: drop its live-gauge files (its counters stay, so sums never go back)."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(identifier)


class _ThisProcess(Collector):
    """The process's own registry, for single-process mode (runserver, the solo pool, tests)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def exposition_registry(*extra: Collector) -> CollectorRegistry:
    """What a scrape shows: every process of this node (or this process alone), plus `extra` collectors."""
    registry = CollectorRegistry(auto_describe=False)
    directory = multiprocess_dir()
    if directory is not None:
        multiprocess.MultiProcessCollector(registry, path=str(directory))
    else:
        registry.register(_ThisProcess())
    for collector in extra:
        registry.register(collector)
    return registry


def worker_metrics_serve(**_: Any) -> None:
    """Serve the worker node's metrics on CELERY_METRICS_PORT (off when unset), from the worker's parent, to the
    scrapes lib/metrics_access.py allows (the scrape token, or an allowed network); others get a 403."""
    port = os.environ.get(WORKER_PORT_ENV, "").strip()
    if not port:
        return
    if not port.isdigit():
        raise MetricsSetupError(f"{WORKER_PORT_ENV} must be a port number, got {port!r}")
    if multiprocess_dir() is None:
        raise MetricsSetupError(
            f"{WORKER_PORT_ENV} is set but {MULTIPROC_ENV} is not: a prefork worker's metrics are counted in its "
            "children, and only multiprocess mode brings them to the parent that serves them"
        )
    address = os.environ.get(WORKER_ADDRESS_ENV, "0.0.0.0")
    # IPv4 or IPv6, whichever the address is (as prometheus_client's own server chooses).
    family = socket.getaddrinfo(address, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    server_class = type("MetricsServer", (ThreadingWSGIServer,), {"address_family": family})
    app = _guarded(make_wsgi_app(exposition_registry()))
    server: ThreadingWSGIServer = make_server(address, int(port), app, server_class, _QuietHandler)
    threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # one line per scrape would flood the worker's log
        pass


def _guarded(app: Any) -> Any:
    def guarded(environ: dict[str, Any], start_response: Any) -> Any:
        remote_addr, authorization = environ.get("REMOTE_ADDR", ""), environ.get("HTTP_AUTHORIZATION", "")
        if scrape_allowed(remote_addr=remote_addr, authorization=authorization):
            return app(environ, start_response)
        start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"metrics need the scrape token or an address in METRICS_ALLOWED_NETWORKS\n"]

    return guarded

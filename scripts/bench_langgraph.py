"""The peer benchmark: our orchestration workload through LangGraph and its PostgreSQL checkpointer.

Runs from its own environment, never the project's (`.bench-venv`, from `scripts/bench_langgraph_requirements.txt`),
so it imports nothing from the project. It prints one JSON document on stdout and logs to stderr:

    .bench-venv/bin/python scripts/bench_langgraph.py \
        --database-url postgres://root@127.0.0.1:5432/bench_langgraph --tasks 300

What it measures, and why it is comparable with `scripts/bench.py orchestration`: the same three steps per
workflow (a model turn that answers with a tool call, `lookup_order` as one indexed read of an order row, a model
turn with the final answer) as a StateGraph of three nodes, compiled with `PostgresSaver` and invoked with
`durability="sync"` (every step's checkpoint is written before the next step starts), one thread per workflow.
The model turns are trivial deterministic functions, as our offline model is a zero-latency one. The figures are
defined as ours are: steps per second from the first step's start to the last one's end; the gap between one
step's end and the next one's start, and a step's own time, from timestamps taken inside the nodes; a workflow's
latency from submission (`invoke`) to completion. `one_process` runs the workflows one after another (each
workflow alone, as our single-task latency is measured); `two_processes` runs two processes side by side, each
on its own connections, as our benchmark's worker node has 2 processes on this 2-core machine.

Where it is not comparable: LangGraph persists a checkpoint (its state, channel versions, a node's writes) per
step and nothing else, while we persist more per step (the task's snapshot and transition, the step's decision,
tokens, the tool call's idempotency record, its ledger), under a lease; there is no broker, no queue and no
worker hand-off between steps here, since a LangGraph workflow runs inside the caller's `invoke`; and a node's
own time is the bare function, while our step's own time includes its bookkeeping, so compare the sum of gap and
own time (`overhead_per_step_ms_p50`) rather than either alone. `per_workflow` counts the statements sent (both
connections; the checkpointer pipelines several per round trip) and the rows and bytes a workflow leaves behind.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import multiprocessing
import os
import platform
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import version
from typing import Any, TypedDict

import psycopg
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.graph import END, START, StateGraph
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

log = logging.getLogger("bench_langgraph")

DURABILITY = "sync"
STEPS_PER_WORKFLOW = 3  # model turn, lookup_order, model turn
WARM_UP = 5  # workflows per process before the measured ones, as bench.py warms its workers up
PACKAGES = ("langgraph", "langgraph-checkpoint", "langgraph-checkpoint-postgres", "langchain-core", "psycopg")
CHECKPOINT_TABLES = ("checkpoint_writes", "checkpoint_blobs", "checkpoints", "checkpoint_migrations")
ORDER_NUMBER = "A-1001"
ORDERS = [
    ("A-1001", "Ada Lovelace", 4200, "EUR", "shipped"),
    ("A-1002", "Grace Hopper", 1999, "USD", "placed"),
    ("A-1003", "Alan Turing", 15000, "GBP", "delivered"),
    ("A-1004", "Edsger Dijkstra", 750, "EUR", "refunded"),
    ("A-1005", "Barbara Liskov", 3100, "USD", "placed"),
]

Connection = psycopg.Connection[dict[str, Any]]
Span = tuple[int, float, float]  # workflow, a node's start, its end (time.monotonic, system-wide on Linux)


class State(TypedDict, total=False):
    workflow: int
    order_number: str
    tool_call: dict[str, Any]
    order: dict[str, Any] | None
    answer: str


class CountingCursor(psycopg.Cursor[Any]):
    """Counts the statements this process sends (executemany sends one per parameter set)."""

    statements = 0

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        CountingCursor.statements += 1
        return super().execute(*args, **kwargs)

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        params = list(params_seq)
        CountingCursor.statements += len(params)
        super().executemany(query, params, **kwargs)


@dataclass
class Recorder:
    """Every node's start and end, taken inside the node, so the figures do not depend on LangGraph's own."""

    spans: list[Span] = field(default_factory=list)

    def timed(self, turn: Callable[[State], dict[str, Any]]) -> Callable[[State], dict[str, Any]]:
        def node(state: State) -> dict[str, Any]:
            started = time.monotonic()
            update = turn(state)
            self.spans.append((state["workflow"], started, time.monotonic()))
            return update

        return node


def percentiles(values: list[float]) -> dict[str, float]:
    """The same nearest-rank percentiles as scripts/bench.py, so the two reports read alike."""
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    ordered = sorted(values)

    def at(share: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 2)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99)}


def connect(url: str, *, counting: bool = False) -> Connection:
    """A connection as PostgresSaver requires it: autocommit, no prepared statements, rows as dicts."""
    return psycopg.connect(
        url,
        autocommit=True,
        prepare_threshold=0,
        row_factory=dict_row,
        cursor_factory=CountingCursor if counting else None,
    )


def model_turn(state: State) -> dict[str, Any]:
    """The zero-latency model's first turn: it answers with a tool call."""
    return {"tool_call": {"name": "lookup_order", "arguments": {"order_number": state["order_number"]}}}


def lookup_order(orders: Connection, state: State) -> dict[str, Any]:
    """The tool: one indexed read of an order row."""
    number = state["tool_call"]["arguments"]["order_number"]
    row = orders.execute(
        "SELECT id, order_number, customer_name, amount_cents, currency, status FROM orders WHERE order_number = %s",
        (number,),
    ).fetchone()
    return {"order": row}


def final_turn(state: State) -> dict[str, Any]:
    """The zero-latency model's second turn: the final answer from the tool's output."""
    order = state.get("order")
    if order is None:
        return {"answer": f"I could not find order {state['order_number']}."}
    return {"answer": f"Order {order['order_number']} is {order['status']}."}


def build_graph(checkpoints: Connection, orders: Connection, recorder: Recorder) -> Any:
    graph = StateGraph(State)
    graph.add_node("model_turn", recorder.timed(model_turn))
    graph.add_node("lookup_order", recorder.timed(partial(lookup_order, orders)))
    graph.add_node("final_turn", recorder.timed(final_turn))
    graph.add_edge(START, "model_turn")
    graph.add_edge("model_turn", "lookup_order")
    graph.add_edge("lookup_order", "final_turn")
    graph.add_edge("final_turn", END)
    return graph.compile(checkpointer=PostgresSaver(checkpoints))


@contextmanager
def session(url: str, *, counting: bool = False) -> Iterator[tuple[Any, Recorder]]:
    """A compiled graph on two connections of its own: the checkpointer's, and the tool's (the application's)."""
    with connect(url, counting=counting) as checkpoints, connect(url, counting=counting) as orders:
        recorder = Recorder()
        yield build_graph(checkpoints, orders, recorder), recorder


def run_workflows(graph: Any, *, prefix: str, first: int, count: int) -> list[float]:
    """Runs `count` workflows one after another, each with a thread_id of its own; their latencies in ms."""
    latencies = []
    for workflow in range(first, first + count):
        config = {"configurable": {"thread_id": f"{prefix}-{workflow}"}}
        started = time.monotonic()
        result = graph.invoke({"workflow": workflow, "order_number": ORDER_NUMBER}, config, durability=DURABILITY)
        latencies.append((time.monotonic() - started) * 1000)
        if not result.get("answer", "").endswith("is shipped."):
            raise RuntimeError(f"workflow {workflow} ended without the expected answer: {result!r}")
    return latencies


def measured_run(url: str, tasks: int, ready: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Warms up, waits for `ready`, then runs `tasks` workflows: the raw samples, in plain data for pickling."""
    prefix = f"bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with session(url) as (graph, recorder):
        run_workflows(graph, prefix=prefix, first=-WARM_UP, count=WARM_UP)
        recorder.spans.clear()
        ready()
        started, cpu = time.monotonic(), time.process_time()
        latencies = run_workflows(graph, prefix=prefix, first=0, count=tasks)
        finished, cpu = time.monotonic(), time.process_time() - cpu
    return {"spans": recorder.spans, "latencies_ms": latencies, "started": started, "finished": finished, "cpu": cpu}


def gaps_and_own(spans: list[Span]) -> tuple[list[float], list[float]]:
    """Gaps between one node's end and the next one's start within a workflow, and each node's own time (ms)."""
    ordered = sorted(spans)
    gaps = [(start - end) * 1000 for (one, _, end), (same, start, _) in itertools.pairwise(ordered) if one == same]
    return gaps, [(end - start) * 1000 for _, start, end in ordered]


def figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One run's figures (one process, or several side by side), defined as scripts/bench.py defines ours."""
    spans = [span for run in runs for span in run["spans"]]
    gaps, own = [], []
    for run in runs:  # workflow numbers repeat across processes, so gaps are taken within each process
        run_gaps, run_own = gaps_and_own(run["spans"])
        gaps += run_gaps
        own += run_own
    first_start = min(start for _, start, _ in spans)
    last_end = max(end for _, _, end in spans)
    wall = max(run["finished"] for run in runs) - min(run["started"] for run in runs)
    gap, own_time = percentiles(gaps), percentiles(own)
    return {
        "processes": len(runs),
        "workflows": sum(len(run["latencies_ms"]) for run in runs),
        "steps": len(spans),
        "steps_per_second": round(len(spans) / (last_end - first_start), 1),
        "steps_per_second_wall": round(len(spans) / wall, 1),
        # CPU this benchmark's own processes spent per step (not PostgreSQL's): steadier than times on a busy machine
        "client_cpu_ms_per_step": round(sum(run["cpu"] for run in runs) * 1000 / len(spans), 2),
        "gap_between_steps_ms": gap,
        "step_own_ms": own_time,
        "overhead_per_step_ms_p50": round(gap["p50"] + own_time["p50"], 2),
        "workflow_latency_ms": percentiles([latency for run in runs for latency in run["latencies_ms"]]),
    }


def one_process(url: str, tasks: int) -> dict[str, Any]:
    log.info("one process: %d workflows", tasks)
    return figures([measured_run(url, tasks)])


def _worker(url: str, tasks: int, barrier: Any, results: Any) -> None:
    results.put(measured_run(url, tasks, ready=partial(barrier.wait, 300)))


def two_processes(url: str, tasks: int) -> dict[str, Any]:
    """Two processes started together after their warm-up, each running half the workflows."""
    log.info("two processes: %d workflows each", tasks // 2)
    context = multiprocessing.get_context("spawn")  # no connection or executor thread crosses a fork
    barrier, results = context.Barrier(3), context.Queue()
    shares = [tasks - tasks // 2, tasks // 2]
    processes = [context.Process(target=_worker, args=(url, share, barrier, results)) for share in shares]
    for process in processes:
        process.start()
    barrier.wait(300)
    runs = [results.get(timeout=120 + tasks) for _ in processes]
    for process in processes:
        process.join(30)
        if process.exitcode != 0:
            raise RuntimeError(f"worker process {process.pid} exited with {process.exitcode}")
    return figures(runs)


def per_workflow(url: str) -> dict[str, Any]:
    """Statements sent for one workflow (after a warm one), and the rows and bytes its thread left behind."""
    with session(url, counting=True) as (graph, _):
        prefix = f"count-{uuid.uuid4().hex[:8]}"
        run_workflows(graph, prefix=prefix, first=0, count=1)
        CountingCursor.statements = 0
        run_workflows(graph, prefix=prefix, first=1, count=1)
        statements = CountingCursor.statements
    rows, size = {}, 0
    with connect(url) as conn:
        for table in CHECKPOINT_TABLES[:3]:
            query = sql.SQL("SELECT count(*) AS n, coalesce(sum(pg_column_size(t.*)), 0) AS bytes FROM {} t "
                            "WHERE thread_id = %s").format(sql.Identifier(table))  # fmt: skip
            found = conn.execute(query, (f"{prefix}-1",)).fetchone() or {"n": 0, "bytes": 0}
            rows[table] = found["n"]
            size += found["bytes"]
    return {
        "statements": statements,
        "statements_per_step": round(statements / STEPS_PER_WORKFLOW, 1),
        "rows": rows,
        "row_bytes": size,
    }


def ensure_database(url: str) -> None:
    name = str(conninfo_to_dict(url).get("dbname") or "")
    if not name:
        raise SystemExit(f"the database URL names no database: {url}")
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            log.info("creating database %s", name)
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def prepare_database(url: str) -> str:
    """A fresh start: the checkpointer's tables and the orders table dropped and made again; the server version."""
    ensure_database(url)
    with connect(url) as conn:
        tables = sql.SQL(", ").join(sql.Identifier(table) for table in (*CHECKPOINT_TABLES, "orders"))
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(tables))
        conn.execute(
            "CREATE TABLE orders (id bigserial PRIMARY KEY, order_number text NOT NULL UNIQUE, customer_name text "
            "NOT NULL, amount_cents bigint NOT NULL, currency char(3) NOT NULL, status text NOT NULL)"
        )
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO orders (order_number, customer_name, amount_cents, currency, status) "
                "VALUES (%s, %s, %s, %s, %s)",
                ORDERS,
            )
        conn.execute("ANALYZE orders")
        PostgresSaver(conn).setup()
        server = conn.execute("SHOW server_version").fetchone() or {}
    return str(server.get("server_version", "unknown"))


def environment(server: str) -> dict[str, Any]:
    return {
        **{name: version(name) for name in PACKAGES},
        "python": platform.python_version(),
        "postgres_server": server,
        "cores": os.cpu_count(),
        "durability": DURABILITY,
        "graph": "model_turn -> lookup_order -> final_turn, PostgresSaver, a thread_id per workflow",
        "warm_up_workflows_per_process": WARM_UP,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="postgres://root@127.0.0.1:5432/bench_langgraph")
    parser.add_argument("--tasks", type=int, default=300, help="workflows per run (split across the two processes)")
    args = parser.parse_args()
    if args.tasks < 2:
        parser.error("--tasks must be at least 2")
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="bench_langgraph: %(message)s")
    server = prepare_database(args.database_url)
    load_before = os.getloadavg()[0]
    report = {
        **environment(server),
        "load_average_1m": {"before": round(load_before, 2)},
        "one_process": one_process(args.database_url, args.tasks),
        "two_processes": two_processes(args.database_url, args.tasks),
        "per_workflow": per_workflow(args.database_url),
    }
    report["load_average_1m"]["after"] = round(os.getloadavg()[0], 2)  # others' benchmarks share these cores
    print(json.dumps({"langgraph": report}, indent=2))


if __name__ == "__main__":
    main()

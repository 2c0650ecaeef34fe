"""`make bench-memory`: a 200-turn session with memory as built, and with naive full history, side by side.

Each turn of the scripted conversation is one task of one session (the customer's message as its goal; every
seventh turn asks for an order lookup, so tool calls and their results are in the history), run through the real
path (submission, worker code, the journal, PostgreSQL) with the offline model, in a database of its own
(`bench_memory`, created afresh; DATABASE_URL overrides; Redis database 13, REDIS_URL overrides). Five facts are
planted early (turns 3 to 150); a late turn asks a question that needs all five.

"Naive" is the same conversation for an agent whose window holds every turn and who is sent no summary: what
an SDK session with the whole history gives (the admin does not allow such a window; the benchmark creates it).

Printed, not asserted (one JSON document, then a table): input tokens per turn (as the model counted them),
stored bytes per turn (every step's input and output, and the recall, as PostgreSQL stores them), and the share of
the late turn's facts present in what it was sent.

    make bench-memory                 # 200 turns
    BENCH_TURNS=60 make bench-memory
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SMALL_TALK = ["Thanks, that helps", "Okay, I see", "Sure, go on", "Hmm, let me think", "Right, fine", "Good to know"]
WORDS = ["kettle", "garden", "weekend", "weather", "neighbour", "holiday", "coffee", "music", "train", "office"]
PLANTED = {  # turn -> (what the customer says, what the late turn's input must hold)
    3: ("My name is Dana Whitfield.", "Dana Whitfield"),
    20: ("Your colleague promised a refund of 35 USD for parcel P-7731.", "35 USD"),
    60: ("The replacement blender B-220 arrived with a cracked jug.", "cracked jug"),
    110: ("While I am travelling, deliver to my office at 22 Harbour Street.", "22 Harbour Street"),
    150: ("The courier Swiftline lost parcel P-7731 on its second attempt.", "Swiftline"),
}
LATE_QUESTION = (
    "What was I promised for parcel P-7731, what was wrong with blender B-220, where should you deliver, "
    "who lost the parcel, and what is my name?"
)
CHECKPOINTS = (10, 25, 50, 100, 150, 195, 200)


def said_at(turn: int, turns: int) -> tuple[str, dict[str, Any]]:
    """The customer's message at `turn` and the task's input."""
    if turn in PLANTED:
        return PLANTED[turn][0], {}
    if turn == turns - 5:
        return LATE_QUESTION, {}
    if turn % 7 == 0:
        number = f"A-100{turn % 3 + 1}"
        return f"Look up order {number} please.", {"order_number": number}
    return f"{SMALL_TALK[turn % len(SMALL_TALK)]}, the {WORDS[turn % len(WORDS)]} {WORDS[turn // 10 % 10]}.", {}


def naive_agent() -> str:
    """An agent whose window holds every turn and who is sent no summary facts."""
    from agent_runtime.models import AgentConfig, AgentVersion

    default = AgentConfig.objects.get(name="default").current
    assert default is not None
    agent = AgentConfig.objects.create(name="naive")
    version = AgentVersion.objects.create(
        agent=agent, number=1, instructions=default.instructions, model=default.model, tools=default.tools,
        max_turns=default.max_turns, memory_window_turns=32767, memory_summary_tokens=300, memory_inject_tokens=0,
    )  # fmt: skip
    agent.current = version
    agent.save()
    return agent.name


def converse(*, agent: str, turns: int) -> list[dict[str, Any]]:
    """Run the conversation; per turn: input tokens of its first model request, stored bytes, what it was sent."""
    from django.contrib.auth.models import User
    from django.db import connection

    from orchestration.models import Step, StepKind
    from orchestration.services.execution import task_run
    from orchestration.services.submission import task_submit
    from orchestration.tracing import new_trace_id

    owner, _ = User.objects.get_or_create(username=f"bench-{agent}")
    session = f"bench-{uuid.uuid4().hex[:8]}"
    rows = []
    for turn in range(1, turns + 1):
        goal, task_input = said_at(turn, turns)
        task = task_submit(
            owner=owner, goal=goal, task_input=task_input, session_id=session, agent=agent, metadata={},
            idempotency_key=f"{session}-{turn}", trace_id=new_trace_id(),
        ).task  # fmt: skip
        started = time.perf_counter()
        task_run(task_id=str(task.pk), worker="bench")
        elapsed = time.perf_counter() - started
        first = Step.objects.get(task=task, ref="turn:1")
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT coalesce(sum(octet_length(input::text) + coalesce(octet_length(output::text), 0)), 0) "
                "FROM orchestration_step WHERE task_id = %s",
                [task.pk],
            )
            stored = int(cursor.fetchone()[0])
        sent = json.dumps({"instructions": first.input.get("instructions"), "input": first.input.get("input")})
        rows.append(
            {
                "turn": turn,
                "input_tokens": first.input_tokens,
                "model_turns": Step.objects.filter(task=task, kind=StepKind.MODEL_TURN).count(),
                "stored_bytes": stored,
                "run_ms": round(elapsed * 1000, 1),
                "sent": sent,
            }
        )
    return rows


def summarise(memory: list[dict[str, Any]], naive: list[dict[str, Any]], turns: int) -> dict[str, Any]:
    late = turns - 5
    needed = [needle for turn, (_, needle) in PLANTED.items() if turn < late]

    def recall(rows: list[dict[str, Any]]) -> float:
        sent = rows[late - 1]["sent"]
        return round(100 * sum(needle in sent for needle in needed) / len(needed), 1) if needed else 0.0

    def at(rows: list[dict[str, Any]], key: str) -> dict[str, int]:
        return {str(turn): rows[turn - 1][key] for turn in CHECKPOINTS if turn <= turns}

    first, last = min(10, turns), turns
    return {
        "turns": turns,
        "input_tokens": {"memory": at(memory, "input_tokens"), "naive": at(naive, "input_tokens")},
        "stored_bytes": {"memory": at(memory, "stored_bytes"), "naive": at(naive, "stored_bytes")},
        "memory_tokens_last_over_turn_10": _ratio(memory, last, first),
        "naive_tokens_last_over_turn_10": _ratio(naive, last, first),
        "late_turn": late,
        "late_turn_facts_present_pct": {"memory": recall(memory), "naive": recall(naive)},
        "late_turn_tokens_memory_over_naive_pct": round(
            100 * memory[late - 1]["input_tokens"] / naive[late - 1]["input_tokens"], 1
        ),
        "run_ms_p50": {"memory": _p50(memory), "naive": _p50(naive)},
    }  # fmt: skip


def _ratio(rows: list[dict[str, Any]], turn: int, than: int) -> float:
    return round(rows[turn - 1]["input_tokens"] / rows[than - 1]["input_tokens"], 3)


def _p50(rows: list[dict[str, Any]]) -> float:
    values = sorted(row["run_ms"] for row in rows)
    return values[len(values) // 2]


def run(turns: int) -> dict[str, Any]:
    from shop.services import orders_seed_demo

    orders_seed_demo()
    memory = converse(agent="default", turns=turns)
    naive = converse(agent=naive_agent(), turns=turns)
    return summarise(memory, naive, turns)


def main() -> None:
    turns = int(os.environ.get("BENCH_TURNS", "200"))
    if turns < 20:
        raise SystemExit("BENCH_TURNS must be at least 20")
    # Submissions enqueue a message each; no worker takes them here (each turn runs in this process), so they go
    # to a Redis database of the benchmark's own, emptied afterwards.
    broker = os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/13")
    os.environ.setdefault("LOG_LEVEL", "WARNING")  # a line per task run would bury the figures
    sys.path.insert(0, str(ROOT))
    from scripts.bench_setup import bench_django

    bench_django("bench_memory")
    try:
        figures = run(turns)
    finally:
        import redis

        redis.Redis.from_url(broker).flushdb()
    report = {
        "benchmark": "memory",
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        **figures,
    }
    print(json.dumps(report, indent=2))
    print(f"\n{'turn':>6}{'tokens memory':>16}{'tokens naive':>14}{'bytes memory':>15}{'bytes naive':>14}")
    for turn in figures["input_tokens"]["memory"]:
        tokens, stored = figures["input_tokens"], figures["stored_bytes"]
        print(
            f"{turn:>6}{tokens['memory'][turn]:>16}{tokens['naive'][turn]:>14}"
            f"{stored['memory'][turn]:>15}{stored['naive'][turn]:>14}"
        )
    present = figures["late_turn_facts_present_pct"]
    print(
        f"\nturn {figures['late_turn']}: {present['memory']} % of the facts it needs present with memory "
        f"({present['naive']} % naive), at {figures['late_turn_tokens_memory_over_naive_pct']} % of the naive tokens"
    )


if __name__ == "__main__":
    main()

"""The window never parts a tool call from its output, keeps what the model must see whatever N is, and shows
another task's turns in a form another request can take; relevance scores the same in every process."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from asgiref.sync import async_to_sync

from agent_runtime.tokens import count_text_tokens
from memory.composer import MemorySettings, Recalled, TurnComposer
from memory.summary import Fact
from memory.window import complete, portable, turn_groups

TASK = {"role": "user", "content": "Refund order A-1002"}
SAY = {"role": "user", "content": "OPERATOR: look it up instead"}


def _call(n: int) -> list[dict[str, Any]]:
    return [
        {"type": "reasoning", "id": f"rs_{n}", "summary": []},
        {"type": "function_call", "id": f"fc_{n}", "call_id": "call_0", "name": "lookup_order", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_0", "output": json.dumps({"ok": True, "n": n})},
    ]


async def _nothing(items: Any, turn: int) -> list[Fact]:
    return []


def test_turns_keep_a_call_with_its_output_and_leave_out_unanswered_calls() -> None:
    items = [TASK, *_call(1), *_call(2), {"type": "function_call", "call_id": "x", "name": "t", "arguments": "{}"}]
    groups = turn_groups(items)
    assert [len(group) for group in groups] == [1, 3, 3, 1]
    assert [complete(group) for group in groups] == [True, True, True, False]


def test_whatever_n_the_task_its_instructions_and_its_latest_turn_stay() -> None:
    composer = TurnComposer(
        Recalled(window=([{"role": "user", "content": "an earlier task"}],)),
        MemorySettings(window_turns=3),
        count=count_text_tokens,
        summarize=_nothing,
        keep=lambda item: item is SAY,
    )
    own = [TASK, *_call(1), SAY, *_call(2), *_call(3), *_call(4)]
    sent = async_to_sync(composer.compose)(turn=5, own=own, instructions="", query="refund")
    outputs = [json.loads(item["output"])["n"] for item in sent.input if item.get("type") == "function_call_output"]
    assert sent.input[0] is TASK and SAY in sent.input, "the task and the operator's instruction are never cut"
    assert outputs == [4], "the latest call's result is always there (N=3: task, instruction, latest)"
    assert sent.record["window"] == {"prior_turns": 0, "own_turns_left_out": 3}


def test_another_tasks_turns_lose_their_ids_and_reasoning_and_get_distinct_call_ids() -> None:
    first, second = (portable(turn_groups(_call(n))[0], prefix=f"tabc_g{n}_") for n in (1, 2))
    assert [item["type"] for item in first] == ["function_call", "function_call_output"]
    assert all("id" not in item for item in first + second)
    assert {item["call_id"] for item in first} == {"tabc_g1_call_0"} != {item["call_id"] for item in second}


def test_relevance_scores_are_the_same_whatever_the_hash_seed() -> None:
    program = (
        "from memory.relevance import bm25; "
        "print(bm25(['order a-1001 refund promised', 'refund failed locked', 'parcel late a-1001'], "
        "'refund promised for order a-1001, parcel late, locked'))"
    )
    printed = {
        subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": seed}
        ).stdout
        for seed in ("1", "2", "3", "4")
    }
    assert len(printed) == 1, printed

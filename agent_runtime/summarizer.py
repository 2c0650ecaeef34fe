"""Memory's summarizer with a real model: after every turn, the model itself states the facts the turn added.

Each call is a durable step of its own (`summary:<turn>`, before that turn's answer): requested once, recorded,
replayed on every run after, its tokens and cost counted against the task like any request, its failure a failed
model request like any other (retried, then handed off). The facts are read from the recorded (redacted) answer, so
a replay reads the same facts. Offline, and with MEMORY_SUMMARIZER=extractive, `memory.summary.extract_facts` does
the job deterministically instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from agents import ModelResponse

from agent_runtime.durable_model import DurableModel
from agent_runtime.run_memory import extractive
from agent_runtime.snapshots import to_jsonable
from memory.summary import Fact
from memory.window import Item

INSTRUCTIONS = (
    "You keep the memory of a customer-service conversation. Below are its newest messages and tool results. "
    "List the facts a colleague would need later: who the customer is, which orders or items, what was asked, "
    "promised or done, and what failed, with numbers and references exactly as written (copy tokens such as "
    "<card ****1111 #ab12cd34> verbatim). One short sentence per fact, at most 8, no small talk. Answer with a "
    "JSON array of strings and nothing else; [] when nothing is worth keeping."
)
MAX_TOKENS = 400
"""The most one summary may write (and what its budget check reserves)."""
MAX_FACTS, MAX_FACT_CHARS, MAX_ITEM_CHARS = 8, 300, 2000


class ModelSummarizer:
    """`memory.composer.Summarize` with the run's own model, through its DurableModel."""

    def __init__(self, model: DurableModel, *, recalled_turns: int) -> None:
        self.model = model
        self.recalled_turns = recalled_turns
        """The session's turns before this task: a fact's session turn, less these, is the task's turn."""

    async def __call__(self, items: Sequence[Item], turn: int) -> list[Fact]:
        task_turn = turn - self.recalled_turns
        journal = self.model.journal
        if await journal.replay_turn(task_turn, "summary") is None and await journal.replay_turn(task_turn) is not None:
            # The answer was recorded without a summary (before summaries were written by the model): its replay
            # stays a replay, free and the same every time, with the extractive facts.
            return await extractive(items, turn)
        response = await self.model.summarize(
            task_turn, instructions=INSTRUCTIONS, text=transcript(items), max_tokens=MAX_TOKENS
        )
        return [Fact(text, turn) for text in facts_in(response)]


def transcript(items: Sequence[Item]) -> str:
    """The items as the summarizer reads them: one line each, who said or did what."""
    calls = {item.get("call_id"): item.get("name") for item in items if item.get("type") == "function_call"}
    lines = []
    for item in items:
        if item.get("type") == "function_call":
            lines.append(f"Agent called {item.get('name')} with {item.get('arguments')}")
        elif item.get("type") == "function_call_output":
            lines.append(f"{calls.get(item.get('call_id'), 'A tool')} returned: {_clip(item.get('output'))}")
        elif item.get("role") in ("user", "assistant", "system", "developer"):
            who = "Customer" if item.get("role") == "user" else "Agent"
            lines.append(f"{who}: {_clip(_text(item.get('content')))}")
    return "\n".join(lines)


def facts_in(response: ModelResponse) -> list[str]:
    """The facts of the summarizer's answer: its JSON array, or else its non-empty lines (models do not always
    answer in the format asked for)."""
    said = "".join(
        part.get("text", "")
        for item in to_jsonable(response.output)
        if isinstance(item, dict) and item.get("type") == "message"
        for part in item.get("content") or []
        if isinstance(part, dict)
    ).strip()
    said = re.sub(r"^```(?:json)?\s*|\s*```$", "", said)
    try:
        parsed: Any = json.loads(said)
    except ValueError:
        parsed = [line.strip().lstrip("-*• ").strip() for line in said.splitlines()]
    if not isinstance(parsed, list):
        parsed = [said]
    texts = [str(fact).strip()[:MAX_FACT_CHARS] for fact in parsed if isinstance(fact, (str, int, float))]
    return [text for text in texts if text][:MAX_FACTS]


def _text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


def _clip(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= MAX_ITEM_CHARS else text[: MAX_ITEM_CHARS - 1] + "…"

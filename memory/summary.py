"""The long layer of memory: a summary of task-level facts (who, which order, what was promised, what failed),
capped between 300 and 500 tokens.

A summary over its cap is never kept: facts are dropped until it fits, the least informative first and, among
those, the oldest (a fact's information is what it pins down: numbers, order and reference numbers, redaction
tokens, names, and words of commitment or failure such as "promised", "refund", "failed"), so small talk goes
before "order A-1234 was promised a refund". What was dropped is returned for the caller to record. Facts are
deduplicated by their wording, the newer kept. Offline, facts are
extracted deterministically from a turn's items (`extract_facts`); with a real model a summarizer call writes them
(the caller's job: it is a durable step like any other).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

MIN_CAP, MAX_CAP = 300, 500
Count = Callable[[str], int]


@dataclass(frozen=True)
class Fact:
    text: str
    turn: int
    """The turn (of the session) it was learnt at: the oldest go first when the summary is over its cap."""

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "turn": self.turn}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fact:
        return cls(str(data["text"]), int(data["turn"]))


@dataclass(frozen=True)
class Summary:
    facts: tuple[Fact, ...] = ()

    def text(self) -> str:
        return "\n".join(f"- {fact.text}" for fact in self.facts)

    def tokens(self, count: Count) -> int:
        return count(self.text()) if self.facts else 0


@dataclass(frozen=True)
class SummaryUpdate:
    summary: Summary
    dropped: tuple[Fact, ...] = field(default_factory=tuple)
    """Facts the cap pushed out, oldest first (recorded by the caller)."""


def summary_update(summary: Summary, new: Iterable[Fact], *, cap_tokens: int, count: Count) -> SummaryUpdate:
    """`summary` with the `new` facts, within `cap_tokens` (300 to 500)."""
    if not MIN_CAP <= cap_tokens <= MAX_CAP:
        raise ValueError(f"the summary's cap is between {MIN_CAP} and {MAX_CAP} tokens, got {cap_tokens}")
    by_wording: dict[str, Fact] = {}
    for fact in (*summary.facts, *new):
        key = _wording(fact.text)
        by_wording.pop(key, None)  # the newer statement of one fact replaces the older, and moves to the end
        by_wording[key] = fact
    kept = sorted(by_wording.values(), key=lambda fact: fact.turn)
    dropped: list[Fact] = []
    while kept and Summary(tuple(kept)).tokens(count) > cap_tokens:
        victim = min(kept, key=lambda fact: (information(fact.text), fact.turn))
        kept.remove(victim)
        dropped.append(victim)
    return SummaryUpdate(Summary(tuple(kept)), tuple(dropped))


_PINNED = re.compile(r"<[^<>]+#[0-9a-f]{8}>|\b[A-Za-z]*\d[\w-]*\b|(?<![.!?:]\s)(?<!^)\b[A-Z][a-z]+\b")
_COMMITMENT = re.compile(
    r"\b(promis\w*|refund\w*|replace\w*|cancel\w*|deliver\w*|ship\w*|fail\w*|error|declin\w*|approv\w*|"
    r"will|must|owe\w*|paid|charged?)\b",
    re.I,
)


def information(text: str) -> int:
    """How much a fact pins down: its numbers, references, tokens, names and words of commitment or failure."""
    return len(_PINNED.findall(text)) + len(_COMMITMENT.findall(text))


def _wording(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def extract_facts(items: Sequence[dict[str, Any]], *, turn: int) -> list[Fact]:
    """What a turn's items (the SDK's input items: messages, tool calls and their outputs) establish, as short
    sentences: the user's requests, each tool call's outcome and data, the assistant's answers."""
    calls = {item.get("call_id"): item for item in items if item.get("type") == "function_call"}
    facts: list[Fact] = []
    for item in items:
        if item.get("role") == "user" and isinstance(item.get("content"), str):
            sentences = _sentences(item["content"])[:_SENTENCES_PER_MESSAGE]
            facts += [Fact(f"The customer said: {sentence}", turn) for sentence in sentences]
        elif item.get("type") == "function_call_output":
            call = calls.get(item.get("call_id"), {})
            facts.append(Fact(_tool_fact(str(call.get("name", "a tool")), item.get("output")), turn))
        elif item.get("role") == "assistant":
            said = _assistant_text(item.get("content"))
            if said:
                facts.append(Fact(f"The agent said: {_first_sentence(said)}", turn))
    return facts


def _tool_fact(tool: str, output: Any) -> str:
    try:
        envelope = json.loads(output) if isinstance(output, str) else output
    except ValueError:
        return f"{tool} answered: {_first_sentence(str(output))}"
    if not isinstance(envelope, dict):
        return f"{tool} answered: {_first_sentence(str(output))}"
    if not envelope.get("ok"):
        return f"{tool} failed with {envelope.get('error_code')}: {envelope.get('error_message')}"
    data = envelope.get("data")
    if isinstance(data, dict):
        shown = ", ".join(f"{key} {value}" for key, value in data.items() if isinstance(value, (str, int, float)))
        return f"{tool} succeeded: {shown}" if shown else f"{tool} succeeded"
    return f"{tool} succeeded"


def _assistant_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict)).strip()
    return ""


_SENTENCES_PER_MESSAGE = 4  # a customer's message can state several facts ("My order is A-1. It came broken.")


def _sentences(text: str, limit: int = 200) -> list[str]:
    sentences = [sentence for sentence in re.split(r"(?<=[.!?])\s+", text.strip()) if sentence]
    return [sentence if len(sentence) <= limit else sentence[: limit - 1] + "…" for sentence in sentences]


def _first_sentence(text: str, limit: int = 200) -> str:
    sentences = _sentences(text, limit)
    return sentences[0] if sentences else ""

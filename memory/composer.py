"""What one model turn is sent: the window plus the summary facts relevant to the goal, not the whole transcript.

Two layers (`MemoryLayer`, a small protocol in the manner of the SDK's `Session`: items in, items out):
- the window (`memory.window`): the last N turns, the session's earlier tasks' first, then this task's own, the
  task's own message always kept, a tool call never parted from its output;
- the summary (`memory.summary`): facts learnt from every item once, when it is first seen, capped at the
  agent's token cap; of those, only the ones BM25 (`memory.relevance`) finds relevant to the goal are sent, within
  a per-turn budget, as a block appended to the instructions, and none the window already shows verbatim.

Everything here is a function of what the task recalled when it started (journalled) and of the run's own items
(recorded), so a replayed turn is composed byte for byte as it first was. Each turn's `record` says what was
learnt, dropped for the cap and injected (with its score): it is kept in the turn's input snapshot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from memory.relevance import bm25, relevant
from memory.summary import Count, Fact, Summary, summary_update
from memory.window import Group, Item, last_turns, turn_groups

MEMORY_HEADER = "What you remember from earlier in this conversation (the facts relevant to this task):"
Summarize = Callable[[Sequence[Item], int], Awaitable[list[Fact]]]
"""Facts in new items, learnt at the given session turn: extractive offline, a durable model call otherwise."""


@dataclass(frozen=True)
class MemorySettings:
    window_turns: int = 8
    """Turns (groups of items, see `memory.window`) the model sees verbatim."""
    summary_tokens: int = 400
    """The summary's cap, 300 to 500 tokens."""
    inject_tokens: int = 200
    """The most summary facts a turn is sent, in tokens."""


@dataclass(frozen=True)
class Recalled:
    """What a session held when a task started. Read once and journalled: every replay gets the same."""

    version: int = 0
    turns: int = 0
    """The session's turns before this task: the task's turn k is the session's turn `turns + k`."""
    facts: tuple[Fact, ...] = ()
    window: tuple[Group, ...] = ()

    def to_json(self) -> dict[str, Any]:
        facts = [fact.to_json() for fact in self.facts]
        return {"version": self.version, "turns": self.turns, "facts": facts, "window": [list(g) for g in self.window]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Recalled:
        return cls(
            version=int(data.get("version", 0)),
            turns=int(data.get("turns", 0)),
            facts=tuple(Fact.from_json(fact) for fact in data.get("facts", ())),
            window=tuple(list(group) for group in data.get("window", ())),
        )


class MemoryLayer(Protocol):
    def add_items(self, items: Sequence[Item], *, turn: int) -> Awaitable[None]: ...

    def get_items(self, *, query: str) -> list[Item]: ...


@dataclass
class SummaryLayer:
    """The capped summary; `get_items` gives the relevant facts as one system message (the composer sends it
    with the instructions: every endpoint takes a system prompt, not all take system messages mid-input)."""

    settings: MemorySettings
    count: Count
    summarize: Summarize
    summary: Summary = field(default_factory=Summary)
    learnt: tuple[Fact, ...] = ()
    dropped: tuple[Fact, ...] = ()
    sent: list[tuple[Fact, float]] = field(default_factory=list)
    """What the last `get_items` sent, with the scores: for the turn's record."""

    async def add_items(self, items: Sequence[Item], *, turn: int) -> None:
        self.learnt = tuple(await self.summarize(items, turn)) if items else ()
        update = summary_update(self.summary, self.learnt, cap_tokens=self.settings.summary_tokens, count=self.count)
        self.summary, self.dropped = update.summary, update.dropped

    def scored(self, query: str, *, seen: frozenset[str] = frozenset()) -> list[tuple[Fact, float]]:
        """The facts to send, oldest first, each with its BM25 score for `query`; none of the `seen` ones (the
        model reads where they came from in its window)."""
        candidates = [fact for fact in self.summary.facts if fact.text not in seen]
        texts = [fact.text for fact in candidates]
        chosen = relevant(texts, query, budget_tokens=self.settings.inject_tokens, count=self.count)
        scores = bm25(texts, query)
        return [(candidates[index], round(scores[index], 3)) for index in sorted(chosen)]

    def get_items(self, *, query: str, seen: frozenset[str] = frozenset()) -> list[Item]:
        self.sent = self.scored(query, seen=seen)
        return [{"role": "system", "content": block([fact for fact, _ in self.sent])}] if self.sent else []


@dataclass
class WindowLayer:
    """The last N turns: the session's earlier ones, then the task's own (its first item, the task, always)."""

    settings: MemorySettings
    prior: tuple[Group, ...] = ()
    own: list[Group] = field(default_factory=list)
    keep: Callable[[Item], bool] = lambda item: False
    """Items whose turn is never left out (operators' instructions: the goal from then on)."""
    sent: tuple[list[Group], list[Group], list[Group]] = ([], [], [])
    """What the last `get_items` sent, as `parts` cut it: for the turn's record."""

    async def add_items(self, items: Sequence[Item], *, turn: int) -> None:
        self.own = turn_groups(items)  # the task's whole transcript so far: it is regrouped, not appended to

    def get_items(self, *, query: str = "") -> list[Item]:
        self.sent = self.parts()
        return [item for parts in self.sent for group in parts for item in group]

    def parts(self) -> tuple[list[Group], list[Group], list[Group]]:
        """The session's earlier turns, the task's message, and the task's own turns kept. Kept whatever N is:
        the task's message, every operator instruction (it is the goal from then on), and the latest turn (the
        model must see what its last call returned)."""
        head, rest = self.own[:1], self.own[1:]
        pinned = {id(group) for group in rest if any(self.keep(item) for item in group)}
        if rest:
            pinned.add(id(rest[-1]))
        room = max(self.settings.window_turns - len(head) - len(pinned), 0)
        chosen = {id(group) for group in last_turns([g for g in rest if id(g) not in pinned], room)}
        kept = [group for group in rest if id(group) in pinned or id(group) in chosen]
        return last_turns(self.prior, room - len(chosen)), head, kept


def block(facts: Sequence[Fact]) -> str:
    return "\n".join([MEMORY_HEADER, *(f"- {fact.text}" for fact in facts)])


@dataclass(frozen=True)
class Composed:
    instructions: str | None
    input: list[Item]
    record: dict[str, Any]


class TurnComposer:
    """Composes each turn of one run, in order (the SDK asks for turns one after another)."""

    def __init__(
        self,
        recalled: Recalled,
        settings: MemorySettings,
        *,
        count: Count,
        summarize: Summarize,
        keep: Callable[[Item], bool] = lambda item: False,
    ) -> None:
        """`keep`: items whose turn always stays in the window, and which are not summarized (they are there)."""
        self.recalled = recalled
        self.summary = SummaryLayer(settings, count, summarize, Summary(recalled.facts))
        self.window = WindowLayer(settings, prior=recalled.window, keep=keep)
        self.keep = keep
        self._seen = 0
        self._sources: dict[str, int] = {}
        """Each fact this run learnt, by its text: the index of the first transcript item it was learnt from."""

    async def compose(self, *, turn: int, own: list[Item], instructions: str | None, query: str) -> Composed:
        """Turn `turn` of the task, from its transcript so far (`own`: the task message first, then everything
        the run added; it only grows)."""
        # Kept items (operators' instructions) stay in the window and are not summarized: after a send-back, the
        # summarizer is asked about exactly what it was asked before, so its recorded answer holds.
        new = [item for item in own[self._seen :] if not self.keep(item)]
        await self.summary.add_items(new, turn=self.recalled.turns + turn)
        self._sources.update({fact.text: self._seen for fact in self.summary.learnt})
        self._seen = len(own)
        await self.window.add_items(own, turn=turn)
        sent_input = self.window.get_items()
        prior, head, kept = self.window.sent
        shown = {id(item) for group in (*head, *kept) for item in group}
        visible = {index for index, item in enumerate(own) if id(item) in shown}
        seen = frozenset(text for text, index in self._sources.items() if index in visible)
        remembered = [str(item["content"]) for item in self.summary.get_items(query=query, seen=seen)]
        sent = "\n\n".join(part for part in (instructions, *remembered) if part) if remembered else instructions
        record = {
            "session_version": self.recalled.version,
            "learnt": [fact.to_json() for fact in self.summary.learnt],
            "dropped": [fact.to_json() for fact in self.summary.dropped],
            "injected": [{"text": fact.text, "score": score} for fact, score in self.summary.sent],
            "summary_facts": len(self.summary.summary.facts),
            "summary_tokens": self.summary.summary.tokens(self.summary.count),
            "window": {"prior_turns": len(prior), "own_turns_left_out": len(self.window.own) - len(head) - len(kept)},
            "own_from": sum(len(group) for group in prior),
        }
        return Composed(sent, sent_input, record)

"""The SDK's `call_model_input_filter` for one run: every turn's input composed from memory (`memory.composer`).

The SDK hands the filter the run's whole transcript (the task message, then every item the run added); the filter
puts each operator instruction back where it was given (the SDK's own history never holds them), then sends the
window plus the relevant summary facts instead. Each turn's record (learnt, dropped, injected) waits here for
`DurableModel` to keep it in that turn's input snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from agents import TResponseInputItem
from agents.run_config import CallModelData, ModelInputData

from agent_runtime.journal import RunJournal
from agent_runtime.prompt import instruction_text, is_task_message, operator_instruction_item, parse_task_message
from agent_runtime.snapshots import to_jsonable
from agent_runtime.tokens import count_text_tokens
from memory.composer import MemorySettings, Recalled, Summarize, TurnComposer
from memory.summary import Fact, extract_facts
from memory.window import Item


class RunMemory:
    def __init__(
        self,
        *,
        recalled: Recalled,
        settings: MemorySettings,
        journal: RunJournal,
        model: str,
        summarize: Summarize | None = None,
    ) -> None:
        self.journal = journal
        self.composer = TurnComposer(
            recalled,
            settings,
            count=lambda text: count_text_tokens(text, model=model),
            summarize=summarize or extractive,
            keep=lambda item: instruction_text(item) is not None,
        )
        self._turn = 0
        self._instructions: list[tuple[int, str]] | None = None
        self._lengths: dict[int, int] = {}
        """How many items the transcript had at each turn, before instructions went in: where each goes."""
        self._records: dict[int, dict[str, Any]] = {}

    async def __call__(self, data: CallModelData[Any]) -> ModelInputData:
        self._turn += 1
        own = await self._with_instructions(self._turn, [to_jsonable(item) for item in data.model_data.input])
        composed = await self.composer.compose(
            turn=self._turn, own=own, instructions=data.model_data.instructions, query=_query(own)
        )
        self._records[self._turn] = composed.record
        return ModelInputData(input=cast(list[TResponseInputItem], composed.input), instructions=composed.instructions)

    @property
    def turn(self) -> int:
        """The turn whose input was composed last: the one the model is asked for now."""
        return self._turn

    def record_of(self, turn: int) -> dict[str, Any] | None:
        """What memory did for `turn` (for that turn's snapshot)."""
        return self._records.get(turn)

    async def _with_instructions(self, turn: int, items: list[Item]) -> list[Item]:
        """The transcript with every operator instruction due by this turn in its place: the same on every turn
        after it and on every replay."""
        if self._instructions is None:
            self._instructions = await self.journal.operator_instructions()
        self._lengths.setdefault(turn, len(items))
        due = [(before, text) for before, text in self._instructions if before <= turn]
        for before, text in reversed(due):  # from the last position back, so earlier positions stay right
            items.insert(self._lengths.get(before, len(items)), operator_instruction_item(text))
        return items


def _query(own: Sequence[Item]) -> str:
    """What relevance is judged against: the task (its goal and input) and the operators' instructions."""
    parts = [str(own[0].get("content", ""))] if own else []
    parts += [text for item in own if (text := instruction_text(item)) is not None]
    return "\n".join(parts)


async def extractive(items: Sequence[Item], turn: int) -> list[Fact]:
    """The offline summarizer: deterministic, sentences lifted from the items; a task message gives its goal's
    sentences and one fact of its input's values (not its JSON)."""
    readable: list[Item] = []
    inputs: list[Fact] = []
    for item in items:
        content = item.get("content")
        if item.get("role") != "user" or not isinstance(content, str) or not is_task_message(content):
            readable.append(item)
            continue
        goal, task_input = parse_task_message(content)
        readable.append({**item, "content": goal})
        shown = ", ".join(f"{key} {value}" for key, value in task_input.items() if isinstance(value, (str, int, float)))
        inputs += [Fact(f"The task's input: {shown}", turn)] if shown else []
    return extract_facts(readable, turn=turn) + inputs

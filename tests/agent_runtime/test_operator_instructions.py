"""An operator's instruction reaches the model as a user message before the turn it was given for, at the same
place on every turn after it, and identically on a replay (the SDK's own history never holds it)."""

from __future__ import annotations

from typing import Any, cast

from agents import Agent, ModelResponse, TResponseInputItem, Usage
from agents.models.interface import Model
from agents.run_config import CallModelData, ModelInputData
from asgiref.sync import async_to_sync

from agent_runtime.durable_model import DurableModel
from agent_runtime.journal import ModelCall, TurnUsage
from agent_runtime.prompt import operator_instruction_item
from agent_runtime.run_memory import RunMemory
from memory.composer import MemorySettings, Recalled


class RecordingModel(Model):
    """Answers every request with no output and remembers the input it was sent."""

    def __init__(self) -> None:
        self.inputs: list[list[dict[str, Any]]] = []

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        self.inputs.append(list(kwargs["input"]))
        return ModelResponse(output=[], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


class MemoryJournal:
    """Turns recorded in memory; the operator's instructions fixed, as the database journal gives them."""

    def __init__(self, instructions: list[tuple[int, str]], recorded: dict[int, dict[str, Any]] | None = None) -> None:
        self.instructions = instructions
        self.recorded = recorded if recorded is not None else {}

    async def replay_turn(self, turn: int, call: ModelCall = "turn") -> dict[str, Any] | None:
        return self.recorded.get(turn)

    async def begin_turn(
        self, turn: int, model: str, request: dict[str, Any], worst_case: TurnUsage, call: ModelCall = "turn"
    ) -> int:
        return 1

    async def end_turn(
        self, turn: int, response: dict[str, Any], usage: TurnUsage, call: ModelCall = "turn"
    ) -> dict[str, Any]:
        self.recorded[turn] = response
        return response

    async def fail_turn(self, turn: int, error: dict[str, Any], call: ModelCall = "turn") -> None:
        pass

    async def operator_instructions(self) -> list[tuple[int, str]]:
        return self.instructions

    async def call_tool(self, call_id: str, name: str, arguments: str) -> str:
        raise AssertionError("no tools here")


TASK = {"role": "user", "content": "Refund order A-1002"}
CALL = {"type": "function_call", "call_id": "c1", "name": "refund_order", "arguments": "{}"}
OUTPUT = {"type": "function_call_output", "call_id": "c1", "output": '{"ok": false}'}
CALL2 = {"type": "function_call", "call_id": "c2", "name": "lookup_order", "arguments": "{}"}
OUTPUT2 = {"type": "function_call_output", "call_id": "c2", "output": '{"ok": true}'}
# What the SDK sends for turns 1, 2 and 3 of a run: its history grows, and never holds the instruction.
TURN_INPUTS = [[TASK], [TASK, CALL, OUTPUT], [TASK, CALL, OUTPUT, CALL2, OUTPUT2]]
SAY = operator_instruction_item("Look the order up instead")


def _run(model: DurableModel, turns: int) -> None:
    """Each turn as the SDK makes it: the run's input filter, then the model."""
    assert model.memory is not None
    for turn_input in TURN_INPUTS[:turns]:
        items = cast(list[TResponseInputItem], list(turn_input))
        data = CallModelData(
            model_data=ModelInputData(input=items, instructions=""), agent=cast(Agent[Any], None), context=None
        )
        sent = async_to_sync(model.memory)(data)
        async_to_sync(model.get_response)(
            system_instructions=sent.instructions, input=sent.input, model_settings=None, tools=[], output_schema=None,
            handoffs=[], tracing=None, previous_response_id=None, conversation_id=None, prompt=None,
        )  # fmt: skip


def _durable(journal: MemoryJournal, inner: Model) -> DurableModel:
    memory = RunMemory(recalled=Recalled(), settings=MemorySettings(), journal=journal, model="test")
    return DurableModel(inner, model_name="test", journal=journal, deadline_seconds=5, memory=memory)


def test_the_instruction_comes_before_its_turn_and_stays_in_place_after() -> None:
    inner = RecordingModel()
    _run(_durable(MemoryJournal([(2, "Look the order up instead")]), inner), turns=3)
    assert inner.inputs[0] == [TASK], "not before the turn it was given for"
    assert inner.inputs[1] == [TASK, CALL, OUTPUT, SAY], "after the failed call's output, before turn 2"
    assert inner.inputs[2] == [TASK, CALL, OUTPUT, SAY, CALL2, OUTPUT2], "where it was given, on later turns"


def test_a_replay_sends_the_model_exactly_what_the_first_run_sent() -> None:
    first = RecordingModel()
    journal = MemoryJournal([(2, "Look the order up instead")])
    _run(_durable(journal, first), turns=3)
    del journal.recorded[3]  # as if the worker died before turn 3's response was recorded
    replayed = RecordingModel()
    _run(_durable(journal, replayed), turns=3)  # turns 1 and 2 replay from the journal; turn 3 is asked again
    assert replayed.inputs == [first.inputs[2]], "turn 3 gets the very input the first run sent"


def test_without_instructions_the_input_is_untouched() -> None:
    inner = RecordingModel()
    _run(_durable(MemoryJournal([]), inner), turns=3)
    assert inner.inputs == TURN_INPUTS

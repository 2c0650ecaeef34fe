"""A `Model` wrapper that makes every turn a durable step: recorded turns are replayed, not requested again."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

from agents import ModelResponse, ModelSettings
from agents.models.interface import Model, ModelTracing

from agent_runtime.faults import with_model_fault
from agent_runtime.journal import ModelCall, RunJournal, TurnUsage
from agent_runtime.run_memory import RunMemory
from agent_runtime.snapshots import response_from_snapshot, response_to_snapshot, to_jsonable
from agent_runtime.specs import Price
from agent_runtime.tokens import count_tokens
from faults.plan import Fault, active_plan


class ModelDeadlineExceeded(TimeoutError):
    """The model request outlived the turn's deadline (whatever the client's own timeouts said)."""


class DurableModel(Model):
    """Wraps the real model (offline or an endpoint) for one run.

    Turns are numbered in the order the SDK asks for them; since recorded responses are replayed verbatim,
    a resumed run asks for the same turns in the same order and reaches the first unrecorded one. Every request
    has a hard deadline, so a hung endpoint costs one failed, retryable attempt rather than the whole worker.
    """

    def __init__(
        self,
        inner: Model,
        *,
        model_name: str,
        journal: RunJournal,
        deadline_seconds: float,
        price: Price | None = None,
        output_reserve_tokens: int = 4096,
        fault_key: str = "",
        memory: RunMemory | None = None,
    ) -> None:
        self.inner = inner
        self.model_name = model_name
        self.journal = journal
        self.deadline_seconds = deadline_seconds
        self.price = price
        self.output_reserve_tokens = output_reserve_tokens
        """What a request may write when the agent sets no max_tokens: the budget reserves it before asking."""
        self.fault_key = fault_key
        """Identifies the run to the fault plan (tests and drills only)."""
        self.memory = memory
        """What composed each turn's input (the run's input filter): its record goes into the turn's snapshot."""
        self._next_turn = 1

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        if self.memory is not None:
            turn = self.memory.turn  # numbered where its input was composed, once per turn
        else:
            turn = self._next_turn
            self._next_turn += 1
        memory = self.memory.record_of(turn) if self.memory else None
        return await self._durable(turn, "turn", args, kwargs, {"memory": memory} if memory is not None else {})

    async def summarize(self, turn: int, *, instructions: str, text: str, max_tokens: int) -> ModelResponse:
        """The memory summarizer's request before turn `turn` (its own durable step, replayed like an answer)."""
        request: dict[str, Any] = {
            "system_instructions": instructions,
            "input": [{"role": "user", "content": text}],
            "model_settings": ModelSettings(max_tokens=max_tokens),
            "tools": [],
            "output_schema": None,
            "handoffs": [],
            "tracing": ModelTracing.DISABLED,
            "previous_response_id": None,
            "conversation_id": None,
            "prompt": None,
        }
        return await self._durable(turn, "summary", (), request, {})

    async def _durable(
        self, turn: int, call: ModelCall, args: tuple[Any, ...], kwargs: dict[str, Any], noted: dict[str, Any]
    ) -> ModelResponse:
        """One model request as a step: replayed if recorded, else begun (budget checked), sent, and recorded."""
        recorded = await self.journal.replay_turn(turn, call)
        if recorded is not None:
            return response_from_snapshot(recorded)
        args, kwargs, output_limit = self._with_output_limit(args, kwargs)
        worst_case = self._worst_case(_request_as_sent(*args, **kwargs), output_limit)
        snapshot = _request_snapshot(*args, **kwargs) | noted
        attempt = await self.journal.begin_turn(turn, self.model_name, snapshot, worst_case, call)
        # The fault plan numbers the agent's turns; the summarizer's requests are not among them.
        fault = active_plan().model_fault(key=self.fault_key, turn=turn, attempt=attempt) if call == "turn" else None
        try:
            response = await self._request(fault, args, kwargs)
        except Exception as exc:
            await self.journal.fail_turn(turn, {"type": type(exc).__name__, "message": str(exc)[:2000]}, call)
            raise
        tokens_in, tokens_out = response.usage.input_tokens, response.usage.output_tokens
        cost = self.price.cost(tokens_in, tokens_out) if self.price else Decimal("0")
        usage = TurnUsage(input_tokens=tokens_in, output_tokens=tokens_out, cost=cost)
        recorded = await self.journal.end_turn(turn, response_to_snapshot(response), usage, call)
        return response_from_snapshot(recorded)

    def _with_output_limit(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any], int]:
        """The request with a cap on what the model may write: the agent's, else the reserve, sent as max_tokens so
        the endpoint enforces what the budget reserved. Returns the request and that cap."""
        settings = (kwargs["model_settings"] if "model_settings" in kwargs else args[2]) or ModelSettings()
        limit = _output_limit(settings)
        if limit is not None:
            return args, kwargs, limit
        capped = dataclasses.replace(settings, max_tokens=self.output_reserve_tokens)
        if "model_settings" in kwargs:
            return args, {**kwargs, "model_settings": capped}, self.output_reserve_tokens
        return (*args[:2], capped, *args[3:]), kwargs, self.output_reserve_tokens

    def _worst_case(self, request: dict[str, Any], tokens_out: int) -> TurnUsage:
        """The most this request can use: its input as counted here, plus the most it may write, and their price."""
        tokens_in = count_tokens(request, model=self.model_name)
        cost = self.price.cost(tokens_in, tokens_out) if self.price else Decimal("0")
        return TurnUsage(input_tokens=tokens_in, output_tokens=tokens_out, cost=cost)

    async def _request(self, fault: Fault | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ModelResponse:
        deadline = asyncio.timeout(self.deadline_seconds)
        try:
            async with deadline:
                return await with_model_fault(fault, lambda: self.inner.get_response(*args, **kwargs))
        except TimeoutError:
            if deadline.expired():
                raise ModelDeadlineExceeded(
                    f"the model request outlived its deadline ({self.deadline_seconds:g} s)"
                ) from None
            raise

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("durable runs do not stream: each turn is persisted whole")


def _request_snapshot(
    system_instructions: str | None, input: Any, model_settings: Any, tools: list[Any], *args: Any, **kwargs: Any
) -> dict[str, Any]:
    return {
        "instructions": system_instructions,
        "input": to_jsonable(input),
        "tools": [getattr(tool, "name", str(tool)) for tool in tools],
    }


def _request_as_sent(
    system_instructions: str | None, input: Any, model_settings: Any, tools: list[Any], *args: Any, **kwargs: Any
) -> dict[str, Any]:
    """What the model reads, tool schemas included, for counting (the snapshot keeps only the tools' names)."""
    described = [
        {"name": getattr(tool, "name", ""), "description": getattr(tool, "description", ""),
         "parameters": getattr(tool, "params_json_schema", None)}
        for tool in tools
    ]  # fmt: skip
    return {"instructions": system_instructions, "input": to_jsonable(input), "tools": described}


_OUTPUT_LIMIT_ARGS = ("max_output_tokens", "max_completion_tokens")  # what endpoints call it in extra_args


def _output_limit(model_settings: ModelSettings) -> int | None:
    """The most the model may write per request, as the agent's settings say; None when they do not say."""
    extra = model_settings.extra_args or {}
    for limit in (model_settings.max_tokens, *(extra.get(name) for name in _OUTPUT_LIMIT_ARGS)):
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            return limit
    return None

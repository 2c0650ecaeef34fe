"""The orchestrator's side of a durable run: every model turn and tool call persisted before and after it runs.

The runtime calls these methods from the SDK's event loop; each wraps a synchronous database transaction that
runs on the worker's own thread (asgiref's thread-sensitive mode), so Django's connection handling holds.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction

from agent_runtime.journal import ModelCall, RunSuspended, TurnUsage
from lib.db import released
from memory.vault import protect, protect_answer
from orchestration import metrics
from orchestration.models import Step, StepKind, StepState, Task, TaskState
from orchestration.policy.model_turns import TurnOutcome, turn_decide
from orchestration.services.budgets import budget_stops_request
from orchestration.services.decisions import decision_apply, policy_limits
from orchestration.services.journal_tools import ToolCallJournal
from orchestration.services.leases import task_lease_renew
from orchestration.services.steps import (
    MODEL_STEP_KINDS,
    step_begin,
    step_close,
    turn_ref,
)

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def _db(work: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """A journal transaction on the run's own thread; with a connection pool, its connection goes back after."""
    return sync_to_async(released(work), thread_sensitive=True)


class DatabaseJournal(ToolCallJournal):
    # --- the RunJournal protocol ------------------------------------------------------------------
    async def replay_turn(self, turn: int, call: ModelCall = "turn") -> dict[str, Any] | None:
        if call == "turn":
            self._turn = turn
        return await _db(self._recorded_output)(turn_ref(turn, call))

    async def begin_turn(
        self, turn: int, model: str, request: dict[str, Any], worst_case: TurnUsage, call: ModelCall = "turn"
    ) -> int:
        return await _db(self._begin_turn)(turn, model, request, worst_case, call)

    async def end_turn(
        self, turn: int, response: dict[str, Any], usage: TurnUsage, call: ModelCall = "turn"
    ) -> dict[str, Any]:
        return await _db(self._end_turn)(turn, response, usage, call)

    async def fail_turn(self, turn: int, error: dict[str, Any], call: ModelCall = "turn") -> None:
        await _db(self._fail_turn)(turn, error, call)

    async def call_tool(self, call_id: str, name: str, arguments: str) -> str:
        return await _db(self._call_tool)(call_id, name, arguments)

    async def operator_instructions(self) -> list[tuple[int, str]]:
        return await _db(self._operator_instructions)()

    def _operator_instructions(self) -> list[tuple[int, str]]:
        recorded = sorted(
            (s for s in self._known().by_ref.values() if s.kind == StepKind.OPERATOR_INSTRUCTION),
            key=lambda step: step.seq,
        )
        return [
            (int(step.output["before_turn"]), str(step.output["text"]))
            for step in recorded
            if step.state == StepState.SUCCEEDED and step.output
        ]

    # --- model turns ------------------------------------------------------------------------------
    def _recorded_output(self, ref: str) -> dict[str, Any] | None:
        step = self._known().recorded(ref)
        return step.output if step is not None and step.state == StepState.SUCCEEDED else None

    def _begin_turn(
        self, turn: int, model: str, request: dict[str, Any], worst_case: TurnUsage, call: ModelCall
    ) -> int:
        ref = turn_ref(turn, call)
        deadline = settings.MODEL_CALL_TIMEOUT_SECONDS
        with transaction.atomic():
            task = self._locked()
            over_budget = budget_stops_request(task=task, worst_case=worst_case, actor=self.actor)
            if not over_budget:
                step = step_begin(
                    task=task,
                    kind=MODEL_STEP_KINDS[call],
                    ref=ref,
                    name=model,
                    step_input=request,  # redacted by step_begin, like every snapshot
                    deadline_seconds=deadline,
                    known=self._known(),
                )
                self._attempts[ref] = step.attempt
                task_lease_renew(task, step_deadline_seconds=deadline)
                task.save()
        if over_budget:  # raised once the handoff is committed: the model is not asked
            raise RunSuspended("the next model request could cross the task's budget")
        return step.attempt

    def _end_turn(self, turn: int, response: dict[str, Any], usage: TurnUsage, call: ModelCall) -> dict[str, Any]:
        """Record the response (redacted: the run goes on with what is recorded) and its tokens, even if the task
        was cancelled meanwhile: they were paid for. A summary is only recorded: the answer moves the task on."""
        response = protect_answer(response, scope=self.scope, sensitive_fields=self._sensitive_fields_for(turn))
        with transaction.atomic():
            task, still_leased = self._locked_any()
            step = self._own_step(turn_ref(turn, call), still_leased=still_leased)
            if step is not None:
                step_close(
                    step=step,
                    succeeded=True,
                    output=response,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cost=usage.cost,
                )
            task.input_tokens += usage.input_tokens
            task.output_tokens += usage.output_tokens
            task.cost += usage.cost
            metrics.model_usage_count(
                task_id=self.lease.task_id,
                model=step.name if step is not None else self._model_of(turn_ref(turn, call)),
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost=usage.cost,
            )
            stop = None
            if not still_leased:
                task.save(update_fields=_USAGE)
                self._note_if_cancelled(task, step, "its response and tokens were recorded")
                stop = "the task was taken back while the model answered" if call == "turn" else None
            elif call == "turn":
                stop = self._after_turn(task, step, response)  # the decision saves the task
            else:
                task.save(update_fields=_USAGE)
        # Outside the transaction: raising inside it would roll back what was just recorded.
        if stop is not None:
            raise RunSuspended(stop)
        return response

    def _after_turn(self, task: Task, step: Step | None, response: dict[str, Any]) -> str | None:
        """Move the locked task, still this run's, on after a recorded turn; returns why the run must stop, or None."""
        calls = tuple(item["name"] for item in response["output"] if item.get("type") == "function_call")
        turn = TurnOutcome(
            task_state=TaskState(task.state), calls=calls, tool_names=self.tool_names, task_replans=task.replans
        )
        decision = turn_decide(turn, policy_limits())
        if decision.run_goes_on:
            task_lease_renew(task)  # saved with the decision
        decision_apply(task=task, step=step, decision=decision, actor=self.actor)
        return None if decision.run_goes_on else "the model kept calling tools its agent does not have"

    def _model_of(self, ref: str) -> str:
        """The model a turn asked, read back when its late answer no longer closes the step."""
        name = Step.objects.filter(task_id=self.lease.task_id, ref=ref).values_list("name", flat=True)
        return name.first() or ""

    def _fail_turn(self, turn: int, error: dict[str, Any], call: ModelCall) -> None:
        with transaction.atomic():
            _, still_leased = self._locked_any()
            step = self._own_step(turn_ref(turn, call), still_leased=still_leased)
            if step is not None:
                step_close(step=step, succeeded=False, output={"error": protect(error, scope=self.scope)})


_USAGE = ["input_tokens", "output_tokens", "cost"]

"""The orchestrator's side of a durable run: every model turn and tool call persisted before and after it runs.

The runtime calls these methods from the SDK's event loop; each wraps a synchronous database transaction that
runs on the worker's own thread (asgiref's thread-sensitive mode), so Django's connection handling holds.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from agent_runtime.journal import ModelCall, RunSuspended, TurnUsage
from memory.vault import protect, protect_answer, reveal_arguments
from orchestration import metrics
from orchestration.models import Approval, ApprovalDecision, Step, StepKind, StepState, Task, TaskState
from orchestration.policy.model_turns import TurnOutcome, turn_decide
from orchestration.policy.operator_actions import cancelled_mid_step_decide, rejected_call_result
from orchestration.policy.tool_results import ToolOutcome, tool_call_begin_decide, tool_result_decide
from orchestration.services.approvals import approval_take
from orchestration.services.budgets import budget_stops_request
from orchestration.services.decisions import decision_apply, policy_limits
from orchestration.services.leases import Lease, LeaseLost, task_lease_renew, task_locked_for, task_locked_or_none
from orchestration.services.steps import (
    MODEL_STEP_KINDS,
    call_ref,
    step_begin,
    step_close,
    tool_arguments_object,
    tool_arguments_snapshot,
    turn_ref,
)
from tools.adapters.base import CallContext
from tools.contract import Contract
from tools.envelope import ToolResult
from tools.selectors import active_contract, sensitive_fields_of
from tools.services.calls import tool_call

logger = logging.getLogger(__name__)


class DatabaseJournal:
    def __init__(self, *, lease: Lease, actor: str, tool_names: frozenset[str] = frozenset(), scope: str = "") -> None:
        self.lease = lease
        self.actor = actor
        self.tool_names = tool_names
        self.scope = scope or f"task:{lease.task_id}"
        """Where this run's redaction tokens live (the task's session, or the task): see memory.vault."""
        # The attempt of each step this run started: a step closes only if it is still that attempt, so a
        # worker that lost its lease never overwrites the step its successor restarted.
        self._attempts: dict[str, int] = {}
        # The model turn whose tool calls run now: the SDK runs a turn's calls before it asks for the next turn.
        self._turn = 0

    # --- the RunJournal protocol ------------------------------------------------------------------
    async def replay_turn(self, turn: int, call: ModelCall = "turn") -> dict[str, Any] | None:
        if call == "turn":
            self._turn = turn
        return await sync_to_async(self._recorded_output, thread_sensitive=True)(turn_ref(turn, call))

    async def begin_turn(
        self, turn: int, model: str, request: dict[str, Any], worst_case: TurnUsage, call: ModelCall = "turn"
    ) -> int:
        return await sync_to_async(self._begin_turn, thread_sensitive=True)(turn, model, request, worst_case, call)

    async def end_turn(
        self, turn: int, response: dict[str, Any], usage: TurnUsage, call: ModelCall = "turn"
    ) -> dict[str, Any]:
        return await sync_to_async(self._end_turn, thread_sensitive=True)(turn, response, usage, call)

    async def fail_turn(self, turn: int, error: dict[str, Any], call: ModelCall = "turn") -> None:
        await sync_to_async(self._fail_turn, thread_sensitive=True)(turn, error, call)

    async def call_tool(self, call_id: str, name: str, arguments: str) -> str:
        return await sync_to_async(self._call_tool, thread_sensitive=True)(call_id, name, arguments)

    async def operator_instructions(self) -> list[tuple[int, str]]:
        return await sync_to_async(self._operator_instructions, thread_sensitive=True)()

    def _operator_instructions(self) -> list[tuple[int, str]]:
        recorded = Step.objects.filter(
            task_id=self.lease.task_id, kind=StepKind.OPERATOR_INSTRUCTION, state=StepState.SUCCEEDED
        ).order_by("seq")
        return [(int(step.output["before_turn"]), str(step.output["text"])) for step in recorded if step.output]

    # --- model turns ------------------------------------------------------------------------------
    def _recorded_output(self, ref: str) -> dict[str, Any] | None:
        return (
            Step.objects.filter(task_id=self.lease.task_id, ref=ref, state=StepState.SUCCEEDED)
            .values_list("output", flat=True)
            .first()
        )

    def _locked(self) -> Task:
        try:
            return task_locked_for(self.lease)
        except LeaseLost as exc:
            raise RunSuspended(str(exc)) from exc

    def _own_step(self, ref: str) -> Step | None:
        """The step row, locked, if it is still the attempt this run started and has not ended."""
        step = Step.objects.select_for_update().get(task_id=self.lease.task_id, ref=ref)
        if step.attempt != self._attempts.get(ref) or step.state != StepState.RUNNING:
            logger.warning(
                "late result discarded: the step was taken back past its deadline and run again",
                extra={"step": ref, "attempt": self._attempts.get(ref), "current_attempt": step.attempt},
            )
            return None
        return step

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
        response = protect_answer(response, scope=self.scope, sensitive_fields=sensitive_fields_of)
        with transaction.atomic():
            step = self._own_step(turn_ref(turn, call))
            if step is not None:
                step_close(
                    step=step,
                    succeeded=True,
                    output=response,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cost=usage.cost,
                )
            Task.objects.filter(pk=self.lease.task_id).update(
                input_tokens=F("input_tokens") + usage.input_tokens,
                output_tokens=F("output_tokens") + usage.output_tokens,
                cost=F("cost") + usage.cost,
            )
            metrics.model_usage_count(
                task_id=self.lease.task_id,
                model=step.name if step is not None else self._model_of(turn_ref(turn, call)),
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost=usage.cost,
            )
            stop = self._after_turn(step, response) if call == "turn" else None
        # Outside the transaction: raising inside it would roll back what was just recorded.
        if stop is not None:
            raise RunSuspended(stop)
        return response

    def _after_turn(self, step: Step | None, response: dict[str, Any]) -> str | None:
        """Move the locked task on after a recorded turn; returns why the run must stop, or None."""
        task = task_locked_or_none(self.lease)
        if task is None:
            self._note_if_cancelled(step, "its response and tokens were recorded")
            return "the task was taken back while the model answered"
        calls = tuple(item["name"] for item in response["output"] if item.get("type") == "function_call")
        turn = TurnOutcome(
            task_state=TaskState(task.state), calls=calls, tool_names=self.tool_names, task_replans=task.replans
        )
        decision = turn_decide(turn, policy_limits())
        if decision.run_goes_on:
            task_lease_renew(task)  # saved with the decision
        decision_apply(task=task, step=step, decision=decision, actor=self.actor)
        return None if decision.run_goes_on else "the model kept calling tools its agent does not have"

    def _note_if_cancelled(self, step: Step | None, recorded: str) -> None:
        """The run lost its task mid-step; if a cancellation took it, say so on the task (caller's transaction)."""
        task = Task.objects.select_for_update().get(pk=self.lease.task_id)
        if step is None or task.state != TaskState.CANCELLED:
            return  # not ours to record: the worker that took the task over records what it finds
        decision = cancelled_mid_step_decide(step_seq=step.seq, step_name=step.name, recorded=recorded)
        decision_apply(task=task, step=step, decision=decision, actor=self.actor)

    def _model_of(self, ref: str) -> str:
        """The model a turn asked, read back when its late answer no longer closes the step."""
        name = Step.objects.filter(task_id=self.lease.task_id, ref=ref).values_list("name", flat=True)
        return name.first() or ""

    def _fail_turn(self, turn: int, error: dict[str, Any], call: ModelCall) -> None:
        with transaction.atomic():
            step = self._own_step(turn_ref(turn, call))
            if step is not None:
                step_close(step=step, succeeded=False, output={"error": protect(error, scope=self.scope)})

    # --- tool calls -------------------------------------------------------------------------------
    def _recorded_tool_result(self, ref: str) -> dict[str, Any] | None:
        """A final result: a success, or a failure no retry will change (the model re-plans on it)."""
        step = Step.objects.filter(task_id=self.lease.task_id, ref=ref).only("state", "output", "decided_by").first()
        if step is None or step.output is None:
            return None
        if step.state == StepState.SUCCEEDED or (step.state == StepState.FAILED and not step.output.get("retryable")):
            return dict(step.output)
        if step.state == StepState.FAILED and step.decided_by:
            return dict(step.output)  # an operator gave this failure to the model as final (a send-back)
        return None

    def _call_tool(self, call_id: str, name: str, arguments: str) -> str:
        ref = call_ref(self._turn, call_id)
        decision = self._decision(ref)
        if decision is None or decision.used_at is not None:
            recorded = self._recorded_tool_result(ref)
            if recorded is not None:
                return json.dumps(recorded, sort_keys=True)
        contract = active_contract(name)
        step = self._begin_tool(ref, name, arguments, contract)
        if decision is not None and decision.decision == ApprovalDecision.REJECTED:
            result = rejected_call_result(decision.message)
        else:
            result = tool_call(
                contract=contract,
                raw_arguments=reveal_arguments(arguments, scope=self.scope),  # the adapter gets the real values
                context=CallContext(
                    idempotency_key=step.idempotency_key,
                    trace_id=step.trace_id,
                    task_id=self.lease.task_id,
                    timeout_seconds=contract.timeout_seconds if contract else 0,
                    attempt=step.attempt,
                    redaction_scope=self.scope,
                ),
                approved=decision is not None,
            )
        result = ToolResult.from_dict(protect(result.to_dict(), scope=self.scope))  # as stored, as the model reads
        envelope_for_model = self._settle_tool(ref, name, arguments, result, contract)
        if envelope_for_model is None:
            raise RunSuspended(f"run stopped after {name}")
        return envelope_for_model

    def _decision(self, ref: str) -> Approval | None:
        """An operator's decision on this call, if it was held for one (approved calls stay approved across
        retries of the step; the ledger still runs the call once)."""
        return (
            Approval.objects.filter(task_id=self.lease.task_id, step__ref=ref)
            .exclude(decision=ApprovalDecision.PENDING)
            .first()
        )

    def _begin_tool(self, ref: str, name: str, arguments: str, contract: Contract | None) -> Step:
        with transaction.atomic():
            task = self._locked()
            approval_take(task=task, ref=ref)
            step = step_begin(
                task=task,
                kind=StepKind.TOOL_CALL,
                ref=ref,
                name=name,
                step_input=protect(
                    tool_arguments_snapshot(arguments),
                    scope=self.scope,
                    sensitive_paths=[f"arguments.{path}" for path in (contract.sensitive_fields if contract else ())],
                ),
                deadline_seconds=contract.timeout_seconds if contract else 0,
                contract_version_id=contract.version_id if contract else None,
            )
            self._attempts[ref] = step.attempt
            task_lease_renew(task, step_deadline_seconds=contract.timeout_seconds if contract else 0)
            decision = tool_call_begin_decide(task_state=TaskState(task.state), tool=name)
            decision_apply(task=task, step=step, decision=decision, actor=self.actor)
            return step

    def _settle_tool(
        self, ref: str, name: str, arguments: str, result: ToolResult, contract: Contract | None
    ) -> str | None:
        """Record the result and move the task on. Returns the envelope for the model, or None to stop."""
        with transaction.atomic():
            step = self._own_step(ref)
            task = task_locked_or_none(self.lease)
            if step is None or task is None:
                # Cancelled or taken back mid-call: keep what the tool did (unless a successor already runs the
                # step again under the same key), and plan nothing more.
                if step is not None:
                    step_close(step=step, succeeded=result.ok, output=result.to_dict())
                    self._note_if_cancelled(step, f"its result was recorded ({_outcome(result)})")
                return None
            step_close(step=step, succeeded=result.ok, output=result.to_dict())
            task_lease_renew(task)
            outcome = ToolOutcome(
                tool=name,
                result=result,
                contract=contract,
                attempt=step.attempt,
                retries_forgiven=step.retries_forgiven,
                task_replans=task.replans,
                now=timezone.now(),
                arguments=tool_arguments_object(arguments),
            )
            decision = tool_result_decide(outcome, policy_limits())
            decision_apply(task=task, step=step, decision=decision, actor=self.actor)
            return result.to_json() if decision.run_goes_on else None


def _outcome(result: ToolResult) -> str:
    return "ok" if result.ok else f"{result.error_code}"

"""A run's tool calls as durable steps: replayed if final, else begun, run once under their key, and settled."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone

from agent_runtime.journal import RunSuspended
from memory.vault import protect, reveal_arguments
from orchestration.models import Approval, ApprovalDecision, Step, StepKind, StepState, TaskState
from orchestration.policy.operator_actions import rejected_call_result
from orchestration.policy.tool_results import ToolOutcome, tool_call_begin_decide, tool_result_decide
from orchestration.services.approvals import approval_take
from orchestration.services.decisions import decision_apply, policy_limits
from orchestration.services.journal_base import JournalBase
from orchestration.services.leases import task_lease_renew
from orchestration.services.steps import (
    call_ref,
    step_begin,
    step_close,
    tool_arguments_object,
    tool_arguments_snapshot,
)
from tools.adapters.base import CallContext
from tools.contract import Contract
from tools.envelope import ToolResult
from tools.selectors import contract_at
from tools.services.calls import tool_call


class ToolCallJournal(JournalBase):
    def _contract_of(self, turn: int, name: str) -> Contract | None:
        """The tool's contract (the pinned version, else the current one), read once per model turn: the turn's
        answer is redacted by the contract its calls are then checked and run against, milliseconds later (an
        edit applies from the next turn)."""
        if self._contracts_turn != turn:
            self._contracts_turn, self._contracts = turn, {}
        if name not in self._contracts:
            self._contracts[name] = contract_at(name, self.pinned_contracts)
        return self._contracts[name]

    def _sensitive_fields_for(self, turn: int) -> Callable[[str], tuple[str, ...]]:
        def sensitive_fields(name: str) -> tuple[str, ...]:
            contract = self._contract_of(turn, name)
            return contract.sensitive_fields if contract else ()

        return sensitive_fields

    def _recorded_tool_result(self, ref: str) -> dict[str, Any] | None:
        """A final result: a success, or a failure no retry will change (the model re-plans on it)."""
        step = self._known().recorded(ref)
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
        contract = self._contract_of(self._turn, name)
        step = self._begin_tool(ref, name, arguments, contract, take_approval=decision is not None)
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
                    agent_version=self.agent_version,
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
        retries of the step; the ledger still runs the call once). Decisions are taken while the task waits, never
        during a run: they are read once, with the run's first call."""
        if self._decisions is None and not self._known().any_tool_call():
            self._decisions = {}  # a call is held with its step: no tool step, no decision to read
        if self._decisions is None:
            decided = Approval.objects.filter(task_id=self.lease.task_id).exclude(decision=ApprovalDecision.PENDING)
            self._decisions = {approval.step.ref: approval for approval in decided.select_related("step")}
        return self._decisions.get(ref)

    def _begin_tool(
        self, ref: str, name: str, arguments: str, contract: Contract | None, *, take_approval: bool
    ) -> Step:
        with transaction.atomic():
            task = self._locked()
            if take_approval:
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
                known=self._known(),
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
            task, still_leased = self._locked_any()
            step = self._own_step(ref, still_leased=still_leased)
            if step is None or not still_leased:
                # Cancelled or taken back mid-call: keep what the tool did (unless a successor already runs the
                # step again under the same key), and plan nothing more.
                if step is not None:
                    step_close(step=step, succeeded=result.ok, output=result.to_dict())
                    self._note_if_cancelled(task, step, f"its result was recorded ({_outcome(result)})")
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

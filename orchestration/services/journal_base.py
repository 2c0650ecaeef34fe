"""What a run's journal knows and how it writes: the task's steps as the run knows them, and the locks and fences
every write goes through (`DatabaseJournal` in `orchestration.services.journal` is the whole journal)."""

from __future__ import annotations

import logging

from agent_runtime.journal import RunSuspended
from orchestration.models import Approval, Step, StepState, Task, TaskState
from orchestration.policy.operator_actions import cancelled_mid_step_decide
from orchestration.services.decisions import decision_apply
from orchestration.services.leases import Lease, LeaseLost, task_locked_for, task_row_locked
from orchestration.services.steps import TaskSteps
from tools.contract import Contract

logger = logging.getLogger(__name__)


class JournalBase:
    def __init__(
        self,
        *,
        lease: Lease,
        actor: str,
        tool_names: frozenset[str] = frozenset(),
        scope: str = "",
        steps: TaskSteps | None = None,
        pinned_contracts: dict[str, int] | None = None,
        agent_version: int | None = None,
    ) -> None:
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
        self._steps = steps
        """The task's steps as this run knows them (read when the run took the task, else on first use)."""
        self._decisions: dict[str, Approval] | None = None
        self.agent_version = agent_version
        """The number of the agent version the run runs (its tool calls say it, for the fault plan)."""
        self.pinned_contracts = pinned_contracts or {}
        """Tool contract versions the run's agent version pins (tool name to number); others are current."""
        self._contracts_turn = 0
        self._contracts: dict[str, Contract | None] = {}
        """Contracts read for the tool calls of model turn `_contracts_turn` (ToolCallJournal._contract_of)."""

    def _known(self) -> TaskSteps:
        """The task's steps, read on the run's first look at its journal (see `TaskSteps`)."""
        if self._steps is None:
            self._steps = TaskSteps(self.lease.task_id)
        return self._steps

    def _locked(self) -> Task:
        try:
            return task_locked_for(self.lease)
        except LeaseLost as exc:
            raise RunSuspended(str(exc)) from exc

    def _locked_any(self) -> tuple[Task, bool]:
        """The task row, locked whoever holds it now, and whether this run still does: what a step returned is
        recorded even after the run lost its task (it was paid for; the ledger knows the tool ran)."""
        task = task_row_locked(self.lease.task_id)
        return task, task.lease_token == self.lease.token

    def _own_step(self, ref: str, *, still_leased: bool) -> Step | None:
        """The step, if it is still the attempt this run started and has not ended (the task row is locked).

        While the lease holds, nobody else wrote the step: the run's own copy is current. Otherwise it is read
        again: a successor may have taken it back and restarted it.
        """
        step = self._known().recorded(ref) if still_leased else None
        if step is None:
            step = Step.objects.select_for_update().get(task_id=self.lease.task_id, ref=ref)
        if step.attempt != self._attempts.get(ref) or step.state != StepState.RUNNING:
            logger.warning(
                "late result discarded: the step was taken back past its deadline and run again",
                extra={"step": ref, "attempt": self._attempts.get(ref), "current_attempt": step.attempt},
            )
            return None
        return step

    def _note_if_cancelled(self, task: Task, step: Step | None, recorded: str) -> None:
        """The run lost its locked task mid-step; if a cancellation took it, say so on the task."""
        if step is None or task.state != TaskState.CANCELLED:
            return  # not ours to record: the worker that took the task over records what it finds
        decision = cancelled_mid_step_decide(step_seq=step.seq, step_name=step.name, recorded=recorded)
        decision_apply(task=task, step=step, decision=decision, actor=self.actor)

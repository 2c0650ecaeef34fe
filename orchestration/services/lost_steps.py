"""Settling what a vanished worker left behind: a step still RUNNING past its deadline, a call whose move back to
PLANNED was lost, a step abandoned on a task that has since ended. The policy (`orchestration.policy.lost_steps`)
decides what follows; these services gather its facts, close the step and apply the decision."""

from __future__ import annotations

from django.utils import timezone

from orchestration.models import Step, StepKind, Task
from orchestration.policy.lost_steps import (
    LOST_STEP_RESULT,
    Checkpoint,
    LostStep,
    LostStepTask,
    abandoned_step_decide,
    lost_step_decide,
    lost_step_output,
    unfinished_tool_decide,
)
from orchestration.selectors import last_completed_step
from orchestration.services.decisions import decision_apply, policy_limits
from orchestration.services.steps import step_close
from tools.selectors import active_contract


def step_lost_settle(*, task: Task, step: Step, actor: str) -> None:
    """A locked task's step outlived its deadline without a word from its worker: a retryable failure."""
    lost = _lost(step, with_checkpoint=True)
    step_close(step=step, succeeded=False, output=lost_step_output(lost))
    contract = active_contract(step.name) if step.kind == StepKind.TOOL_CALL else None
    facts = LostStepTask(state=task.state, replans=task.replans, contract=contract, now=timezone.now())
    decision_apply(task=task, step=step, decision=lost_step_decide(lost, facts, policy_limits()), actor=actor)


def tool_unfinished_settle(*, task: Task, actor: str) -> None:
    """A locked TOOL_RUNNING task with no running step: its call's result is recorded, the next move was not."""
    decision_apply(task=task, decision=unfinished_tool_decide(timezone.now()), actor=actor)


def step_abandoned_close(*, task: Task, step: Step, actor: str) -> None:
    """A step still RUNNING on a task that has ended: its worker died after the task stopped. Close it as lost."""
    lost = _lost(step, with_checkpoint=False)
    step_close(step=step, succeeded=False, output=LOST_STEP_RESULT.to_dict())
    decision_apply(task=task, step=step, decision=abandoned_step_decide(lost, task.state), actor=actor)


def _lost(step: Step, *, with_checkpoint: bool) -> LostStep:
    checkpoint = last_completed_step(step.task_id, before=step) if with_checkpoint else None
    return LostStep(
        seq=step.seq,
        kind=StepKind(step.kind),
        name=step.name,
        attempt=step.attempt,
        retries_forgiven=step.retries_forgiven,
        started_at=step.started_at,
        deadline_at=step.deadline_at,
        checkpoint=Checkpoint(seq=checkpoint.seq, ref=checkpoint.ref) if checkpoint else None,
    )

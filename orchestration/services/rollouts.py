"""A rollout's figures, canary beside stable, and the evaluator that rolls a bad canary back by itself.

The figures come from the tasks the rollout assigned (`Task.rollout`, `Task.rollout_arm`): forced tasks are left
out, so a tester's runs never tilt the comparison. The verdict is the policy's (`orchestration.policy.rollouts`);
this module reads the facts, records every evaluation on the rollout and carries out a rollback through the switch
(`agent_runtime.rollouts.rollout_roll_back`), which audits it with the figures that caused it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db.models import Exists, OuterRef
from django.utils import timezone

from agent_runtime.models import Rollout, RolloutState
from agent_runtime.rollouts import CANARY, STABLE, RolloutInvalid, rollout_roll_back
from lib.sequential import Sample, mean_interval, quantile_interval, wilson_interval
from orchestration.models import HandoffReason, Step, Task, TaskState, TaskTransition
from orchestration.policy.rollouts import ArmOutcomes, RolloutLimits, RolloutVerdict, rollout_verdict
from orchestration.services.actors import worker_actor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArmFigures:
    """One arm as the admin shows it: each figure with the number of tasks behind it and a 95 % interval."""

    arm: str
    version: int
    tasks: int
    outcomes: ArmOutcomes
    success_interval: tuple[float, float]
    handoff_interval: tuple[float, float]
    tokens_per_success: Sample
    cost_interval: tuple[float, float]
    tokens_interval: tuple[float, float]
    steps: int
    step_p95_ms: tuple[float, float, float]
    """The p95 step latency: (point, low, high)."""

    @property
    def success_rate(self) -> float:
        return self.outcomes.successes / self.outcomes.finished if self.outcomes.finished else 0.0

    @property
    def handoff_ratio(self) -> float:
        return self.outcomes.handoffs / self.outcomes.finished if self.outcomes.finished else 0.0


def _arm_tasks(rollout: Rollout, arm: str) -> Any:
    handed_off = TaskTransition.objects.filter(task=OuterRef("pk"), to_state=TaskState.MANUAL_REVIEW)
    return Task.objects.filter(rollout=rollout, rollout_arm=arm).annotate(handed_off=Exists(handed_off))


def _arm_figures(rollout: Rollout, arm: str, *, with_steps: bool = True) -> ArmFigures:
    rows = _arm_tasks(rollout, arm).values_list(
        "state", "handed_off", "handoff_reason", "cost", "input_tokens", "output_tokens"
    )
    tasks = finished = successes = handoffs = 0
    costs: list[float] = []
    tokens: list[float] = []
    for state, entered_review, reason, cost, input_tokens, output_tokens in rows.iterator():
        tasks += 1
        # A call held for approval waits in the manual queue too, but that is the contract's rule working, not
        # the agent giving up (only the latest handoff's reason is on the task: see the closing note).
        handed_off = entered_review and reason != HandoffReason.APPROVAL_NEEDED
        if handed_off:
            finished, handoffs = finished + 1, handoffs + 1
        elif state == TaskState.COMPLETED:
            finished, successes = finished + 1, successes + 1
            costs.append(float(cost))
            tokens.append(float(input_tokens + output_tokens))
        elif state == TaskState.TOOL_FAILED_FATAL:
            finished += 1
    durations = (
        sorted(
            float(ms)
            for ms in Step.objects.filter(task__rollout=rollout, task__rollout_arm=arm, duration_ms__isnull=False)
            .values_list("duration_ms", flat=True)
            .iterator()
        )
        if with_steps
        else []
    )
    cost_sample, token_sample = Sample.of(costs), Sample.of(tokens)
    version = rollout.canary if arm == CANARY else rollout.stable
    return ArmFigures(
        arm=arm,
        version=version.number,
        tasks=tasks,
        outcomes=ArmOutcomes(finished=finished, successes=successes, handoffs=handoffs, cost_per_success=cost_sample),
        success_interval=wilson_interval(successes, finished),
        handoff_interval=wilson_interval(handoffs, finished),
        tokens_per_success=token_sample,
        cost_interval=mean_interval(cost_sample),
        tokens_interval=mean_interval(token_sample),
        steps=len(durations),
        step_p95_ms=quantile_interval(durations, 0.95),
    )


def rollout_comparison(rollout: Rollout, *, with_steps: bool = True) -> tuple[ArmFigures, ArmFigures]:
    """Stable and canary side by side, from the tasks this rollout assigned (the step latencies only when asked:
    the verdict does not use them)."""
    return _arm_figures(rollout, STABLE, with_steps=with_steps), _arm_figures(rollout, CANARY, with_steps=with_steps)


def _limits(rollout: Rollout) -> RolloutLimits:
    return RolloutLimits(
        min_finished_tasks=rollout.min_finished_tasks,
        max_success_drop=rollout.max_success_drop,
        max_handoff_rise=rollout.max_handoff_rise,
        max_cost_rise=rollout.max_cost_rise,
        alpha=rollout.alpha,
    )


def rollout_evaluate(rollout: Rollout) -> RolloutVerdict:
    """Judge one active canary now; roll it back if the verdict says so. The evaluation is recorded either way."""
    stable, canary = rollout_comparison(rollout, with_steps=False)
    verdict = rollout_verdict(stable=stable.outcomes, canary=canary.outcomes, limits=_limits(rollout))
    figures = verdict.as_dict(stable.outcomes, canary.outcomes)
    Rollout.objects.filter(pk=rollout.pk, state=RolloutState.ACTIVE).update(
        last_verdict=figures, evaluated_at=timezone.now()
    )
    if verdict.roll_back and rollout.auto_rollback:
        try:
            rollout_roll_back(
                rollout=rollout,
                actor=f"evaluator:{worker_actor()}",
                reason=verdict.reason,
                automatic=True,
                figures=figures,
            )
        except RolloutInvalid:  # someone ended it meanwhile: their decision stands
            return verdict
        logger.error(
            "canary rolled back automatically",
            extra={"agent": rollout.agent.name, "canary": canary.version, "reason": verdict.reason},
        )
    return verdict


def rollouts_evaluate() -> int:
    """Beat's evaluation of every active canary, so that its page shows the latest verdict; those with automatic
    rollback on are rolled back when it says so. Returns how many were."""
    rolled_back = 0
    active = Rollout.objects.filter(state=RolloutState.ACTIVE).select_related("agent", "stable", "canary")
    for rollout in active:
        rolled_back += int(rollout_evaluate(rollout).roll_back and rollout.auto_rollback)
    return rolled_back

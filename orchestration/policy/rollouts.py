"""When a canary is rolled back by itself: the verdict on its figures against stable's, as data.

Three metrics are judged, each by the one-sided mixture sequential probability ratio test of `lib.sequential`
(always valid: the evaluator looks after every few tasks, and looking often does not raise the false-alarm
probability), at alpha / 3 each, so that the three together keep the configured alpha (Bonferroni):

- the failure rate (1 - success rate) may rise by at most `max_success_drop` (absolute points);
- the handoff ratio may rise by at most `max_handoff_rise` (absolute points);
- the cost per successful task may rise by at most `max_cost_rise` (relative: 0.2 is 20 % more).

Until both arms have `min_finished_tasks` finished tasks the verdict is "hold": too little data never rolls back,
and nothing here ever promotes. A task counts as finished once the agent is done with it: completed on its own,
handed to a human (whatever the human did next), or failed. Cancelled tasks count for neither arm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from lib.sequential import Sample, Verdict, mean_worse, rate_worse


@dataclass(frozen=True)
class ArmOutcomes:
    """What one arm's finished tasks did."""

    finished: int = 0
    successes: int = 0
    """Completed by the agent, never handed to a human."""
    handoffs: int = 0
    cost_per_success: Sample = field(default_factory=lambda: Sample(0, 0.0, 0.0))


@dataclass(frozen=True)
class RolloutLimits:
    min_finished_tasks: int
    max_success_drop: Decimal
    max_handoff_rise: Decimal
    max_cost_rise: Decimal
    alpha: Decimal


@dataclass(frozen=True)
class RolloutVerdict:
    roll_back: bool
    reason: str
    tests: dict[str, Verdict]

    def as_dict(self, stable: ArmOutcomes, canary: ArmOutcomes) -> dict[str, Any]:
        """The figures that caused (or held) the verdict, as the rollout's audit records them."""
        return {
            "roll_back": self.roll_back,
            "reason": self.reason,
            "tests": {name: verdict.as_dict() for name, verdict in self.tests.items()},
            "stable": _arm_dict(stable),
            "canary": _arm_dict(canary),
        }


def _arm_dict(arm: ArmOutcomes) -> dict[str, Any]:
    return {
        "finished": arm.finished,
        "successes": arm.successes,
        "handoffs": arm.handoffs,
        "cost_per_success_mean": arm.cost_per_success.mean,
    }


def rollout_verdict(*, stable: ArmOutcomes, canary: ArmOutcomes, limits: RolloutLimits) -> RolloutVerdict:
    fewest = min(stable.finished, canary.finished)
    if fewest < limits.min_finished_tasks:
        return RolloutVerdict(
            roll_back=False,
            reason=f"holding: {canary.finished} canary and {stable.finished} stable tasks finished, "
            f"{limits.min_finished_tasks} of each are needed before any verdict",
            tests={},
        )
    alpha = float(limits.alpha) / 3
    tests = {
        "failure_rate": rate_worse(
            bad_stable=stable.finished - stable.successes,
            n_stable=stable.finished,
            bad_canary=canary.finished - canary.successes,
            n_canary=canary.finished,
            margin=float(limits.max_success_drop),
            alpha=alpha,
        ),
        "handoff_ratio": rate_worse(
            bad_stable=stable.handoffs,
            n_stable=stable.finished,
            bad_canary=canary.handoffs,
            n_canary=canary.finished,
            margin=float(limits.max_handoff_rise),
            alpha=alpha,
        ),
        "cost_per_success": mean_worse(
            stable=stable.cost_per_success,
            canary=canary.cost_per_success,
            relative_margin=float(limits.max_cost_rise),
            alpha=alpha,
        ),
    }
    worse = [name.replace("_", " ") for name, verdict in tests.items() if verdict.worse]
    if worse:
        return RolloutVerdict(
            roll_back=True,
            reason=f"the canary is worse than stable beyond its margin on {', '.join(worse)} "
            f"(mSPRT, alpha {limits.alpha} over three metrics)",
            tests=tests,
        )
    return RolloutVerdict(
        roll_back=False, reason="no metric is worse than its margin yet: the canary goes on", tests=tests
    )

"""The rollback test: worked values, interval sanity, and the properties that matter, by simulation: an A/A rollout
is (almost) never rolled back however often it is looked at, while a clearly worse canary is."""

from __future__ import annotations

import bisect
import functools
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from statistics import NormalDist

import pytest

from lib.sequential import Sample, Verdict, mean_interval, mean_worse, quantile_interval, rate_worse, wilson_interval

ROLLOUTS = 1_000
LOOK_EVERY = 10  # canary tasks between two looks
FIRST_LOOK = 100  # the caller's minimum sample
LAST_LOOK = 1_000
STABLE_PER_CANARY = 9  # a 10 % canary share
ALPHA = 0.05


def _mixture(estimate: float, null: float, variance: float, tau: float) -> float:
    """Λ, straight from the formula of Johari et al., to check the module's (log-space) computation against."""
    return math.sqrt(variance / (variance + tau**2)) * math.exp(
        tau**2 * (estimate - null) ** 2 / (2 * variance * (variance + tau**2))
    )


# Worked values


def test_rate_statistic_is_the_mixture_ratio_with_pseudo_counts() -> None:
    verdict = rate_worse(bad_stable=100, n_stable=1000, bad_canary=60, n_canary=200, margin=0.05, alpha=0.05)
    p_stable, p_canary = 101 / 1002, 61 / 202  # one bad and one good outcome added to each arm
    variance = p_stable * (1 - p_stable) / 1002 + p_canary * (1 - p_canary) / 202
    assert verdict.estimate == pytest.approx(0.2)
    assert verdict.margin == 0.05
    assert verdict.threshold == pytest.approx(20.0)
    assert verdict.statistic == pytest.approx(_mixture(0.2, 0.05, variance, 0.05))
    assert verdict.statistic == pytest.approx(514.3, rel=0.001)  # V ≈ 0.001134, τ = 0.05
    assert verdict.worse


def test_mean_statistic_is_linear_in_the_means() -> None:
    stable, canary = Sample(n=100, mean=1.0, variance=0.25), Sample(n=50, mean=1.5, variance=0.36)
    verdict = mean_worse(stable=stable, canary=canary, relative_margin=0.2, alpha=0.05)
    # θ̂ = 1.5 - 1.2·1.0 = 0.3; V = 0.36/50 + 1.44·0.25/100 = 0.0108; τ = 0.2·1.0.
    assert verdict.estimate == pytest.approx(0.5)
    assert verdict.margin == pytest.approx(0.2)
    assert verdict.statistic == pytest.approx(_mixture(0.3, 0.0, 0.0108, 0.2))
    assert verdict.statistic == pytest.approx(12.26, rel=0.001)
    assert not verdict.worse  # 12.25 < 1 / 0.05
    assert mean_worse(stable=stable, canary=canary, relative_margin=0.2, alpha=0.1).worse  # 12.25 >= 1 / 0.1


def test_within_the_margin_is_never_worse_however_certain() -> None:
    verdict = rate_worse(
        bad_stable=10_000, n_stable=100_000, bad_canary=14_000, n_canary=100_000, margin=0.05, alpha=0.05
    )
    assert verdict.estimate == pytest.approx(0.04)
    assert verdict.statistic >= verdict.threshold  # certainly not 0.05 worse: it is less, which is tolerated
    assert not verdict.worse
    better = rate_worse(bad_stable=20_000, n_stable=100_000, bad_canary=0, n_canary=100_000, margin=0.0, alpha=0.05)
    assert better.statistic == math.inf or better.statistic > 1e100
    assert not better.worse
    cheaper = mean_worse(
        stable=Sample(100_000, 1.0, 1.0), canary=Sample(100_000, 1.15, 1.0), relative_margin=0.2, alpha=0.05
    )
    assert cheaper.statistic >= cheaper.threshold and not cheaper.worse


def test_clear_degradation_is_worse() -> None:
    """Stable succeeds on 90 % of 400 tasks, the canary on 60 % of 400: 30 points worse against a margin of 5."""
    verdict = rate_worse(bad_stable=40, n_stable=400, bad_canary=160, n_canary=400, margin=0.05, alpha=0.05)
    assert verdict.estimate == pytest.approx(0.30)
    assert verdict.worse
    assert verdict.statistic > 1e10


def test_too_little_difference_is_not_worse() -> None:
    within = rate_worse(bad_stable=40, n_stable=400, bad_canary=50, n_canary=400, margin=0.05, alpha=0.05)
    assert within.estimate == pytest.approx(0.025) and not within.worse
    unproven = rate_worse(bad_stable=40, n_stable=400, bad_canary=70, n_canary=400, margin=0.05, alpha=0.05)
    assert unproven.estimate == pytest.approx(0.075)  # beyond the margin of 0.05, but not beyond doubt
    assert unproven.statistic < unproven.threshold and not unproven.worse


def test_no_data_no_alarm() -> None:
    assert rate_worse(bad_stable=0, n_stable=0, bad_canary=0, n_canary=0, margin=0.05, alpha=0.05) == Verdict(
        estimate=0.0, margin=0.05, statistic=0.0, threshold=20.0, worse=False
    )
    assert rate_worse(bad_stable=0, n_stable=100, bad_canary=0, n_canary=0, margin=0.05, alpha=0.05).statistic == 0
    one = mean_worse(stable=Sample.of([1.0, 2.0]), canary=Sample.of([50.0]), relative_margin=0.2, alpha=0.05)
    assert one.statistic == 0.0 and not one.worse
    empty = mean_worse(stable=Sample.of([]), canary=Sample.of([]), relative_margin=0.2, alpha=0.05)
    assert empty.statistic == 0.0 and not empty.worse


def test_no_bad_outcome_yet_still_has_a_variance() -> None:
    """0 of 200 bad against 1 of 20: with V = 0 one failure would be infinitely significant."""
    verdict = rate_worse(bad_stable=0, n_stable=200, bad_canary=1, n_canary=20, margin=0.0, alpha=0.05)
    assert 0 < verdict.statistic < verdict.threshold and not verdict.worse


def test_exact_samples_and_zero_means_are_guarded() -> None:
    same = mean_worse(stable=Sample(10, 2.0, 0.0), canary=Sample(10, 2.0, 0.0), relative_margin=0.0, alpha=0.05)
    assert same.statistic == 0.0 and not same.worse
    dearer = mean_worse(stable=Sample(10, 2.0, 0.0), canary=Sample(10, 3.0, 0.0), relative_margin=0.2, alpha=0.05)
    assert dearer.statistic == math.inf and dearer.worse
    assert json.loads(json.dumps(dearer.as_dict(), allow_nan=False))["statistic"] >= dearer.threshold
    free = mean_worse(stable=Sample(50, 0.0, 0.0), canary=Sample(50, 0.5, 1.0), relative_margin=0.2, alpha=0.05)
    assert math.isfinite(free.statistic) and free.margin == 0.0  # τ falls back to the standard error
    exact = mean_worse(stable=Sample(50, 0.0, 0.0), canary=Sample(50, 0.5, 0.0), relative_margin=0.2, alpha=0.05)
    assert exact.statistic == math.inf and exact.worse  # no scale for τ, but no doubt either
    huge = rate_worse(bad_stable=0, n_stable=10**9, bad_canary=10**9, n_canary=10**9, margin=0.05, alpha=0.05)
    assert huge.statistic == math.inf and huge.worse


def test_as_dict_is_strict_json() -> None:
    verdict = rate_worse(bad_stable=40, n_stable=400, bad_canary=160, n_canary=400, margin=0.05, alpha=0.05)
    assert json.loads(json.dumps(verdict.as_dict(), allow_nan=False)) == {
        "estimate": verdict.estimate,
        "margin": 0.05,
        "statistic": verdict.statistic,
        "threshold": 20.0,
        "worse": True,
    }


def test_invalid_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        rate_worse(bad_stable=5, n_stable=4, bad_canary=0, n_canary=4, margin=0.05, alpha=0.05)
    with pytest.raises(ValueError):
        rate_worse(bad_stable=0, n_stable=4, bad_canary=0, n_canary=4, margin=0.05, alpha=0.0)
    with pytest.raises(ValueError):
        mean_worse(stable=Sample.of([1.0]), canary=Sample.of([1.0]), relative_margin=-0.1, alpha=0.05)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    with pytest.raises(ValueError):
        quantile_interval([1.0], q=1.0)


# Summaries and intervals


def test_sample_of() -> None:
    assert Sample.of([]) == Sample(0, 0.0, 0.0)
    assert Sample.of([3.0]) == Sample(1, 3.0, 0.0)
    four = Sample.of([1.0, 2.0, 3.0, 4.0])
    assert (four.n, four.mean) == (4, 2.5) and four.variance == pytest.approx(5 / 3)


def test_wilson_interval() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(8, 10)
    assert (low, high) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))
    for successes, n in [(0, 1), (1, 1), (0, 50), (50, 50), (3, 7), (900, 1000)]:
        low, high = wilson_interval(successes, n)
        assert 0.0 <= low <= successes / n <= high <= 1.0
        assert low < high
    widths = [high - low for low, high in (wilson_interval(n // 10, n) for n in (10, 100, 1000, 10_000))]
    assert widths == sorted(widths, reverse=True)


def test_mean_interval() -> None:
    assert mean_interval(Sample(100, 5.0, 4.0)) == (pytest.approx(4.608), pytest.approx(5.392))
    assert mean_interval(Sample(1, 7.0, 0.0)) == (7.0, 7.0)
    assert mean_interval(Sample(0, 0.0, 0.0)) == (0.0, 0.0)
    assert mean_interval(Sample(2, 1.0, 0.0)) == (1.0, 1.0)


def test_quantile_interval() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 1..100, in any order
    point, low, high = quantile_interval(values, 0.95)
    assert point == 95.0
    assert low <= 95.0 <= high
    assert (low, high) == (90.0, 100.0)  # ranks 95 ∓ 1.96·sqrt(4.75), clamped to the sample
    assert quantile_interval(values, 0.5)[0] == 50.0
    assert quantile_interval([], 0.95) == (0.0, 0.0, 0.0)
    assert quantile_interval([4.0], 0.95) == (4.0, 4.0, 4.0)


# Simulated rollouts


@functools.cache
def _binomial_cdf(n: int, p: float) -> list[float]:
    cdf, total = [], 0.0
    for k in range(n + 1):
        total += math.comb(n, k) * p**k * (1 - p) ** (n - k)
        cdf.append(total)
    return cdf


@functools.cache
def _costs() -> tuple[list[float], list[float]]:
    """A lognormal cost (sigma = 0.8: skewed, like real costs) as 256 equally likely quantiles, and their squares:
    a batch of costs is then drawn as random bytes (fast, where one `lognormvariate` per task would take seconds),
    and a table this small stays in the CPU's cache."""
    normal = NormalDist()
    values = [math.exp(0.8 * normal.inv_cdf((i + 0.5) / 256)) for i in range(256)]
    return values, [v * v for v in values]


@dataclass
class _Arm:
    """One arm's running counts: each look reads them, rather than summarising every task again."""

    fail_probability: float
    finished: int = 0
    bad: int = 0
    paid: int = 0
    cost_sum: float = 0.0
    cost_squares: float = 0.0

    def run(self, rng: random.Random, tasks: int, *, costs: bool = False) -> None:
        failures = min(bisect.bisect_right(_binomial_cdf(tasks, self.fail_probability), rng.random()), tasks)
        self.finished += tasks
        self.bad += failures
        if costs and tasks > failures:  # each successful task costs something
            values, squares = _costs()
            drawn = rng.randbytes(tasks - failures)
            self.paid += tasks - failures
            self.cost_sum += sum(map(values.__getitem__, drawn))
            self.cost_squares += sum(map(squares.__getitem__, drawn))

    def cost_sample(self) -> Sample:
        if self.paid < 2:
            return Sample(self.paid, self.cost_sum / self.paid if self.paid else 0.0, 0.0)
        mean = self.cost_sum / self.paid
        return Sample(self.paid, mean, max(0.0, (self.cost_squares - self.paid * mean * mean) / (self.paid - 1)))


def _looks(rng: random.Random, stable: _Arm, canary: _Arm, *, costs: bool = False) -> Iterator[None]:
    """Runs a rollout, yielding at every look: after every 10 canary tasks (and 90 stable ones), from 100 to 1,000."""
    while canary.finished < LAST_LOOK:
        canary.run(rng, LOOK_EVERY, costs=costs)
        stable.run(rng, LOOK_EVERY * STABLE_PER_CANARY, costs=costs)
        if canary.finished >= FIRST_LOOK:
            yield


def _rate(stable: _Arm, canary: _Arm, margin: float) -> Verdict:
    return rate_worse(
        bad_stable=stable.bad,
        n_stable=stable.finished,
        bad_canary=canary.bad,
        n_canary=canary.finished,
        margin=margin,
        alpha=ALPHA,
    )


def _naive_z_alarm(stable: _Arm, canary: _Arm) -> bool:
    """A one-sided fixed-sample z-test of "the canary fails more" at level alpha, as if this look were the only one."""
    p_s, p_c = stable.bad / stable.finished, canary.bad / canary.finished
    variance = p_s * (1 - p_s) / stable.finished + p_c * (1 - p_c) / canary.finished
    return variance > 0 and (p_c - p_s) / math.sqrt(variance) >= NormalDist().inv_cdf(1 - ALPHA)


def test_aa_rollouts_falsely_roll_back_fewer_than_10_of_1000() -> None:
    """1,000 A/A rollouts (both arms succeed 90 % of the time, same lognormal costs), looked at after every 10
    canary tasks from 100 to 1,000: fewer than 10 (1 %) ever say "worse" on the failure rate (margin 0.05) or on
    the cost per successful task (relative margin 0.2), each at alpha 0.05 (the caller uses alpha / 3)."""
    rng = random.Random(20260417)
    false_rollbacks = 0
    for _ in range(ROLLOUTS):
        stable, canary = _Arm(0.1), _Arm(0.1)
        for _look in _looks(rng, stable, canary, costs=True):
            cost = mean_worse(
                stable=stable.cost_sample(), canary=canary.cost_sample(), relative_margin=0.2, alpha=ALPHA
            )
            if _rate(stable, canary, 0.05).worse or cost.worse:
                false_rollbacks += 1
                break
    print(f"A/A: {false_rollbacks} of {ROLLOUTS} rollouts falsely rolled back")
    assert false_rollbacks < 10


def test_margin_0_peeking_stays_within_alpha_where_a_naive_z_test_does_not() -> None:
    """1,000 A/A rollouts, margin 0 on the failure rate, 91 looks each: the mSPRT alarms in at most 50 (alpha),
    the one-sided z-test at the same alpha and the same looks in more than 50 and more than twice as many."""
    rng = random.Random(7)
    msprt = naive = 0
    for _ in range(ROLLOUTS):
        stable, canary = _Arm(0.1), _Arm(0.1)
        msprt_alarm = naive_alarm = False
        for _look in _looks(rng, stable, canary):
            msprt_alarm = msprt_alarm or _rate(stable, canary, 0.0).worse
            naive_alarm = naive_alarm or _naive_z_alarm(stable, canary)
            if msprt_alarm and naive_alarm:
                break
        msprt += msprt_alarm
        naive += naive_alarm
    print(f"A/A, margin 0: mSPRT alarmed in {msprt} of {ROLLOUTS} rollouts, the naive z-test in {naive}")
    assert msprt <= ALPHA * ROLLOUTS
    assert naive > ALPHA * ROLLOUTS
    assert naive >= 2 * msprt


def test_a_canary_failing_25_percent_against_10_is_flagged_in_at_least_190_of_200() -> None:
    """200 rollouts of a canary succeeding 75 % of the time against stable's 90 % (margin 0.05, alpha 0.05):
    at least 190 (95 %) are flagged by 1,000 canary tasks."""
    rng = random.Random(99)
    rollouts, flagged, looks_needed = 200, 0, []
    for _ in range(rollouts):
        stable, canary = _Arm(0.1), _Arm(0.25)
        for _look in _looks(rng, stable, canary):
            if _rate(stable, canary, 0.05).worse:
                flagged += 1
                looks_needed.append(canary.finished)
                break
    print(f"power: {flagged} of {rollouts} flagged, after {min(looks_needed)}-{max(looks_needed)} canary tasks")
    assert flagged >= 190

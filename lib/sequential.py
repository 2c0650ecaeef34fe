"""Is the canary worse than stable? A test that may be asked after every task, and intervals for the admin.

The automatic rollback of a canary agent version looks at the two arms' figures again and again as tasks
finish. A fixed-sample test (a z-test at level alpha) is only valid if it is looked at once, at a sample size
chosen in advance: looked at after every few tasks and acted on the first time it says "worse", it rolls back
far more often than alpha when nothing is wrong, since every look is another chance for noise to cross the line
(with a hundred looks the false-alarm rate of a 5 % z-test is several times 5 %; see the tests).

So the test is the mixture sequential probability ratio test (mSPRT) of Johari, Koomen, Pekelis and Walsh
("Peeking at A/B tests", KDD 2017; "Always valid inference", 2015/2022), with a normal mixing distribution, as
Optimizely uses it. For an estimate θ̂ of a difference θ, approximately normal with variance V, and the mixture
N(θ0, τ²) over the alternatives,

    Λ = sqrt(V / (V + τ²)) · exp( τ² (θ̂ - θ0)² / (2 V (V + τ²)) )

is a likelihood ratio averaged over the alternatives, a martingale under H0: θ = θ0. Rejecting H0 the first time
Λ ≥ 1/alpha keeps the probability of ever rejecting a true H0 at most alpha, however often and whenever one looks
(Ville's inequality; asymptotically, since V is estimated and θ̂ only approximately normal).

It is used one-sided, as a non-inferiority test. θ is how much worse the canary is than stable, θ0 the margin the
operator tolerates, and an alarm needs θ̂ > θ0 as well as Λ ≥ 1/alpha: a canary that is better than stable, or worse
by less than the margin, however certainly, is never rolled back. Dropping the lower side only removes alarms, so
the guarantee still holds, conservatively (at θ = θ0 the upper side has about half the alarms of the two-sided
test, by symmetry; for θ < θ0 fewer still).

The normal approximation needs some data in both arms (a few dozen bad outcomes, or costs, per arm); this module
gives no alarm without data, but the minimum sample is the caller's to enforce (`min_finished_tasks`).

τ is the size of the excess over the margin the test is tuned to find quickly: Λ grows fastest for
|θ - θ0| of the order of τ, while a much smaller τ makes Λ ≈ 1 (never an alarm) and a much larger one costs
power on small excesses. It is the margin itself (an excess as large again as what is tolerated), floored so that
a margin of 0 still gives a usable test (`rate_worse`, `mean_worse`).
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass

RATE_TAU_FLOOR = 0.02
"""The smallest τ of the rate test: two points, the smallest excess over a margin worth a rollback."""

RELATIVE_TAU_FLOOR = 0.02
"""The smallest τ of the mean test, as a fraction of stable's mean (2 %), for the same reason."""

_LOG_FLOAT_MAX = math.log(sys.float_info.max)


@dataclass(frozen=True)
class Sample:
    """A sample's size, mean and (unbiased sample) variance."""

    n: int
    mean: float
    variance: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Sample:
        """The summary of `values`: an empty sample has mean 0 and a single value variance 0, so that callers
        need not special-case an arm that has not finished anything yet."""
        n = len(values)
        if n == 0:
            return cls(0, 0.0, 0.0)
        return cls(n, statistics.fmean(values), statistics.variance(values) if n > 1 else 0.0)


@dataclass(frozen=True)
class Verdict:
    """One metric's test: how much worse the canary is, what is tolerated, and whether that is proven."""

    estimate: float
    """θ̂: how much worse the canary is, in the metric's unit (see `rate_worse` and `mean_worse`)."""
    margin: float
    """θ0: how much worse it may be, in the same unit."""
    statistic: float
    """Λ, the mixture likelihood ratio (inf when the data leave no doubt, 0 when there are no data)."""
    threshold: float
    """1 / alpha."""
    worse: bool
    """estimate > margin and statistic >= threshold."""

    def as_dict(self) -> dict[str, float | bool]:
        """The verdict as JSON a jsonb column accepts: an infinite Λ is written as the largest finite float
        (still above any threshold, so the record reads the same), since JSON has no infinity."""
        return {
            "estimate": _finite(self.estimate),
            "margin": _finite(self.margin),
            "statistic": _finite(self.statistic),
            "threshold": _finite(self.threshold),
            "worse": self.worse,
        }


def _finite(value: float) -> float:
    return max(-sys.float_info.max, min(value, sys.float_info.max))


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), not {alpha}")


def _mixture_statistic(estimate: float, null: float, variance: float, tau: float) -> float:
    """Λ for an estimate with this variance against H0: θ = null, mixing N(null, τ²); computed through its
    logarithm, which overflows only where Λ is beyond any threshold anyway (then inf)."""
    if variance <= 0.0:
        return 0.0 if estimate == null else math.inf  # the data are exact: nothing or everything is proven
    if tau <= 0.0:
        return 1.0  # a mixture concentrated on θ0 is H0 itself: the ratio is 1, never evidence
    tau2 = tau * tau
    log_statistic = 0.5 * math.log(variance / (variance + tau2)) + tau2 * (estimate - null) ** 2 / (
        2.0 * variance * (variance + tau2)
    )
    return math.inf if log_statistic >= _LOG_FLOAT_MAX else math.exp(log_statistic)


def _verdict(*, estimate: float, margin: float, statistic: float, alpha: float) -> Verdict:
    threshold = 1.0 / alpha
    return Verdict(
        estimate=estimate,
        margin=margin,
        statistic=statistic,
        threshold=threshold,
        worse=estimate > margin and statistic >= threshold,
    )


def _rate_variance(bad: int, n: int) -> float:
    """The variance of a proportion's estimate with one bad and one good outcome added (Agresti-Caffo), so that
    an arm with no bad outcome yet (or only bad ones) still has an uncertainty: with V = 0 the first bad
    outcome of the other arm would be infinitely significant."""
    adjusted = (bad + 1) / (n + 2)
    return adjusted * (1.0 - adjusted) / (n + 2)


def rate_worse(
    *, bad_stable: int, n_stable: int, bad_canary: int, n_canary: int, margin: float, alpha: float
) -> Verdict:
    """Canary worse on a rate of bad outcomes (failure rate = 1 - success rate, handoff ratio).

    θ = p_canary - p_stable, an absolute difference (margin 0.05 = five points); θ̂ is the difference of the
    observed rates, V the sum of the two rates' variances, each with a pseudo-count (`_rate_variance`).
    τ = max(margin, 0.02): the excess over the margin worth finding quickly is of the margin's size, and a margin
    of 0 ("no worse at all") would otherwise make τ = 0 and the test blind. An arm without tasks gives no alarm.
    """
    _check_alpha(alpha)
    if margin < 0.0:
        raise ValueError(f"margin must be >= 0, not {margin}")
    for bad, n in ((bad_stable, n_stable), (bad_canary, n_canary)):
        if n < 0 or not 0 <= bad <= n:
            raise ValueError(f"need 0 <= bad <= n, not bad={bad}, n={n}")
    if n_stable == 0 or n_canary == 0:
        return _verdict(estimate=0.0, margin=margin, statistic=0.0, alpha=alpha)
    estimate = bad_canary / n_canary - bad_stable / n_stable
    variance = _rate_variance(bad_canary, n_canary) + _rate_variance(bad_stable, n_stable)
    statistic = _mixture_statistic(estimate, margin, variance, max(margin, RATE_TAU_FLOOR))
    return _verdict(estimate=estimate, margin=margin, statistic=statistic, alpha=alpha)


def mean_worse(*, stable: Sample, canary: Sample, relative_margin: float, alpha: float) -> Verdict:
    """Canary worse on a mean where more is worse (cost per successful task), by more than a relative margin m.

    "mean_c > (1 + m)·mean_s" is tested as θ = mean_c - (1 + m)·mean_s > 0 rather than as a ratio: θ̂ is linear
    in the two means, so it is approximately normal with V = var_c/n_c + (1 + m)²·var_s/n_s (the margin moves
    with stable's estimate, and its uncertainty is counted). The verdict is reported in the metric's unit:
    estimate = mean_c - mean_s and margin = m·mean_s, so that estimate > margin when θ̂ > 0 (up to rounding).
    τ = max(m, 2 %)·|mean_s|, in the metric's unit (as `rate_worse`); with a stable mean of 0 there is no scale,
    and τ is the current standard error. An arm with fewer than 2 values (no variance) gives no alarm.
    """
    _check_alpha(alpha)
    if relative_margin < 0.0:
        raise ValueError(f"relative_margin must be >= 0, not {relative_margin}")
    margin = relative_margin * stable.mean
    estimate = canary.mean - stable.mean
    if stable.n < 2 or canary.n < 2:
        return _verdict(estimate=estimate, margin=margin, statistic=0.0, alpha=alpha)
    theta = canary.mean - (1.0 + relative_margin) * stable.mean
    variance = (
        max(canary.variance, 0.0) / canary.n + (1.0 + relative_margin) ** 2 * max(stable.variance, 0.0) / stable.n
    )
    tau = max(relative_margin, RELATIVE_TAU_FLOOR) * abs(stable.mean) or math.sqrt(variance)
    statistic = _mixture_statistic(theta, 0.0, variance, tau)
    return _verdict(estimate=estimate, margin=margin, statistic=statistic, alpha=alpha)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % by default): unlike p̂ ± z·SE it stays within [0, 1] and
    does not collapse to a point at 0 or n successes, which small canary samples often have."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, not successes={successes}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_interval(sample: Sample, z: float = 1.96) -> tuple[float, float]:
    """mean ± z·sqrt(variance / n), the normal approximation (95 % by default); a point with fewer than two
    values, which have no variance to speak of."""
    if sample.n < 2:
        return (sample.mean, sample.mean)
    half = z * math.sqrt(max(sample.variance, 0.0) / sample.n)
    return (sample.mean - half, sample.mean + half)


def quantile_interval(values: Sequence[float], q: float = 0.95, z: float = 1.96) -> tuple[float, float, float]:
    """(point, low, high) for the q-quantile (the p95 step duration), with no assumption about the distribution,
    which for durations is long-tailed: the point is the nearest-rank quantile, the interval runs between the
    order statistics of ranks n·q ∓ z·sqrt(n·q·(1 - q)) (the binomial count of values below the quantile, in its
    normal approximation), clamped to the sample. An empty sample gives (0, 0, 0)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), not {q}")
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return (0.0, 0.0, 0.0)
    expected = n * q
    spread = z * math.sqrt(expected * (1.0 - q))
    # A rank is 1-based; the tolerance keeps 100 * 0.95 at rank 95 whatever the rounding of the product.
    point = _clamp_rank(math.ceil(expected - 1e-9), n)
    low = _clamp_rank(math.floor(expected - spread + 1e-9), n)
    high = _clamp_rank(math.ceil(expected + spread - 1e-9), n)
    return (float(ordered[point - 1]), float(ordered[low - 1]), float(ordered[high - 1]))


def _clamp_rank(rank: int, n: int) -> int:
    return min(max(rank, 1), n)

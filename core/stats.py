"""Is a difference real? Intervals and tests for accuracies, built on scipy.stats; pure functions, no I/O.

- one accuracy on n examples: Wilson score interval (for many at once its closed form, tested equal to scipy's);
- a group's mean over seeds: t interval;
- two groups of seeds: Welch's t test, the interval of the difference of means, Hedges' g;
- two runs on the same test images: the exact McNemar test on the discordant pairs;
- a difference of two independent error rates (the train/validation gap): Newcombe's interval;
- how many seeds would resolve a difference: the power of Welch's test, from the noncentral t.
Accuracies are fractions; every interval is 95% unless asked otherwise.
"""

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
POWER = 0.8  # the chance of detecting a real difference that "would resolve it" promises


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval, from n observations (examples, or seeds)."""

    estimate: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def bounds_text(self) -> str:
        return bounds_text(self.low, self.high)

    def straddles(self, threshold: float) -> bool:
        return self.low <= threshold < self.high


def bounds_text(low: float, high: float) -> str:
    """An interval of fractions as every page and the command line write it, "97.53% to 98.65%"; empty when there
    is none (NaN)."""
    return "" if math.isnan(low) else f"{low:.2%} to {high:.2%}"


def points_text(difference: float) -> str:
    """A difference of two fractions in percentage points, as every page and the command line write it: '+0.31 pp'."""
    return f"{difference * 100:+.2f} pp"


def points_bounds_text(low: float, high: float) -> str:
    """An interval of a difference in percentage points, "-1.20 to +3.40 pp"; empty when there is none (NaN)."""
    return "" if math.isnan(low) else f"{low * 100:+.2f} to {high * 100:+.2f} pp"


def accuracy_interval(correct: int, n: int, confidence: float = CONFIDENCE) -> Interval:
    """Wilson score interval of an accuracy of `correct` out of `n` (not Wald's, which fails near 100%)."""
    if n <= 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    low, high = wilson_bounds(np.array([correct]), np.array([n]), confidence)
    return Interval(correct / n, float(low[0]), float(high[0]), int(n))


def wilson_bounds(correct: np.ndarray, n: np.ndarray, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """The Wilson score interval of many accuracies at once (NaN where n is 0 or unknown). scipy's
    binomtest(k, n).proportion_ci(method="wilson") gives the same bounds one count at a time, 0.5 ms each, which
    is 5 s per draw of a 10,000-run Runs table; this is its closed form over arrays (tests/test_stats.py checks the
    two agree)."""
    correct, n = np.asarray(correct, dtype=float), np.asarray(n, dtype=float)
    z = stats.norm.ppf(1 - (1 - confidence) / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = np.where(n > 0, n, np.nan)
        p = correct / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def accuracy_interval_of(acc: float, n: int, confidence: float = CONFIDENCE) -> Interval:
    """The Wilson interval of an accuracy logged as a fraction of n examples."""
    return accuracy_interval(round(acc * n), n, confidence)


def mean_interval(values, confidence: float = CONFIDENCE, bounds: tuple[float, float] | None = None) -> Interval:
    """The mean over seeds with its t interval, cut to `bounds` where the values cannot leave them (an accuracy
    stays in [0, 1] even when two seeds' t interval does not); no interval from fewer than two values."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    mean = float(values.mean()) if len(values) else math.nan
    std = float(values.std(ddof=1)) if len(values) > 1 else math.nan
    low, high = t_bounds(np.array([mean]), np.array([std]), np.array([len(values)]), confidence, bounds)
    return Interval(mean, float(low[0]), float(high[0]), len(values))


def t_bounds(
    means: np.ndarray,
    stds: np.ndarray,
    counts: np.ndarray,
    confidence: float = CONFIDENCE,
    bounds: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """mean_interval's bounds for many groups at once, from each group's mean, sample std and size (NaN where
    fewer than two values): the Runs table groups 10,000 runs in one call."""
    counts = np.asarray(counts, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        low, high = stats.t.interval(
            confidence, np.where(counts > 1, counts - 1, np.nan), loc=means, scale=stds / np.sqrt(counts)
        )
    return (np.clip(low, *bounds), np.clip(high, *bounds)) if bounds else (low, high)


def accuracy_mean_interval(values, confidence: float = CONFIDENCE) -> Interval:
    """The mean accuracy over seeds with its t interval, within [0, 1]."""
    return mean_interval(values, confidence, bounds=(0.0, 1.0))


@dataclass(frozen=True)
class GroupComparison:
    """Group B against group A over seeds: difference of means (B - A) with its interval, Welch's p-value and
    Hedges' g (the difference in pooled standard deviations, corrected for small groups)."""

    mean_a: float
    mean_b: float
    difference: Interval
    p_value: float
    hedges_g: float
    n_a: int
    n_b: int


def compare_groups(a, b, confidence: float = CONFIDENCE) -> GroupComparison:
    """Welch's t test of two groups of values (each at least two), which need not share a variance."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Welch's test needs at least two values per group, got {len(a)} and {len(b)}")
    test = stats.ttest_ind(b, a, equal_var=False)
    ci = test.confidence_interval(confidence)
    diff = float(b.mean() - a.mean())
    return GroupComparison(
        float(a.mean()),
        float(b.mean()),
        Interval(diff, float(ci.low), float(ci.high), len(a) + len(b)),
        float(test.pvalue),
        hedges_g(a, b),
        len(a),
        len(b),
    )


def hedges_g(a: np.ndarray, b: np.ndarray) -> float:
    """(mean B - mean A) / pooled standard deviation, times the small-sample correction J (scipy has no effect
    sizes: this is the textbook formula)."""
    na, nb = len(a), len(b)
    pooled = math.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    if pooled == 0:
        return math.copysign(math.inf, b.mean() - a.mean()) if b.mean() != a.mean() else 0.0
    correction = 1 - 3 / (4 * (na + nb) - 9)
    return float((b.mean() - a.mean()) / pooled * correction)


@dataclass(frozen=True)
class PairedComparison:
    """Two runs on the same test images: how many each got right that the other got wrong, and the exact
    McNemar p-value of that split."""

    only_a: int  # right in A, wrong in B
    only_b: int  # right in B, wrong in A
    both_right: int
    both_wrong: int
    p_value: float

    @property
    def n(self) -> int:
        return self.only_a + self.only_b + self.both_right + self.both_wrong

    @property
    def difference(self) -> float:
        """Accuracy of B minus accuracy of A."""
        return (self.only_b - self.only_a) / self.n if self.n else math.nan


def mcnemar(correct_a, correct_b) -> PairedComparison:
    """The exact McNemar test: under "no difference" each discordant example is equally likely to favour either
    run, so the split is Binomial(discordant, 1/2); scipy's exact two-sided binomial test gives its p-value."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"McNemar needs the same examples in both runs, got {len(a)} and {len(b)}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    discordant = only_a + only_b
    p = stats.binomtest(only_a, discordant, 0.5).pvalue if discordant else 1.0
    return PairedComparison(only_a, only_b, int((a & b).sum()), int((~a & ~b).sum()), float(p))


def rate_difference_interval(
    rate_a: float, n_a: int, rate_b: float, n_b: int, confidence: float = CONFIDENCE
) -> Interval:
    """Interval of rate_b - rate_a for two independent samples, by Newcombe's hybrid score method (his method
    10) from the two Wilson intervals. scipy has no interval for a difference of proportions; Newcombe's keeps
    its coverage for small n and rates near 0 or 1, where the Wald interval does not."""
    a, b = accuracy_interval_of(rate_a, n_a, confidence), accuracy_interval_of(rate_b, n_b, confidence)
    pa, pb = rate_a, rate_b
    diff = pb - pa
    low = diff - math.sqrt((pb - b.low) ** 2 + (a.high - pa) ** 2)
    high = diff + math.sqrt((b.high - pb) ** 2 + (pa - a.low) ** 2)
    return Interval(diff, low, high, n_a + n_b)


def welch_power(difference: float, std: float, n: int, alpha: float = ALPHA) -> float:
    """The chance that Welch's test with n seeds per group (equal spread `std`) finds `difference`."""
    if n < 2 or std <= 0:
        return 1.0 if n >= 2 and difference != 0 else 0.0
    df = 2 * n - 2
    noncentrality = abs(difference) / (std * math.sqrt(2 / n))
    critical = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality))


def seeds_to_resolve(difference: float, std: float, power: float = POWER, limit: int = 10_000) -> int | None:
    """Seeds per group at which Welch's test finds `difference` with the given power; None beyond `limit`."""
    if difference == 0 or not math.isfinite(std):
        return None
    n = 2
    while welch_power(difference, std, n) < power:
        n = n + 1 if n < 64 else n * 2
        if n > limit:
            return None
    return n


def p_text(p: float) -> str:
    """A p-value as reports write it: `p = 0.0012`, or `p < 1e-6`."""
    return "p < 1e-6" if p < 1e-6 else f"p = {p:.2g}"

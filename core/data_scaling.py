"""How validation error falls with the training-set size: error = a * n^-b + c (a power law with a floor c),
fitted with scipy.optimize.curve_fit, and what more data would bring, with the fit's 95% interval.

The interval comes from the fit's covariance by the delta method with a t quantile on the points' residual
degrees of freedom: three sizes fit the three parameters exactly and say nothing about their uncertainty, so
an interval needs four sizes or more.
"""

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

MIN_SIZES = 3  # distinct training-set sizes needed for a fit
MIN_SIZES_FOR_INTERVAL = 4


def power_law(n, a: float, b: float, c: float):
    return a * np.power(n, -b) + c


@dataclass(frozen=True)
class PowerLaw:
    """A fitted error = a * n^-b + c, with the covariance of (a, b, c) and the sizes it was fitted on."""

    a: float
    b: float
    c: float
    covariance: np.ndarray
    sizes: tuple[float, ...]

    def error_at(self, n: float) -> float:
        return float(power_law(n, self.a, self.b, self.c))

    def interval_at(self, n: float, confidence: float = 0.95) -> tuple[float, float] | None:
        """The fit's confidence interval at n (delta method), or None where the points cannot give one."""
        dof = len(self.sizes) - 3
        if dof < 1 or not np.isfinite(self.covariance).all():
            return None
        gradient = np.array([n**-self.b, -self.a * n**-self.b * math.log(n), 1.0])
        variance = float(gradient @ self.covariance @ gradient)
        if variance < 0:
            return None
        half = stats.t.ppf(0.5 + confidence / 2, dof) * math.sqrt(variance)
        estimate = self.error_at(n)
        return max(estimate - half, 0.0), min(estimate + half, 1.0)


def fit_power_law(sizes, errors) -> PowerLaw | None:
    """The least-squares power law through (training-set size, validation error) points; None with fewer than
    MIN_SIZES distinct sizes or when the fit does not converge. Exponent and floor are kept in [0, 3] and [0, 1]."""
    sizes, errors = np.asarray(sizes, dtype=float), np.asarray(errors, dtype=float)
    if len(np.unique(sizes)) < MIN_SIZES:
        return None
    start = (errors.max() * sizes.min() ** 0.5, 0.5, errors.min() / 2)
    with warnings.catch_warnings():  # an exact fit (three sizes) warns that its covariance is unknown: it is inf
        warnings.simplefilter("ignore", optimize.OptimizeWarning)
        try:
            (a, b, c), covariance = optimize.curve_fit(
                power_law, sizes, errors, p0=start, bounds=([0, 0, 0], [np.inf, 3, 1]), maxfev=20_000
            )
        except RuntimeError:  # no convergence
            return None
    return PowerLaw(float(a), float(b), float(c), covariance, tuple(sizes))


def more_data_sentence(fit: PowerLaw, factor: float = 2) -> str:
    """What `factor` times the largest training set would bring, in one sentence, with the interval when known."""
    largest = max(fit.sizes)
    n = largest * factor
    interval = fit.interval_at(n)
    said = (
        f"95% interval {interval[0]:.2%} to {interval[1]:.2%}"
        if interval
        else f"no interval: {len(fit.sizes)} sizes fit the curve's 3 numbers exactly; a {MIN_SIZES_FOR_INTERVAL}th "
        "size would give one"
    )
    return (
        f"Doubling the data ({largest:,.0f} to {n:,.0f} training images) would bring validation error to "
        f"about {fit.error_at(n):.2%} ({said}), if the fitted curve, error = {fit.a:.3g}·n^-{fit.b:.2f} + "
        f"{fit.c:.3g} (as fractions: a floor of {fit.c:.2%}), holds beyond the sizes measured."
    )

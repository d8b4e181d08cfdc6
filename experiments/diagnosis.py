"""Every number derived from a run's per-epoch accuracies, defined once for runners and dashboard alike.

bias = train error; variance = val error - train error;
avoidable bias = train error - best achievable error (an estimate, e.g. the best published error).
The best epoch is the first epoch with the highest validation accuracy. The diagnosis compares the
last trained epoch's avoidable bias and variance with fixed thresholds (in error fractions):

| avoidable bias > BIAS_THRESHOLD | variance > VARIANCE_THRESHOLD | diagnosis |
|---|---|---|
| yes | no  | high bias |
| no  | yes | high variance |
| yes | yes | high bias and variance |
| no  | no  | good fit |

The runner logs these for its runs; the dashboard derives them, through `verdict`, only for runs
that lack them (still running, or logged by another tool).
"""
from dataclasses import dataclass

import pandas as pd

from experiments.schema import Metric

BIAS_THRESHOLD = 0.01
VARIANCE_THRESHOLD = 0.01

# Best error reached on each dataset in the literature: the floor avoidable bias is measured against.
BEST_ERROR = {"mnist": 0.002, "fashion-mnist": 0.035}

HIGH_BIAS, HIGH_VARIANCE, BOTH, GOOD_FIT = "high bias", "high variance", "high bias and variance", "good fit"
DIVERGED = "diverged"  # training stopped because its loss became NaN, infinite or exploded
ADVICE = {
    DIVERGED: "training blew up: lower the learning rate",
    HIGH_BIAS: "the model underfits: try a bigger model, train longer, or a better optimizer",
    HIGH_VARIANCE: "the model overfits: try more data, regularisation (dropout, weight decay) or early stopping",
    BOTH: "fix the bias first (bigger model, train longer), then the variance (more data, regularisation)",
    GOOD_FIT: "train and validation errors are both close to the best achievable",
}


def best_error_for(dataset: str | None, given: float | str | None = None) -> float:
    """The best achievable error: the one given (a run's param), else the dataset's, else MNIST's."""
    if given is not None and str(given) not in ("", "None"):
        return float(given)
    return BEST_ERROR.get(dataset, BEST_ERROR["mnist"])


def bias_variance(train_acc, val_acc, best_error: float) -> dict:
    """Bias, variance and avoidable bias (numbers or aligned Series) from the two accuracies."""
    train_error, val_error = 1 - train_acc, 1 - val_acc
    return {
        Metric.BIAS: train_error,
        Metric.VARIANCE: val_error - train_error,
        Metric.AVOIDABLE_BIAS: train_error - best_error,
    }


def diagnose(avoidable_bias: float, variance: float, bias_threshold: float = BIAS_THRESHOLD,
             variance_threshold: float = VARIANCE_THRESHOLD) -> tuple[str, str]:
    """The diagnosis and the rule that gave it, in words."""
    high_bias, high_variance = avoidable_bias > bias_threshold, variance > variance_threshold
    label = {(True, False): HIGH_BIAS, (False, True): HIGH_VARIANCE,
             (True, True): BOTH, (False, False): GOOD_FIT}[(high_bias, high_variance)]
    rule = (f"avoidable bias {avoidable_bias:.2%} {'>' if high_bias else '<='} {bias_threshold:.2%}, "
            f"variance {variance:.2%} {'>' if high_variance else '<='} {variance_threshold:.2%}")
    return label, rule


def best_epoch(val_acc: pd.Series) -> tuple[int, float]:
    """The first epoch (index) with the highest validation accuracy, and that accuracy."""
    clean = val_acc.dropna()
    return int(clean.idxmax()), float(clean.max())


@dataclass(frozen=True)
class Verdict:
    """What a run's history says: its best epoch, how far it trained, and the last epoch's diagnosis."""

    best_epoch: int
    best_val_acc: float
    epochs_trained: int
    final_val_acc: float
    gap: float  # the last epoch's variance
    avoidable_bias: float
    diagnosis: str
    rule: str

    @property
    def advice(self) -> str:
        return ADVICE[self.diagnosis]

    @property
    def lost_after_best(self) -> float:
        return self.best_val_acc - self.final_val_acc


def verdict(history: pd.DataFrame, best_error: float, diverged: bool = False) -> Verdict | None:
    """The verdict of a history (index epoch; columns train_acc and val_acc, others ignored), judged on
    the last epoch that has both accuracies; None when no epoch has both. A run that diverged is
    diagnosed so, whatever its last good epoch looked like."""
    if Metric.TRAIN_ACC not in history or Metric.VAL_ACC not in history:
        return None
    both = history[[Metric.TRAIN_ACC, Metric.VAL_ACC]].dropna().sort_index()
    if both.empty:
        return None
    last = both.iloc[-1]
    figures = bias_variance(last[Metric.TRAIN_ACC], last[Metric.VAL_ACC], best_error)
    label, rule = diagnose(figures[Metric.AVOIDABLE_BIAS], figures[Metric.VARIANCE])
    if diverged:
        label, rule = DIVERGED, f"training diverged after epoch {int(both.index[-1])}; before it, {rule}"
    epoch, best = best_epoch(both[Metric.VAL_ACC])
    return Verdict(best_epoch=epoch, best_val_acc=best, epochs_trained=int(both.index[-1]),
                   final_val_acc=float(last[Metric.VAL_ACC]), gap=float(figures[Metric.VARIANCE]),
                   avoidable_bias=float(figures[Metric.AVOIDABLE_BIAS]), diagnosis=label, rule=rule)


def history_of(points: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """One run's per-epoch history from long points (run_id, metric, step, value): index epoch, a column per
    metric; a step logged twice keeps its last value."""
    one = points[points["run_id"] == run_id]
    return one.pivot_table(index="step", columns="metric", values="value", aggfunc="last").rename_axis("epoch")


def verdicts(points: pd.DataFrame, best_errors: dict[str, float], diverged: set[str] = frozenset()) -> dict[str, Verdict]:
    """The verdict of every run in `best_errors` that has an epoch with both accuracies in `points`."""
    judged = {}
    for run_id, best_error in best_errors.items():
        found = verdict(history_of(points, run_id), best_error, run_id in diverged)
        if found is not None:
            judged[run_id] = found
    return judged

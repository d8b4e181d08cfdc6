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

Both are measured on finite sets (the train-eval subset, the validation set), so each has a 95%
interval (core.stats: Wilson for avoidable bias, Newcombe for variance). A figure counts as
above or below its threshold only when its whole interval is; when an interval straddles its threshold
the diagnosis is "inconclusive", with the set size that would settle it. Runs whose set sizes are
unknown (logged by other tools) are judged on the point estimates, and the rule says so.

The runner logs these for its runs; the dashboard derives them, through `verdict`, only for runs
that lack them (still running, or logged by another tool).
"""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core import stats
from core.datasets import is_dataset_path
from core.schema import Metric

BIAS_THRESHOLD = 0.01
VARIANCE_THRESHOLD = 0.01

# Best error reached on each dataset in the literature: the floor avoidable bias is measured against.
BEST_ERROR = {"mnist": 0.002, "fashion-mnist": 0.035}

HIGH_BIAS, HIGH_VARIANCE, BOTH, GOOD_FIT = "high bias", "high variance", "high bias and variance", "good fit"
DIVERGED = "diverged"  # training stopped because its loss became NaN, infinite or exploded
INCONCLUSIVE = "inconclusive"  # an interval straddles its threshold: the evaluation sets are too small to tell
# A firm high figure beside one that cannot be told: the firm one still says what to do first.
HIGH_BIAS_VARIANCE_UNSURE, HIGH_VARIANCE_BIAS_UNSURE = (
    "high bias, variance inconclusive",
    "high variance, bias inconclusive",
)
VERDICT = {  # each diagnosis in the fewest words, for a table column beside its figures
    DIVERGED: "diverged",
    INCONCLUSIVE: "cannot tell yet",
    HIGH_BIAS_VARIANCE_UNSURE: "underfits (gap unsure)",
    HIGH_VARIANCE_BIAS_UNSURE: "overfits (bias unsure)",
    HIGH_BIAS: "underfits",
    HIGH_VARIANCE: "overfits",
    BOTH: "underfits and overfits",
    GOOD_FIT: "good fit",
}
ADVICE = {
    DIVERGED: "training blew up: lower the learning rate",
    INCONCLUSIVE: "the evaluation sets are too small to tell: validate on more images (the rule says how many), "
    "or compare over seeds",
    HIGH_BIAS_VARIANCE_UNSURE: "the model underfits: try a bigger model, train longer, or a better optimizer (whether "
    "it also overfits cannot be told at this validation size)",
    HIGH_VARIANCE_BIAS_UNSURE: "the model overfits: try more data or regularisation (whether it also underfits cannot "
    "be told at this train-eval size)",
    HIGH_BIAS: "the model underfits: try a bigger model, train longer, or a better optimizer",
    HIGH_VARIANCE: "the model overfits: try more data, regularisation (dropout, weight decay) or early stopping",
    BOTH: "fix the bias first (bigger model, train longer), then the variance (more data, regularisation)",
    GOOD_FIT: "train and validation errors are both close to the best achievable",
}


def best_error_for(dataset: str | None, given: float | str | None = None, unknown: float | None = None) -> float:
    """The best achievable error: the one given (a run's param) when it is a fraction, else the dataset's
    published one, else 0 for your own data (a folder or .npz: nothing is published, so avoidable bias is all of
    the bias), else `unknown` (0 for a run of your own loop), else MNIST's (another tool's run)."""
    try:
        value = float(given)
    except (TypeError, ValueError):  # absent, "None", or not a number (another tool's param)
        value = math.nan
    if 0 <= value < 1:
        return value
    if dataset and is_dataset_path(dataset):
        return 0.0
    return BEST_ERROR.get(dataset, BEST_ERROR["mnist"] if unknown is None else unknown)


def bias_variance(train_acc, val_acc, best_error: float) -> dict:
    """Bias, variance and avoidable bias (numbers or aligned Series) from the two accuracies."""
    train_error, val_error = 1 - train_acc, 1 - val_acc
    return {
        Metric.BIAS: train_error,
        Metric.VARIANCE: val_error - train_error,
        Metric.AVOIDABLE_BIAS: train_error - best_error,
    }


@dataclass(frozen=True)
class Yardstick:
    """What a run is judged against: the best achievable error, and the sizes of the sets its train and
    validation accuracies were measured on (None when unknown: the point estimates are judged)."""

    best_error: float
    train_eval_size: int | None = None
    val_size: int | None = None

    @property
    def sized(self) -> bool:
        return bool(self.train_eval_size) and bool(self.val_size)


@dataclass(frozen=True)
class Figure:
    """Avoidable bias or variance as measured, its interval (None without set sizes), and how it stands
    against its threshold: True above, False at or below, None when the interval straddles it, with then
    the set sizes that would settle it (as words, e.g. "about 2,400 validation images")."""

    name: str
    value: float
    threshold: float
    interval: stats.Interval | None
    high: bool | None
    settling: str = ""
    settling_factor: float | None = None  # times larger its own set (train-eval or validation) must be to settle it

    def words(self) -> str:
        """The figure against its threshold in percentage points: both are differences of two error rates."""
        shown, limit = f"{self.name} {stats.points_text(self.value)}", f"{self.threshold * 100:.2f} pp"
        if self.interval is None:
            return f"{shown} {'>' if self.high else '<='} {limit}"
        around = f"{shown} (95% CI {stats.points_bounds_text(self.interval.low, self.interval.high)})"
        if self.high is not None:
            return f"{around} {'>' if self.high else '<='} {limit}"
        settle = (
            f"{self.settling} would settle it"
            if self.settling
            else f"no practical set size (up to {SETTLING_LIMIT:,} images) would settle it: the figure is too close "
            "to its threshold"
        )
        return f"{around} straddles {limit}: inconclusive at these set sizes; {settle}"


def standing(interval: stats.Interval, threshold: float) -> bool | None:
    """Above (True) or not (False) when the whole interval is on one side of the threshold, else None."""
    if interval.low > threshold:
        return True
    return False if interval.high <= threshold else None


SETTLING_LIMIT = 100_000  # images: beyond this (more than MNIST holds) no practical set settles the figure


def settling_factor(interval_at, threshold: float, start: int) -> float | None:
    """The smallest factor k >= 1 at which interval_at(k) no longer straddles the threshold (the rates held as
    measured, the sets k times larger), to 1%; None if sets of SETTLING_LIMIT images would not."""
    top = SETTLING_LIMIT / start
    if standing(interval_at(top), threshold) is None:
        return None
    low, high = 1.0, top
    while high / low > 1.01:
        middle = (low * high) ** 0.5
        low, high = (low, middle) if standing(interval_at(middle), threshold) is not None else (middle, high)
    return high


def judged_figures(
    train_acc: float,
    val_acc: float,
    yardstick: Yardstick,
    bias_threshold: float = BIAS_THRESHOLD,
    variance_threshold: float = VARIANCE_THRESHOLD,
) -> tuple[Figure, Figure]:
    """Avoidable bias and variance of one epoch, each with its interval and standing where the sizes are known.

    A straddling avoidable bias is settled by a larger train-eval subset; a straddling variance by a larger
    validation set, or, when that alone cannot, by both sets larger in proportion."""
    figures = bias_variance(train_acc, val_acc, yardstick.best_error)
    bias, variance = float(figures[Metric.AVOIDABLE_BIAS]), float(figures[Metric.VARIANCE])
    if not yardstick.sized:
        return (
            Figure("avoidable bias", bias, bias_threshold, None, bias > bias_threshold),
            Figure("variance", variance, variance_threshold, None, variance > variance_threshold),
        )
    n_train, n_val = yardstick.train_eval_size, yardstick.val_size
    train_error, val_error = 1 - train_acc, 1 - val_acc

    def bias_at(k: float) -> stats.Interval:
        error = stats.accuracy_interval_of(train_error, round(k * n_train))
        return stats.Interval(bias, error.low - yardstick.best_error, error.high - yardstick.best_error, n_train)

    def variance_at(k_val: float, k_train: float = 1.0) -> stats.Interval:
        return stats.rate_difference_interval(train_error, round(k_train * n_train), val_error, round(k_val * n_val))

    def images(k: float, n: int, which: str) -> str:
        return f"about {round(k * n):,} {which} images"

    bias_interval, variance_interval = bias_at(1), variance_at(1)
    bias_high, variance_high = standing(bias_interval, bias_threshold), standing(variance_interval, variance_threshold)
    bias_settling = variance_settling = ""
    bias_k = variance_k = None
    if bias_high is None:
        bias_k = settling_factor(bias_at, bias_threshold, n_train)
        bias_settling = images(bias_k, n_train, "train-eval") if bias_k else ""
    if variance_high is None:
        variance_k = settling_factor(variance_at, variance_threshold, n_val)
        if variance_k:
            variance_settling = images(variance_k, n_val, "validation")
        else:
            k = settling_factor(lambda k: variance_at(k, k), variance_threshold, max(n_val, n_train))
            variance_settling = f"{images(k, n_val, 'validation')} with {images(k, n_train, 'train-eval')}" if k else ""
    return (
        Figure("avoidable bias", bias, bias_threshold, bias_interval, bias_high, bias_settling, bias_k),
        Figure(
            "variance", variance, variance_threshold, variance_interval, variance_high, variance_settling, variance_k
        ),
    )


def diagnose(bias: Figure, variance: Figure) -> tuple[str, str]:
    """The diagnosis and the rule that gave it, in words."""
    label = {
        (True, False): HIGH_BIAS,
        (False, True): HIGH_VARIANCE,
        (True, True): BOTH,
        (False, False): GOOD_FIT,
        (True, None): HIGH_BIAS_VARIANCE_UNSURE,
        (None, True): HIGH_VARIANCE_BIAS_UNSURE,
    }.get((bias.high, variance.high), INCONCLUSIVE)
    unsized = "" if bias.interval else " (set sizes unknown: point estimates judged)"
    return label, f"{bias.words()}, {variance.words()}{unsized}"


def best_epoch(val_acc: pd.Series) -> tuple[int, float]:
    """The first epoch (index) with the highest validation accuracy, and that accuracy."""
    clean = val_acc.dropna()
    return best_of(clean.index.to_numpy(), clean.to_numpy())


def best_of(epochs: np.ndarray, val_acc: np.ndarray) -> tuple[int, float]:
    """best_epoch on arrays without NaN: the first epoch of the highest accuracy."""
    i = int(np.argmax(val_acc))
    return int(epochs[i]), float(val_acc[i])


@dataclass(frozen=True)
class EarlyStop:
    """What early stopping would have done to a history: the epoch training stops after, the best epoch it keeps
    (whose weights give the test accuracy), and the training epochs and seconds it saves."""

    patience: int | None
    stopped_after: int
    best_epoch: int
    best_val_acc: float
    epochs_saved: int
    seconds_saved: float  # NaN when the run logged no epoch_seconds


def early_stop(val_acc: pd.Series, epoch_seconds: pd.Series, patience: int | None = None) -> EarlyStop:
    """Replay a history (index epoch) under early stopping: stop once `patience` epochs pass without a higher
    validation accuracy, as Keras's EarlyStopping and Lightning's do; patience None stops at the best epoch
    itself (hindsight: the most any patience could save). Test accuracy is scored with the kept best epoch's
    weights, so it is unchanged whenever that epoch is the run's best."""
    clean = val_acc.dropna().sort_index()
    epochs, accs = clean.index.to_numpy(), clean.to_numpy()
    best, stop = 0, len(accs) - 1
    for i in range(1, len(accs)):
        if accs[i] > accs[best]:
            best = i
        elif patience is not None and i - best >= patience:
            stop = i
            break
    if patience is None:
        best = stop = int(np.argmax(accs))
    later = epoch_seconds.reindex(epochs[stop + 1 :])
    seconds = float(later.sum()) if later.notna().all() else math.nan
    return EarlyStop(patience, int(epochs[stop]), int(epochs[best]), float(accs[best]), len(accs) - 1 - stop, seconds)


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
    figures: tuple[Figure, Figure]  # avoidable bias and variance, with intervals where the set sizes are known

    @property
    def advice(self) -> str:
        return ADVICE[self.diagnosis]

    @property
    def lost_after_best(self) -> float:
        return self.best_val_acc - self.final_val_acc


def verdict(history: pd.DataFrame, yardstick: Yardstick, diverged: bool = False) -> Verdict | None:
    """The verdict of a history (index epoch; columns train_acc and val_acc, others ignored), judged on
    the last epoch that has both accuracies; None when no epoch has both. A run that diverged is
    diagnosed so, whatever its last good epoch looked like."""
    if Metric.TRAIN_ACC not in history or Metric.VAL_ACC not in history:
        return None
    both = history[[Metric.TRAIN_ACC, Metric.VAL_ACC]].dropna().sort_index()
    if both.empty:
        return None
    return judge(
        both.index.to_numpy(), both[Metric.TRAIN_ACC].to_numpy(), both[Metric.VAL_ACC].to_numpy(), yardstick, diverged
    )


def judge(
    epochs: np.ndarray, train_acc: np.ndarray, val_acc: np.ndarray, yardstick: Yardstick, diverged: bool
) -> Verdict:
    """verdict on arrays: the epochs (ascending) that have both accuracies, and those accuracies."""
    bias, variance = judged_figures(float(train_acc[-1]), float(val_acc[-1]), yardstick)
    label, rule = diagnose(bias, variance)
    if diverged:
        label, rule = DIVERGED, f"training diverged after epoch {int(epochs[-1])}; before it, {rule}"
    epoch, best = best_of(epochs, val_acc)
    return Verdict(
        best_epoch=epoch,
        best_val_acc=best,
        epochs_trained=int(epochs[-1]),
        final_val_acc=float(val_acc[-1]),
        gap=variance.value,
        avoidable_bias=bias.value,
        diagnosis=label,
        rule=rule,
        figures=(bias, variance),
    )


def history_of(points: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """One run's per-epoch history from long points (run_id, metric, step, value): index epoch, a column per
    metric; a step logged twice keeps its last value."""
    one = points[points["run_id"] == run_id]
    return one.pivot_table(index="step", columns="metric", values="value", aggfunc="last").rename_axis("epoch")


def verdicts(
    points: pd.DataFrame, yardsticks: dict[str, Yardstick], diverged: set[str] = frozenset()
) -> dict[str, Verdict]:
    """The verdict of every run in `yardsticks` that has an epoch with both accuracies in `points`: one reshape
    for all runs, then judge on each run's slice (a pivot per run costs 8 s for 1,000 runs)."""
    wanted = points[points["run_id"].isin(list(yardsticks)) & points["metric"].isin([Metric.TRAIN_ACC, Metric.VAL_ACC])]
    wide = wanted.drop_duplicates(["run_id", "metric", "step"], keep="last").pivot(
        index=["run_id", "step"], columns="metric", values="value"
    )
    if Metric.TRAIN_ACC not in wide or Metric.VAL_ACC not in wide:
        return {}
    both = wide[[Metric.TRAIN_ACC, Metric.VAL_ACC]].dropna().sort_index()
    run_ids, epochs = both.index.get_level_values(0).to_numpy(), both.index.get_level_values(1).to_numpy()
    train_acc, val_acc = both[Metric.TRAIN_ACC].to_numpy(), both[Metric.VAL_ACC].to_numpy()
    starts = np.flatnonzero(np.r_[True, run_ids[1:] != run_ids[:-1]])
    return {
        run_ids[a]: judge(epochs[a:b], train_acc[a:b], val_acc[a:b], yardsticks[run_ids[a]], run_ids[a] in diverged)
        for a, b in zip(starts, np.r_[starts[1:], len(run_ids)], strict=True)
    }


@dataclass(frozen=True)
class ClassGap:
    """One class's variance at one epoch: its train-eval and validation errors and the gap between them, with the
    gap's interval (95% for all classes together); it overfits when the whole interval is above VARIANCE_THRESHOLD
    (None: cannot tell)."""

    label: int
    name: str
    train_error: float
    val_error: float
    gap: stats.Interval
    overfits: bool | None


def class_gaps(train_error, val_error, train_support, val_support, names) -> list[ClassGap]:
    """Every class present in both sets, the widest gap first: the per-class form of the variance, judged as the run's
    is (Newcombe's interval of val error - train error against the variance threshold), each interval at
    1 - 0.05 / classes (Bonferroni) so that all of them hold together at 95%: ten 95% intervals would flag some class
    of a run that overfits none about one time in five."""
    confidence = 1 - (1 - stats.CONFIDENCE) / len(names)
    gaps = []
    for label, (train, val, n_train, n_val) in enumerate(
        zip(train_error, val_error, train_support, val_support, strict=True)
    ):
        if not (n_train and n_val):
            continue
        gap = stats.rate_difference_interval(float(train), int(n_train), float(val), int(n_val), confidence)
        gaps.append(
            ClassGap(label, str(names[label]), float(train), float(val), gap, standing(gap, VARIANCE_THRESHOLD))
        )
    return sorted(gaps, key=lambda g: -g.gap.estimate)

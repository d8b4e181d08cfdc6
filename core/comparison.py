"""Which is better? Two runs, or two config groups of runs over seeds, compared with the right test.

- two groups with at least two seeds each: Welch's t test on their test accuracies;
- two runs on the same test images: the exact McNemar test on the images only one got right;
- two runs on different test images: Fisher's exact test on their right/wrong counts.
The answer is a few numbers and one sentence, the same for `python -m experiments compare` and the
dashboard's "Which is better?" panel. `read_side` reads a side from MLflow for the command line.
"""

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mlflow.exceptions import MlflowException
from scipy import stats as scipy_stats

from core import stats
from core.schema import Artifact, Metric, Param, Tag
from core.store import search_all

GROUP_PREFIX = "group:"
RESOLVE_DEFAULT = 0.001  # the difference "would resolve" speaks of when none was observed: 0.1 points


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a run, or the finished runs of a config group. `predictions` (index, label,
    predicted arrays, from Artifact.TEST_PREDICTIONS) only for a single run that logged them."""

    label: str
    run_ids: tuple[str, ...]
    test_accs: tuple[float, ...]
    test_sizes: tuple[int, ...]
    predictions: dict | None = None

    @property
    def n(self) -> int:
        return len(self.test_accs)

    def interval(self) -> stats.Interval:
        """The mean over seeds with its t interval, or one run's Wilson interval on its test set."""
        if self.n == 1:
            return stats.accuracy_interval_of(self.test_accs[0], self.test_sizes[0])
        return stats.accuracy_mean_interval(self.test_accs)


@dataclass(frozen=True)
class Answer:
    """A comparison's outcome: B minus A with its interval (accuracy fractions), the p-value of the test used,
    the sentence that says it, and for two runs on the same images the ones only one got right."""

    test: str
    difference: stats.Interval | None
    p_value: float | None
    sentence: str
    right_only_in_a: np.ndarray = field(default_factory=lambda: np.array([], dtype=int))
    right_only_in_b: np.ndarray = field(default_factory=lambda: np.array([], dtype=int))

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < stats.ALPHA


def points(difference: float) -> str:
    return f"{abs(difference) * 100:.2f}"


def outcome(a: Side, b: Side, difference: float, p: float, where: str, margin: str = "") -> str:
    """'B beats A by X[ ± M] points WHERE (p)' when significant at ALPHA, else that nothing was detected."""
    if p >= stats.ALPHA or difference == 0:
        return f"no detectable difference between {a.label} and {b.label} {where} ({stats.p_text(p)})"
    winner, loser = (b, a) if difference > 0 else (a, b)
    return f"{winner.label} beats {loser.label} by {points(difference)}{margin} points {where} ({stats.p_text(p)})"


def seeds_to_resolve(a: Side, b: Side) -> tuple[float, int | None]:
    """The difference of two groups' mean test accuracies (RESOLVE_DEFAULT where none was seen) and the seeds per
    side that would resolve it (None: no practical number)."""
    target = abs(float(np.mean(b.test_accs) - np.mean(a.test_accs))) or RESOLVE_DEFAULT
    spread = float(np.sqrt((np.var(a.test_accs, ddof=1) + np.var(b.test_accs, ddof=1)) / 2))
    return target, stats.seeds_to_resolve(target, spread)


def compare_groups(a: Side, b: Side) -> Answer:
    found = stats.compare_groups(a.test_accs, b.test_accs)
    seeds = f"over {a.n} seeds" if a.n == b.n else f"over {a.n} and {b.n} seeds"
    sentence = outcome(
        a, b, found.difference.estimate, found.p_value, seeds, margin=f" ± {points(found.difference.half_width)}"
    )
    if not found.p_value < stats.ALPHA:
        target, needed = seeds_to_resolve(a, b)
        sentence += (
            f"; about {needed} seeds per side would resolve {points(target)} points"
            if needed
            else f"; no practical number of seeds would resolve {points(target)} points"
        )
    return Answer("Welch's t test over seeds", found.difference, found.p_value, sentence + ".")


def paired_correct(a: dict, b: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Per test image (by its index in the test file) whether A and B got it right, on the images both saw
    (e.g. all of one run's when the other carved its validation set from the same test file); None unless
    they share at least half of the smaller test set, with the same labels."""
    shared, in_a, in_b = np.intersect1d(a["index"], b["index"], return_indices=True)
    if (
        len(shared) == 0
        or len(shared) < 0.5 * min(len(a["index"]), len(b["index"]))
        or not np.array_equal(a["label"][in_a], b["label"][in_b])
    ):
        return None
    truth = a["label"][in_a]
    return shared, a["predicted"][in_a] == truth, b["predicted"][in_b] == truth


def compare_runs(a: Side, b: Side) -> Answer:
    paired = paired_correct(a.predictions, b.predictions) if a.predictions and b.predictions else None
    if paired is not None:
        index, right_a, right_b = paired
        found = stats.mcnemar(right_a, right_b)
        sentence = outcome(a, b, found.difference, found.p_value, f"on the same {found.n:,} test images")
        sentence += (
            f": {found.only_a} images right only in {a.label}, {found.only_b} right only in {b.label} "
            "(exact McNemar test). Each side is one seed: this says nothing about how much either "
            "configuration varies from seed to seed; compare config groups for that."
        )
        return Answer(
            "exact McNemar test", None, found.p_value, sentence, index[right_a & ~right_b], index[right_b & ~right_a]
        )
    acc_a, acc_b = a.test_accs[0], b.test_accs[0]
    n_a, n_b = a.test_sizes[0], b.test_sizes[0]
    table = [[round(acc_a * n_a), n_a - round(acc_a * n_a)], [round(acc_b * n_b), n_b - round(acc_b * n_b)]]
    p = float(scipy_stats.fisher_exact(table).pvalue)
    difference = stats.rate_difference_interval(acc_a, n_a, acc_b, n_b)
    sentence = outcome(a, b, difference.estimate, p, f"on {n_a:,} and {n_b:,} different test images")
    return Answer(
        "Fisher's exact test (different test images)",
        difference,
        p,
        sentence + "; test both on the same images for the paired (McNemar) test.",
    )


def which_is_better(a: Side, b: Side) -> Answer:
    """The comparison the two sides allow: groups over seeds, or two runs; a single run against a group cannot
    be tested, and the answer says what to run."""
    if a.n == 0 or b.n == 0:
        empty = a if a.n == 0 else b
        return Answer("none", None, None, f"{empty.label} has no finished run with a test accuracy.")
    if a.n >= 2 and b.n >= 2:
        return compare_groups(a, b)
    if a.n == 1 and b.n == 1:
        return compare_runs(a, b)
    single = a if a.n == 1 else b
    return Answer(
        "none",
        None,
        None,
        f"{single.label} is one run, and one run cannot be tested against a group "
        "of seeds: compare its config group instead, if it has several seeds, or train "
        "its configuration over seeds (train --repeats 5).",
    )


def report(a: Side, b: Side, answer: Answer) -> str:
    """The comparison as lines of text, for the command line."""
    lines = []
    for name, side in (("A", a), ("B", b)):
        interval = side.interval()
        spread = f"95% CI {interval.bounds_text()}" if interval.bounds_text() else "no interval"
        lines.append(
            f"{name}  {side.label}: test acc {interval.estimate:.2%} ({spread}), {side.n} run{'s' * (side.n != 1)}"
        )
    if answer.difference is not None:
        d = answer.difference
        lines.append(f"B - A  {stats.points_text(d.estimate)} (95% CI {stats.points_bounds_text(d.low, d.high)})")
    lines.append(f"test   {answer.test}" + (f", {stats.p_text(answer.p_value)}" if answer.p_value is not None else ""))
    lines.append(answer.sentence)
    return "\n".join(lines)


class ComparisonError(ValueError):
    """A run id or group that cannot be compared; one line."""


def finished_group_runs(client, group: str) -> list:
    """The FINISHED runs of a config group, in every experiment."""
    return search_all(client, f"tags.{Tag.CONFIG_GROUP} = '{group}' and attributes.status = 'FINISHED'")


def read_side(client, ref: str) -> Side:
    """A side from the store: `group:HASH` (its FINISHED runs) or a run id."""

    if ref.startswith(GROUP_PREFIX):
        return group_side(client, ref[len(GROUP_PREFIX) :])[0]
    try:
        run = client.get_run(ref)
    except MlflowException as err:
        raise ComparisonError(f"{ref}: no such run in the tracking store ({err.message.splitlines()[0]})") from err
    if Metric.TEST_ACC not in run.data.metrics:
        raise ComparisonError(f"{ref}: the run has no test accuracy (status {run.info.status})")
    return side_of(client, f"{run.info.run_name} ({ref[:8]})", [run])


def group_side(client, group: str) -> tuple[Side, list]:
    """A config group's side and the runs it is made of (its FINISHED runs with a test accuracy)."""
    runs = [r for r in finished_group_runs(client, group) if Metric.TEST_ACC in r.data.metrics]
    if not runs:
        ref = f"{GROUP_PREFIX}{group}"
        raise ComparisonError(f"{ref}: no FINISHED run with a test accuracy carries config_group {group!r}")
    return side_of(client, f"{runs[0].data.params.get(Param.MODEL, '?')} ({GROUP_PREFIX}{group})", runs), runs


def side_of(client, label: str, runs: list) -> Side:
    return Side(
        label,
        tuple(r.info.run_id for r in runs),
        tuple(r.data.metrics[Metric.TEST_ACC] for r in runs),
        tuple(int(r.data.params.get(Param.TEST_SIZE, 0)) for r in runs),
        read_predictions(client, runs[0].info.run_id) if len(runs) == 1 else None,
    )


def read_predictions(client, run_id: str) -> dict | None:
    """A run's Artifact.TEST_PREDICTIONS as arrays, or None if it did not log them."""

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(client.download_artifacts(run_id, Artifact.TEST_PREDICTIONS, tmp))
        except (MlflowException, OSError):
            return None
        with np.load(local, allow_pickle=False) as arrays:
            return dict(arrays)

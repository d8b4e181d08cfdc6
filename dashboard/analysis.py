"""Pure DataFrame computations behind the pages: filtering, histories, series, param diffs, sweeps, groups over
seeds and their bands.

Derived numbers (best epoch, gap, diagnosis) are core.diagnosis's, never computed here.
"""

import json
import math
import operator
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core import stats
from core.comparison import Side
from core.diagnosis import GOOD_FIT, HIGH_BIAS, HIGH_VARIANCE, bias_variance, history_of
from core.schema import Metric, Value
from core.settings import SETTINGS


def filter_runs(runs: pd.DataFrame, models=(), datasets=(), statuses=(), suites=(), text: str = "") -> pd.DataFrame:
    """Rows matching every non-empty filter; `text` is a search (search_terms) whose terms must all match."""
    keep = pd.Series(True, index=runs.index)
    for column, chosen in (("model", models), ("dataset", datasets), ("status", statuses), ("suite", suites)):
        if chosen:
            keep &= runs[column].isin(chosen)
    for term in search_terms(text):
        keep &= term_matches(runs, term)
    return runs[keep]


SEARCH_TERM = re.compile(r"(?P<key>[^\s=<>!]+)\s*(?P<op>>=|<=|!=|=|>|<)\s*(?P<value>\S+)")
INCOMPLETE_TERM = re.compile(r"[^\s=<>!]*(>=|<=|!=|=|>|<)")  # a key and an operator, or an operator alone
COMPARISONS = {
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}


def search_terms(text: str) -> list[tuple[str, str, str] | str]:
    """The Runs search, split into terms combined with AND: `key=value`, `key!=value`, `key>value`, `key<value`,
    `key>=value`, `key<=value` on a param, or a bare word to find in the run's name or params. A comparison
    without its value (`model=`, `lr>`, `=`) is left out (incomplete_terms names it)."""
    return [term for term in parsed_terms(text) if not is_incomplete(term)]


def incomplete_terms(text: str) -> list[str]:
    """The comparisons of a search that have no value yet (clipped for showing): left out of it, and said so."""
    return [clipped(term) for term in parsed_terms(text) if is_incomplete(term)]


def parsed_terms(text: str) -> list[tuple[str, str, str] | str]:
    terms, rest = [], text.strip()
    while rest:
        found = SEARCH_TERM.match(rest)
        if found:
            terms.append((found["key"].lower(), found["op"], found["value"]))
            rest = rest[found.end() :].lstrip()
        else:
            word, _, rest = rest.partition(" ")
            terms.append(word)
            rest = rest.lstrip()
    return terms


def is_incomplete(term: tuple[str, str, str] | str) -> bool:
    return isinstance(term, str) and INCOMPLETE_TERM.fullmatch(term) is not None


def term_matches(runs: pd.DataFrame, term: tuple[str, str, str] | str) -> pd.Series:
    """Which runs one search term matches; numbers compare as numbers, other values as case-insensitive text
    (which only = and != compare)."""
    if isinstance(term, str):
        needle = term.lower()
        return runs["run_name"].str.lower().str.contains(needle, regex=False) | runs["params"].map(
            lambda params: any(needle in f"{k}={v}".lower() for k, v in params.items())
        )
    key, op, wanted = term
    values = runs["params"].map(lambda params: next((v for k, v in params.items() if k.lower() == key), None))
    numbers, target = pd.to_numeric(values, errors="coerce"), pd.to_numeric(pd.Series([wanted]), errors="coerce")[0]
    if pd.notna(target):
        matched = COMPARISONS[op](numbers, target) & numbers.notna()
        if op in ("=", "!="):
            matched |= numbers.isna() & values.notna() & COMPARISONS[op](values.str.lower(), wanted.lower())
        return matched
    return (
        values.notna() & COMPARISONS[op](values.str.lower(), wanted.lower())
        if op in ("=", "!=")
        else pd.Series(False, index=runs.index)
    )


def search_hint(runs: pd.DataFrame, text: str) -> str:
    """Why a search matches no run: the first term that alone matches none, and what its param holds."""
    for term in search_terms(text):
        if term_matches(runs, term).any():
            continue
        if isinstance(term, str):
            return f"no run's name or params contain {clipped(term)!r}."
        key, op, wanted = clipped(term[0]), term[1], clipped(term[2])
        held = sorted({str(v) for params in runs["params"] for k, v in params.items() if k.lower() == key})
        if not held:
            return f"no run has a param {key!r} (the Run detail page lists a run's params)."
        shown = ", ".join(f'"{value}"' for value in held[:8]) + (", ..." if len(held) > 8 else "")
        typable = [value for value in held if value and not re.search(r"\s", value)]  # a term ends at a space
        example = f", typed as written, e.g. {key}={typable[0]}" if typable else ""
        return f"{key}{op}{wanted} matches no run; {key} is one of {shown}{example}."
    return "each term matches some runs, but no run matches all of them (terms combine with AND)."


VAL_ABOVE_TEST = 0.02  # a best validation accuracy this far above test gets its explanation on the page


def val_above_test_note(best_val_acc: float, test_acc: float) -> str | None:
    """Why a best validation accuracy reads above the test accuracy, when it does by VAL_ABOVE_TEST or more; None
    otherwise (or when either is missing)."""
    gap = best_val_acc - test_acc
    if not gap >= VAL_ABOVE_TEST:  # also False for NaN
        return None
    return (
        f"Best validation accuracy reads {gap * 100:.2f} pp above test. The best of several epochs, chosen on the "
        "validation set, reads high; and the first images of a file (--train-size, --test-size) differ in difficulty "
        "from the rest: on MNIST the test file's first half is about 7 pp harder than its second for a linear model "
        "(docs/statistics.md, Why validation can read above test). Quote the full test set."
    )


def clipped(text: str, limit: int = 40) -> str:
    """Text echoed back to the user, at most `limit` characters (a pasted paragraph is not repeated whole)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run_labels(runs: pd.DataFrame, run_ids) -> dict[str, str]:
    """Readable, unique labels 'name (id8)' for run ids, in the given order."""
    names = runs.set_index("run_id")["run_name"].to_dict()
    return {run_id: f"{names.get(run_id, '?')} ({run_id[:8]})" for run_id in run_ids}


def differing_params(params: pd.DataFrame) -> pd.DataFrame:
    """Only the params whose values are not the same for every run (index run, one column per param)."""
    varying = [c for c in params.columns if params[c].astype(str).nunique(dropna=False) > 1]
    return params[varying]


def final_and_best(runs: pd.DataFrame, metrics: pd.DataFrame, run_ids) -> pd.DataFrame:
    """Side by side per run: final and best validation accuracy, test accuracy, gap, params, s/epoch."""
    rows = []
    for run_id in run_ids:
        history = history_of(metrics, run_id)
        row = runs.set_index("run_id").loc[run_id]
        last = history.iloc[-1] if len(history) else pd.Series(dtype=float)
        rows.append(
            {
                "run": row["run_name"],
                "model": row["model"],
                "epochs": len(history),
                "final val acc": last.get(Metric.VAL_ACC, np.nan),
                "best val acc": row["best_val_acc"],
                "best epoch": row["best_epoch"],
                "test acc": row["test_acc"],
                "final gap": last.get(Metric.VARIANCE, np.nan),
                "params": row["params_total"],
                "s / epoch": history[Metric.EPOCH_SECONDS].mean() if Metric.EPOCH_SECONDS in history else np.nan,
            }
        )
    return pd.DataFrame(rows)


# Higher is better in these columns of final_and_best, except where "min" says lower is.
BETTER = {"final val acc": "max", "best val acc": "max", "test acc": "max", "s / epoch": "min"}
BASELINE_DIFFERENCES = ("best val acc", "test acc")


def marked_best(table: pd.DataFrame, baseline: int | None = None) -> pd.DataFrame:
    """final_and_best's table with a "best at" column naming the columns in which each run is best (ties: each
    of them), and, for a baseline row, each accuracy's difference from the baseline's ("… vs baseline")."""
    best = pd.Series([[] for _ in range(len(table))], index=table.index)
    for column, way in BETTER.items():
        values = table[column]
        if values.notna().sum() < 2:
            continue
        for i in table.index[values == (values.max() if way == "max" else values.min())]:
            best[i] = [*best[i], column]
    marked = table.assign(**{"best at": best.map(", ".join)})
    if baseline is not None:  # each difference beside its accuracy, where it is seen without scrolling
        for column in BASELINE_DIFFERENCES:
            marked.insert(
                marked.columns.get_loc(column) + 1,
                f"{column} vs baseline",
                table[column] - table[column].iloc[baseline],
            )
    return marked


X_AXES = {"epoch": "epoch", "training time": "training time (s)", "images seen": "training images seen"}


def along(metrics: pd.DataFrame, runs: pd.DataFrame, x: str) -> pd.DataFrame:
    """Long per-epoch metrics with `step` re-expressed along an X_AXES axis: the epoch itself, the training seconds
    elapsed by the end of the epoch (cumulative epoch_seconds), or the training images seen by then (epoch times
    the run's training-set size). Points whose x is unknown (no epoch_seconds, say) are left out."""
    if x == "epoch":
        return metrics
    if x == "training time":
        seconds = metrics[metrics["metric"] == Metric.EPOCH_SECONDS].drop_duplicates(["run_id", "step"], keep="last")
        seconds = seconds.sort_values(["run_id", "step"])
        positions = seconds.assign(x=seconds.groupby("run_id")["value"].cumsum())[["run_id", "step", "x"]]
    else:
        sizes = pd.to_numeric(runs.set_index("run_id")["train_size"], errors="coerce")
        positions = metrics[["run_id", "step"]].drop_duplicates()
        positions = positions.assign(x=positions["step"] * positions["run_id"].map(sizes))
    placed = metrics.merge(positions, on=["run_id", "step"]).dropna(subset=["x"])
    return placed.assign(step=placed["x"]).drop(columns="x")


def with_bias_variance(history: pd.DataFrame, best_error: float) -> pd.DataFrame:
    """The history with bias, variance and avoidable bias derived from the accuracies where a run lacks them."""
    derived = pd.DataFrame(bias_variance(history[Metric.TRAIN_ACC], history[Metric.VAL_ACC], best_error))
    return history.combine_first(derived)


def per_class_frame(per_class: dict) -> pd.DataFrame:
    """A per_class_epochs.json artifact as a long frame: epoch, label, name, train_error, val_error and gap (val error
    - train error, the class's variance); null errors (a class absent from a set) become NaN."""
    names = per_class["class_names"]
    rows = [
        {
            "epoch": epoch,
            "label": label,
            "name": names[label],
            **{key: per_class[key][i][label] for key in ("train_error", "val_error", "train_support", "val_support")},
        }
        for i, epoch in enumerate(per_class["epochs"])
        for label in range(len(names))
    ]
    frame = pd.DataFrame(rows).astype({"train_error": float, "val_error": float})
    return frame.assign(gap=frame["val_error"] - frame["train_error"])


def epoch_position(epochs: list[int], epoch: int) -> int:
    """Where an epoch's entry sits in a per-epoch artifact: its last one (older versions could log an epoch twice
    when a run was resumed; the later entry is the one that counts)."""
    return len(epochs) - 1 - epochs[::-1].index(epoch)


def epoch_entry(series: dict, epoch: int) -> dict:
    """One epoch's entry of a per-epoch artifact (core.schema.Artifact.PER_EPOCH: one list per field, an item per
    epoch): each list's item for that epoch."""
    i = epoch_position(series["epochs"], epoch)
    return {
        key: values[i]
        for key, values in series.items()
        if isinstance(values, list)
        and key != "epochs"
        and len(values) == len(series["epochs"])
        and key != "class_names"
    }


def series_over(runs: pd.DataFrame, setting: str, min_points: int = 2) -> list[list[str]]:
    """Groups of finished runs that differ only in `setting` (every other setting that defines the experiment
    equal), with at least `min_points` distinct values of it, whichever suite or sweep made them."""
    follows = {name for name, s in SETTINGS.items() if s.logged_from == setting}  # logged values that move with it
    finished = runs[(runs["status"] == "FINISHED") & runs["config"].map(lambda c: setting in c)]
    others = finished["config"].map(
        lambda c: tuple(sorted((k, v) for k, v in c.items() if k != setting and k not in follows))
    )
    groups = []
    for _, group in finished.groupby(others, sort=False):
        if group["config"].map(lambda c: c[setting]).nunique() >= min_points:
            groups.append(list(group["run_id"]))
    return groups


def series_points(runs: pd.DataFrame, metrics: pd.DataFrame, setting: str) -> pd.DataFrame:
    """Final train and validation error of each run against its (numeric) value of `setting`."""
    values = runs.set_index("run_id")["config"]
    rows = []
    for run_id in metrics["run_id"].unique():
        history = history_of(metrics, run_id).dropna(subset=[Metric.TRAIN_ACC, Metric.VAL_ACC])
        if history.empty:
            continue
        last = history.iloc[-1]
        rows.append(
            {
                "run_id": run_id,
                setting: float(values[run_id][setting]),
                "train_error": 1 - last[Metric.TRAIN_ACC],
                "val_error": 1 - last[Metric.VAL_ACC],
            }
        )
    return pd.DataFrame(rows, columns=["run_id", setting, "train_error", "val_error"]).sort_values(setting)


def capacity_points(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """A width series' final train and validation errors with each run's parameter count, fewest parameters first."""
    points = series_points(runs, metrics, "width").merge(runs[["run_id", "params_total"]], on="run_id")
    return points.sort_values("params_total").reset_index(drop=True)


def sweet_spot(points: pd.DataFrame) -> int:
    """The row (position) with the lowest validation error; the smaller one of a tie."""
    return int(np.argmin(points["val_error"].to_numpy()))


def moved_images(labels, before, after, true: int, predicted: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the images of class `true` that moved into the cell (true, predicted) between two epochs'
    predictions, and of those that moved out of it."""
    was, now = in_cell(labels, before, true, predicted), in_cell(labels, after, true, predicted)
    return np.setdiff1d(now, was), np.setdiff1d(was, now)


def in_cell(labels, predicted, true: int, pred: int) -> np.ndarray:
    """Positions of the images in the confusion cell (true, pred) of one epoch's predictions."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    return np.flatnonzero((labels == true) & (predicted == pred))


def off_diagonal_cells(matrix, class_names) -> pd.DataFrame:
    """The confusions (true != predicted, count > 0), most frequent first."""
    counts = np.asarray(matrix)
    true, pred = np.nonzero(counts * (1 - np.eye(len(counts), dtype=int)))
    cells = pd.DataFrame({"true": true, "predicted": pred, "count": counts[true, pred]})
    cells["true name"] = [class_names[t] for t in cells["true"]]
    cells["predicted name"] = [class_names[p] for p in cells["predicted"]]
    return cells.sort_values("count", ascending=False, kind="stable").reset_index(drop=True)


def trial_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Sweep trials with each searched value in its own column, in trial order."""
    values = pd.DataFrame(list(trials["params"]), index=trials.index)
    return pd.concat([trials.drop(columns="params"), values], axis=1)


def best_trial_position(trials: pd.DataFrame) -> int | None:
    """Row position of the complete trial with the best objective (best_val_acc), or None."""
    complete = trials["best_val_acc"].where(trials["state"] == Value.TRIAL_COMPLETE)
    return None if complete.isna().all() else trials.index.get_loc(complete.idxmax())


@dataclass(frozen=True)
class TrialLead:
    """How far a sweep's best complete trial leads the runner-up (row position), on how many validation images."""

    runner_up: int
    lead: stats.Interval  # best - runner-up objective, Newcombe's 95% interval
    val_size: int  # the best trial's


def best_trial_lead(trials: pd.DataFrame, val_sizes: pd.Series) -> TrialLead | None:
    """The best complete trial's (best_trial_position's) lead over the runner-up, from their objectives and
    validation sizes (`val_sizes` by run id). The interval ignores that trials share their validation images, which
    only widens it. None under two complete trials, or when either's validation size is unknown."""
    best = best_trial_position(trials)
    complete = trials["best_val_acc"].where(trials["state"] == Value.TRIAL_COMPLETE)
    others = complete.drop(index=trials.index[best]) if best is not None else complete.iloc[:0]
    if others.isna().all():
        return None
    top, second = trials.iloc[best], trials.loc[others.idxmax()]
    n_top, n_second = (val_sizes.get(row["run_id"], np.nan) for row in (top, second))
    if pd.isna(n_top) or pd.isna(n_second):
        return None
    lead = stats.rate_difference_interval(second["best_val_acc"], int(n_second), top["best_val_acc"], int(n_top))
    return TrialLead(trials.index.get_loc(others.idxmax()), lead, int(n_top))


def param_importances(trials: pd.DataFrame, distributions: dict) -> dict[str, float]:
    """Optuna's fANOVA importance of each searched parameter for best_val_acc, from the complete trials;
    empty when fewer than two complete trials differ in their objective."""
    import optuna  # noqa: PLC0415 (optuna: only the Sweeps page needs it)
    from optuna.distributions import json_to_distribution  # noqa: PLC0415

    complete = trials[
        (trials["state"] == Value.TRIAL_COMPLETE)
        & trials["best_val_acc"].notna()
        & trials["params"].map(lambda p: set(p) == set(distributions))
    ]
    if len(complete) < 2 or complete["best_val_acc"].nunique() < 2:
        return {}
    space = {name: json_to_distribution(json.dumps(d)) for name, d in distributions.items()}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for params, value in zip(complete["params"], complete["best_val_acc"], strict=True):
        study.add_trial(optuna.trial.create_trial(params=params, distributions=space, value=value))
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    return optuna.importance.get_param_importances(study, evaluator=evaluator)


def with_test_intervals(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with the Wilson 95% interval of each test accuracy on its test-set size (test_acc_low/high), all in
    one call (NaN where either is unknown)."""
    n = pd.to_numeric(runs["test_size"], errors="coerce").to_numpy(dtype=float)
    low, high = stats.wilson_bounds(np.round(runs["test_acc"].to_numpy(dtype=float) * n), n)
    return runs.assign(test_acc_low=low, test_acc_high=high)


def comparable_sets(runs: pd.DataFrame) -> pd.Series:
    """Which runs' test accuracies can be ranked together: those scored on the same dataset's same test images
    (the dataset and the test-set size)."""
    return runs["dataset"].astype(str) + " | " + runs["test_size"].astype(str)


def ranks(runs: pd.DataFrame) -> pd.Series:
    """Each finished run's place by test accuracy among the runs of its comparable set, '★ 1 of 12' for the best;
    empty for a run without a test accuracy (running, failed, or another tool's without one)."""
    scored = runs["status"].eq("FINISHED") & runs["test_acc"].notna()
    sets = comparable_sets(runs)
    place = runs["test_acc"].where(scored).groupby(sets).rank(ascending=False, method="min")
    size = scored.groupby(sets).transform("sum")
    return pd.Series(
        [
            "" if pd.isna(p) else f"{'★ ' if p == 1 else ''}{int(p)} of {int(n)}"
            for p, n in zip(place, size, strict=True)
        ],
        index=runs.index,
    )


def run_states(runs: pd.DataFrame) -> pd.Series:
    """How each run stands, in a word where it has no rank: 'running 2/3' (epochs trained of those planned),
    'failed', 'killed'..."""
    epochs = runs["epochs"].fillna(0).astype(int).astype(str) + "/" + runs["params_epochs"].astype("Int64").astype(str)
    words = runs["status"].str.lower()
    return words.mask(runs["status"].eq("RUNNING") & runs["params_epochs"].notna(), words + " " + epochs)


SORTS = {  # the Runs table's one-click orders: the column and whether its largest value comes first
    "best first": ("test_acc", False),
    "overfit first": ("gap", False),
    "underfit first": ("avoidable_bias", False),
    "newest first": ("start", False),
}


def sorted_runs(runs: pd.DataFrame, order: str) -> pd.DataFrame:
    """The runs in one of SORTS' orders, runs without the value last."""
    column, ascending = SORTS[order]
    return runs.sort_values(column, ascending=ascending, na_position="last", kind="stable")


UNGROUPED = "run:"  # the group key of a run without a config group: the run alone


def group_key(runs: pd.DataFrame) -> pd.Series:
    """Each run's config group; a run with none (another tool's) is a group of its own."""
    return runs["config_group"].where(runs["config_group"].astype(bool), UNGROUPED + runs["run_id"])


GROUP_COLUMNS = [
    "group",
    "model",
    "settings",
    "dataset",
    "runs",
    "seeds",
    "test_acc_mean",
    "test_acc_std",
    "test_acc_low",
    "test_acc_high",
    "best_val_acc_mean",
    "best_val_acc_std",
    "run_ids",
]


def group_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per config group: the settings that tell it from its model's other groups, how many runs it has
    (finished with a test accuracy: `seeds`), and the mean, standard deviation and 95% interval over them of test
    accuracy (the t interval of the mean; for a group of one, its run's Wilson interval), and the mean ± std of
    best validation accuracy."""
    scored = runs["status"].eq("FINISHED") & runs["test_acc"].notna()
    wilson = with_test_intervals(runs)
    keyed = runs.assign(
        key=group_key(runs),
        test=runs["test_acc"].where(scored),
        val=runs["best_val_acc"].where(scored),
        wilson_low=wilson["test_acc_low"].where(scored),
        wilson_high=wilson["test_acc_high"].where(scored),
    )
    groups = keyed.groupby("key", sort=False).agg(
        model=("model", "first"),
        dataset=("dataset", "first"),
        config=("config", "first"),
        runs=("run_id", "size"),
        seeds=("test", "count"),
        test_acc_mean=("test", "mean"),
        test_acc_std=("test", "std"),
        best_val_acc_mean=("val", "mean"),
        best_val_acc_std=("val", "std"),
        wilson_low=("wilson_low", "max"),
        wilson_high=("wilson_high", "max"),
        run_ids=("run_id", list),
    )
    low, high = stats.t_bounds(
        groups["test_acc_mean"].to_numpy(),
        groups["test_acc_std"].to_numpy(),
        groups["seeds"].to_numpy(),
        bounds=(0.0, 1.0),
    )
    alone = groups["seeds"] == 1
    groups["test_acc_low"], groups["test_acc_high"] = (
        np.where(alone, groups["wilson_low"], low),
        np.where(alone, groups["wilson_high"], high),
    )
    groups["settings"] = telling_settings(groups["config"], groups["model"])
    groups["group"] = groups.index.where(~groups.index.str.startswith(UNGROUPED), "")
    return groups.reset_index(drop=True)[GROUP_COLUMNS]


def partly_selected(run_id_lists, selection: list[str]) -> list[str]:
    """'1 of 3' for each group of which only some runs are selected (its row cannot show a tick), else ''."""
    chosen = set(selection)
    counts = [(sum(run_id in chosen for run_id in ids), len(ids)) for ids in run_id_lists]
    return [f"{k} of {n}" if 0 < k < n else "" for k, n in counts]


def telling_settings(configs: pd.Series, models: pd.Series) -> pd.Series:
    """Each group's settings that differ among the groups of its model (seed, model and dataset aside, and a value
    that follows another differing setting, such as train_eval_size capped by train_size), as 'train_size=3200,
    lr=0.01': what tells three lenet5 groups apart."""
    told = pd.Series("", index=configs.index)
    for members in models.groupby(models, sort=False).groups.values():
        mine = configs[members][configs[members].map(bool)]  # another tool's run has no settings to set apart
        names = sorted({name for config in mine for name in config} - {"seed", "model", "dataset"})
        varying = [n for n in names if mine.map(lambda c, n=n: c.get(n)).nunique(dropna=False) > 1]
        varying = [n for n in varying if SETTINGS.get(n) is None or SETTINGS[n].logged_from not in varying]
        told[mine.index] = [", ".join(f"{n}={c.get(n, '—')}" for n in varying) for c in mine]
    return told


def group_label(model: str, key: str) -> str:
    """How every page names a config group: its model and hash."""
    return f"{model} [{key[:10]}]"


def unselected_seeds(runs: pd.DataFrame, run_ids: list[str]) -> dict[str, tuple[int, int]]:
    """{group label: (runs selected, runs in the store)} for each config group of which run_ids hold only some runs:
    its band averages the selected ones alone."""
    keys = group_key(runs).set_axis(runs["run_id"])
    sizes, models = keys.value_counts(), runs.set_index("run_id")["model"]
    chosen = keys[run_ids].value_counts(sort=False)
    first = {key: run_id for run_id, key in keys[run_ids].items()}
    return {
        group_label(models[first[key]], key): (int(n), int(sizes[key])) for key, n in chosen.items() if n < sizes[key]
    }


def groups_by(runs: pd.DataFrame, run_ids: list[str], by: str | None) -> dict[str, list[str]]:
    """The runs split into labelled groups: by config group (`by` 'configuration'), by the value of one
    setting (any other `by`), or one group per run (None)."""
    chosen = runs.set_index("run_id").loc[run_ids].reset_index()
    if by is None:
        return {label: [run_id] for run_id, label in run_labels(runs, run_ids).items()}
    if by == "configuration":
        keys = group_key(chosen)
        labels = {key: group_label(m, key) for key, m in zip(keys, chosen["model"], strict=True)}
    else:
        keys = chosen["config"].map(lambda c: f"{by}={c.get(by, '?')}")
        labels = {key: key for key in keys}
    return {labels[key]: list(members["run_id"]) for key, members in chosen.groupby(keys, sort=False)}


BAND_COLUMNS = ["group", "metric", "step", "mean", "low", "high", "n"]
RATES = {
    str(m)
    for m in (Metric.TRAIN_ACC, Metric.VAL_ACC, Metric.TEST_ACC, Metric.BEST_VAL_ACC, Metric.BIAS, Metric.VAL_ECE)
}
NON_NEGATIVE = {
    str(m) for m in (Metric.TRAIN_LOSS, Metric.VAL_LOSS, Metric.TEST_LOSS, Metric.EPOCH_SECONDS, Metric.SAMPLES_PER_S)
}


def value_range(metric: str) -> tuple[float, float] | None:
    """Where a metric's values lie (a rate in [0, 1], a loss or a time at least 0; a gap such as variance has either
    sign): its band over seeds is cut to it, so that two seeds' wide t interval never draws a negative loss."""
    if metric in RATES:
        return 0.0, 1.0
    return (0.0, math.inf) if metric in NON_NEGATIVE else None


def bands(metrics: pd.DataFrame, groups: dict[str, list[str]]) -> pd.DataFrame:
    """Per group, metric and step: the mean over the group's runs and its 95% t interval (none for one run),
    within the metric's value_range."""
    rows = []
    for label, run_ids in groups.items():
        members = metrics[metrics["run_id"].isin(run_ids)]
        for (metric, step), values in members.groupby(["metric", "step"])["value"]:
            found = stats.mean_interval(values, bounds=value_range(metric))
            rows.append((label, metric, step, found.estimate, found.low, found.high, found.n))
    return pd.DataFrame(rows, columns=BAND_COLUMNS)


def smoothed(metrics: pd.DataFrame, weight: float) -> pd.DataFrame:
    """Each run's curve (long points) smoothed by an exponential moving average with the given weight of the
    past (0: raw), debiased at the start as TensorBoard's smoothing is (pandas' adjust=True)."""
    if weight <= 0:
        return metrics
    ordered = metrics.sort_values(["run_id", "metric", "step"])
    values = ordered.groupby(["run_id", "metric"])["value"].transform(lambda v: v.ewm(alpha=1 - weight).mean())
    return ordered.assign(value=values)


def which_is_better_sides(runs: pd.DataFrame, groups: dict[str, list[str]], predictions: dict[str, dict]) -> dict:
    """A comparison side (core.comparison.Side) per labelled group of runs, from their finished runs;
    `predictions` holds the test predictions of single runs that logged them."""
    table = runs.set_index("run_id")
    sides = {}
    for label, run_ids in groups.items():
        scored = table.loc[run_ids]
        scored = scored[scored["status"].eq("FINISHED") & scored["test_acc"].notna()]
        ids = tuple(scored.index)
        sides[label] = Side(
            label,
            ids,
            tuple(scored["test_acc"]),
            tuple(int(n) if pd.notna(n) else 0 for n in scored["test_size"]),
            predictions.get(ids[0]) if len(ids) == 1 else None,
        )
    return sides


def setting_differences(runs: pd.DataFrame, a: list[str], b: list[str]) -> list[str]:
    """The settings (seed aside) in which the first runs of two sides differ, as 'name (A value vs B value)'."""
    configs = runs.set_index("run_id")["config"]
    first_a, first_b = configs[a[0]], configs[b[0]]
    names = sorted((set(first_a) | set(first_b)) - {"seed"})
    return [
        f"{name} ({first_a.get(name, '—')} vs {first_b.get(name, '—')})"
        for name in names
        if first_a.get(name) != first_b.get(name)
    ]


def closest_runs(runs: pd.DataFrame, run_id: str, candidates: list[str]) -> list[str]:
    """The candidates, most comparable to run_id first: its other seeds (same config group), then runs on the same
    dataset and test images, the same model, and the fewest differing settings; ties keep the table's order."""
    table = runs.set_index("run_id")
    me = table.loc[run_id]

    def distance(other: str) -> tuple:
        row = table.loc[other]
        differing = sum(
            me["config"].get(name) != row["config"].get(name) for name in set(me["config"]) | set(row["config"])
        )
        return (
            not (me["config_group"] and row["config_group"] == me["config_group"]),
            row["dataset"] != me["dataset"],
            row["test_size"] != me["test_size"],
            row["model"] != me["model"],
            differing,
        )

    return sorted(candidates, key=distance)


STORY = {HIGH_BIAS: "underfits", HIGH_VARIANCE: "overfits", GOOD_FIT: "fits well"}


def story_runs(runs: pd.DataFrame) -> dict[str, str]:
    """The newest finished run diagnosed high bias, high variance and good fit: {diagnosis: run id}, for the
    diagnoses some run has; what the dashboard exists to show side by side. A run advice trained comes after the
    others: the story is of the runs it follows."""
    finished = runs[runs["status"] == "FINISHED"]
    follow_up = finished["advice_of"].astype(bool) if "advice_of" in finished else False
    finished = finished.assign(follow_up=follow_up).sort_values(["follow_up", "start"], ascending=[True, False])
    found = {}
    for diagnosis in STORY:
        matching = finished[finished["diagnosis"] == diagnosis]
        if len(matching):
            found[diagnosis] = matching["run_id"].iloc[0]
    return found


def story_description(found: dict[str, str]) -> str:
    """What the inspector's story shows, naming the kind of fit the store has no firm example of (a page that
    promised a good fit and showed two runs would leave the user looking for the third)."""
    shown = ", ".join(STORY[diagnosis] for diagnosis in STORY if diagnosis in found)
    missing = " or ".join(STORY[diagnosis] for diagnosis in STORY if diagnosis not in found)
    text = f"the store's newest finished run of each kind side by side: {shown}"
    return f"{text} (no run {missing} by a firm diagnosis yet)" if missing else text


def seeded_groups(runs: pd.DataFrame, count: int = 2) -> list[list[str]]:
    """The run ids of up to `count` config groups with the most finished seeds (at least two each)."""
    groups = group_table(runs)
    groups = groups[(groups["seeds"] >= 2) & groups["group"].astype(bool)].sort_values("seeds", ascending=False)
    return list(groups["run_ids"].head(count))


def comparability_warnings(runs: pd.DataFrame, run_ids: list[str]) -> list[str]:
    """What makes the selected runs' numbers unfair to compare: different datasets, test sets of different sizes,
    validation sets of different sizes, or metrics read with different conventions (other tools)."""
    chosen = runs.set_index("run_id").loc[run_ids]
    warnings = []
    if chosen["dataset"].nunique() > 1:
        warnings.append(
            f"The selected runs are on different datasets ({', '.join(sorted(chosen['dataset'].unique()))})"
            ": their accuracies do not compare."
        )
    for column, what in (("test_size", "test"), ("val_size", "validation")):
        sizes = chosen[column].dropna()
        if sizes.nunique() > 1:
            warnings.append(
                f"The selected runs' {what} accuracies are measured on {sizes.min():,.0f} to "
                f"{sizes.max():,.0f} {what} images: one measured on fewer images is less certain (Runs "
                "shows each test accuracy's 95% interval)."
            )
    if chosen["convention"].nunique() > 1:
        warnings.append(
            "The selected runs were logged by different tools ("
            + ", ".join(sorted(chosen["convention"].unique()))
            + "), which may measure train accuracy "
            "differently."
        )
    return warnings

"""Pure DataFrame computations behind the pages: filtering, histories, series, param diffs, sweeps.

Derived numbers (best epoch, gap, diagnosis) are experiments.diagnosis's, never computed here.
"""
import json

import numpy as np
import pandas as pd

from experiments.diagnosis import bias_variance, history_of
from experiments.schema import Metric, Value
from experiments.settings import SETTINGS


def filter_runs(runs: pd.DataFrame, models=(), datasets=(), statuses=(), suites=(), text: str = "") -> pd.DataFrame:
    """Rows matching every non-empty filter; `text` is a case-insensitive substring of 'param=value' pairs."""
    keep = pd.Series(True, index=runs.index)
    for column, chosen in (("model", models), ("dataset", datasets), ("status", statuses), ("suite", suites)):
        if chosen:
            keep &= runs[column].isin(chosen)
    if text:
        keep &= runs["params_text"].str.contains(text, case=False, regex=False) | \
            runs["run_name"].str.contains(text, case=False, regex=False)
    return runs[keep]


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
        rows.append({
            "run": row["run_name"], "model": row["model"], "epochs": len(history),
            "final val acc": last.get(Metric.VAL_ACC, np.nan), "best val acc": row["best_val_acc"],
            "best epoch": row["best_epoch"], "test acc": row["test_acc"],
            "final gap": last.get(Metric.VARIANCE, np.nan), "params": row["params_total"],
            "s / epoch": history[Metric.EPOCH_SECONDS].mean() if Metric.EPOCH_SECONDS in history else np.nan,
        })
    return pd.DataFrame(rows)


def with_bias_variance(history: pd.DataFrame, best_error: float) -> pd.DataFrame:
    """The history with bias, variance and avoidable bias derived from the accuracies where a run lacks them."""
    derived = pd.DataFrame(bias_variance(history[Metric.TRAIN_ACC], history[Metric.VAL_ACC], best_error))
    return history.combine_first(derived)


def series_over(runs: pd.DataFrame, setting: str, min_points: int = 2) -> list[list[str]]:
    """Groups of finished runs that differ only in `setting` (every other setting that defines the experiment
    equal), with at least `min_points` distinct values of it, whichever suite or sweep made them."""
    follows = {name for name, s in SETTINGS.items() if s.logged_from == setting}  # logged values that move with it
    finished = runs[(runs["status"] == "FINISHED") & runs["config"].map(lambda c: setting in c)]
    others = finished["config"].map(lambda c: tuple(sorted((k, v) for k, v in c.items()
                                                           if k != setting and k not in follows)))
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
        rows.append({"run_id": run_id, setting: float(values[run_id][setting]),
                     "train_error": 1 - last[Metric.TRAIN_ACC], "val_error": 1 - last[Metric.VAL_ACC]})
    return pd.DataFrame(rows, columns=["run_id", setting, "train_error", "val_error"]).sort_values(setting)


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


def param_importances(trials: pd.DataFrame, distributions: dict) -> dict[str, float]:
    """Optuna's fANOVA importance of each searched parameter for best_val_acc, from the complete trials;
    empty when fewer than two complete trials differ in their objective."""
    import optuna
    from optuna.distributions import json_to_distribution

    complete = trials[(trials["state"] == Value.TRIAL_COMPLETE) & trials["best_val_acc"].notna()
                      & trials["params"].map(lambda p: set(p) == set(distributions))]
    if len(complete) < 2 or complete["best_val_acc"].nunique() < 2:
        return {}
    space = {name: json_to_distribution(json.dumps(d)) for name, d in distributions.items()}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for params, value in zip(complete["params"], complete["best_val_acc"], strict=True):
        study.add_trial(optuna.trial.create_trial(params=params, distributions=space, value=value))
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    return optuna.importance.get_param_importances(study, evaluator=evaluator)

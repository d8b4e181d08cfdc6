"""Metric conventions: how runs logged by other tools name their per-epoch metrics, mapped onto this
schema's roles (train/val loss and accuracy, test loss and accuracy, epoch), so the dashboard reads,
draws and diagnoses any MLflow run, not only its own runner's.

Built in, tried in this order: PyTorch Lightning (train_acc/val_acc with an `epoch` metric, steps are
global steps), the Hugging Face Trainer (eval_* with a float `epoch` metric), Keras autolog
(loss/accuracy/val_loss/val_accuracy, one point per epoch from step 0), and this project's own. A
`conventions.toml` beside the store's database (or the file named by CNN_CONVENTIONS) adds the user's
own, tried first; see docs/conventions.md. Pure functions: no Streamlit, no MLflow calls.
"""

import math
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd

from core.diagnosis import bias_variance
from core.schema import Metric

ROLES = (Metric.TRAIN_LOSS, Metric.TRAIN_ACC, Metric.VAL_LOSS, Metric.VAL_ACC, Metric.TEST_LOSS, Metric.TEST_ACC)
DERIVED = (Metric.BIAS, Metric.VARIANCE)  # per epoch from the two accuracies (avoidable bias needs the dataset)
CONVENTIONS_FILE = "conventions.toml"


class ConventionError(ValueError):
    """A user conventions file that cannot be used: one line naming the file and what is wrong."""


@dataclass(frozen=True)
class Convention:
    """One way of naming metrics. `metrics` maps a schema role to the names it may have, first present wins.
    Epochs come from the step (the first epoch at `first_epoch_step`) or, when `epoch_metric` is set, from
    that metric's value at the same step, plus `epoch_offset`, rounded up; a metric logged several times in
    one epoch keeps its last value."""

    name: str
    detect: tuple[str, ...]  # metrics that must all be present for a run to follow this convention
    metrics: dict = field(default_factory=dict)
    epoch_metric: str | None = None
    epoch_offset: float = 0.0
    first_epoch_step: int = 1
    best_error: float | None = None  # the best achievable error, for runs that do not say their dataset
    native: bool = False  # this project's runner: its metrics need no translation

    def matches(self, logged: set[str]) -> bool:
        return set(self.detect) <= logged

    def names(self, logged: set[str]) -> dict[str, str]:
        """{schema role: the name this run logged it under} for the roles it has."""
        found = {}
        for role in ROLES:
            for candidate in self.metrics.get(str(role), (str(role),) if self.native else ()):
                if candidate in logged:
                    found[str(role)] = candidate
                    break
        return found

    def words(self, logged: set[str]) -> str:
        """What was read as what, e.g. 'accuracy as train_acc, val_accuracy as val_acc'."""
        return ", ".join(f"{foreign} as {role}" for role, foreign in self.names(logged).items() if foreign != role)


OURS = Convention("this project's runner", detect=(), native=True)
BUILT_IN = (
    Convention(
        "PyTorch Lightning",
        detect=("epoch", "val_loss"),
        epoch_metric="epoch",
        epoch_offset=1,
        metrics={
            "train_loss": ("train_loss_epoch", "train_loss"),
            "train_acc": ("train_acc_epoch", "train_acc"),
            "val_loss": ("val_loss",),
            "val_acc": ("val_acc",),
            "test_loss": ("test_loss",),
            "test_acc": ("test_acc",),
        },
    ),
    Convention(
        "Hugging Face Trainer",
        detect=("epoch", "eval_loss"),
        epoch_metric="epoch",
        metrics={
            "train_loss": ("loss",),
            "val_loss": ("eval_loss",),
            "val_acc": ("eval_accuracy",),
            "test_loss": ("test_loss",),
            "test_acc": ("test_accuracy",),
        },
    ),
    Convention(
        "Keras autolog",
        detect=("val_accuracy", "accuracy"),
        first_epoch_step=0,
        metrics={
            "train_loss": ("loss",),
            "train_acc": ("accuracy",),
            "val_loss": ("val_loss",),
            "val_acc": ("val_accuracy",),
            "test_loss": ("test_loss",),
            "test_acc": ("test_accuracy",),
        },
    ),
)


def detect(logged: set[str], user: tuple[Convention, ...] = ()) -> Convention:
    """The convention a run follows, from the names of the metrics it logged: the user's first, then the built-in
    ones (this project's runs log no `epoch` metric, so they are never taken for Lightning's), else this
    project's own."""
    for convention in (*user, *BUILT_IN):
        if convention.matches(logged) and convention.names(logged):
            return convention
    return OURS


def by_epoch(points: pd.DataFrame, convention: Convention) -> pd.DataFrame:
    """One run's points of its own names (metric, step, value; the epoch metric among them when it has one)
    as per-epoch points: step becomes the epoch, 1-based, the last value of each epoch kept."""
    if convention.epoch_metric is None:
        frame = points.assign(step=points["step"] - convention.first_epoch_step + 1)
    else:
        epochs = (
            points[points["metric"] == convention.epoch_metric][["step", "value"]]
            .drop_duplicates("step", keep="last")
            .sort_values("step")
            .rename(columns={"value": "epoch"})
        )
        frame = points[points["metric"] != convention.epoch_metric].sort_values("step")
        if epochs.empty or frame.empty:
            return frame.iloc[0:0]
        frame = pd.merge_asof(frame, epochs, on="step", direction="backward").dropna(subset=["epoch"])
        epoch = (frame["epoch"] + convention.epoch_offset).map(lambda e: max(1, math.ceil(e - 1e-9)))
        frame = frame.assign(step=epoch).drop(columns="epoch")
    return frame.drop_duplicates(["metric", "step"], keep="last")


def translate(
    points: pd.DataFrame, run_id: str, convention: Convention, logged: set[str], roles: list[str]
) -> pd.DataFrame:
    """A foreign run's points (run_id, metric, step, value) as this schema's: its names mapped to `roles`,
    steps turned into 1-based epochs."""
    names = {foreign: role for role, foreign in convention.names(logged).items() if role in roles}
    own = points[points["metric"].isin([*names, convention.epoch_metric])]
    frame = by_epoch(own, convention)
    return frame.assign(metric=frame["metric"].map(names), run_id=run_id)[["run_id", "metric", "step", "value"]]


def roles_to_read(wanted: list[str]) -> list[str]:
    """The roles a foreign run is read for, to give `wanted`: the accuracies too when a derived figure is wanted."""
    accuracies = [Metric.TRAIN_ACC, Metric.VAL_ACC] if set(map(str, DERIVED)) & set(wanted) else []
    return list(dict.fromkeys([*wanted, *map(str, accuracies)]))


def with_derived(points: pd.DataFrame, wanted: list[str]) -> pd.DataFrame:
    """A foreign run's per-epoch points (run_id, metric, step, value) with the DERIVED figures of `wanted` added
    at every epoch that has both accuracies, by the runner's own formulas, and only `wanted` metrics kept."""
    derived = [str(m) for m in DERIVED if str(m) in wanted]
    accuracies = [str(Metric.TRAIN_ACC), str(Metric.VAL_ACC)]
    if derived and set(accuracies) <= set(points["metric"]):
        wide = points.pivot_table(index=["run_id", "step"], columns="metric", values="value", aggfunc="last")
        wide = wide.dropna(subset=accuracies)
        figures = bias_variance(wide[accuracies[0]], wide[accuracies[1]], best_error=0.0)
        added = (
            pd.DataFrame({m: figures[m] for m in derived})
            .reset_index()
            .melt(id_vars=["run_id", "step"], var_name="metric", value_name="value")
        )
        points = pd.concat([points, added], ignore_index=True)
    return points[points["metric"].isin(wanted)]


def load_user_conventions(path: Path | None) -> tuple[Convention, ...]:
    """The user's conventions from a TOML file ([[convention]] tables), or none when there is no file."""
    if path is None or not path.exists():
        return ()
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConventionError(f"{path}: not valid TOML ({err})") from err
    allowed = {f.name for f in fields(Convention)} - {"metrics", "native"} | {str(r) for r in ROLES}
    conventions = []
    for number, table in enumerate(data.get("convention", []), start=1):
        unknown = sorted(set(table) - allowed)
        if unknown or "name" not in table or "detect" not in table:
            raise ConventionError(
                f"{path}: convention {number} needs name and detect"
                + (f"; unknown keys {', '.join(unknown)}" if unknown else "")
                + f"; allowed: {', '.join(sorted(allowed))}"
            )
        metrics = {role: as_names(table.pop(role)) for role in list(table) if role in map(str, ROLES)}
        conventions.append(Convention(**{**table, "detect": as_names(table["detect"]), "metrics": metrics}))
    return tuple(conventions)


def as_names(value) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def user_conventions_path(database: Path | None) -> Path | None:
    """CNN_CONVENTIONS if set, else conventions.toml beside an embedded store's database."""
    named = os.environ.get("CNN_CONVENTIONS")
    if named:
        return Path(named)
    return database.parent / CONVENTIONS_FILE if database else None

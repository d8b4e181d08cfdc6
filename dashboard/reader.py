"""The dashboard's one read layer: MLflow -> pandas, cached with st.cache_data.

Each `fetch_*` function is plain (client in, DataFrame out) so benchmarks and tests can call it cold;
each `load_*` wrapper caches it per tracking URI. Nothing here writes to the store.
"""

import functools
import json
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pandas as pd
import streamlit as st
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from core.datasets import images_sha256, load_split
from core.diagnosis import Yardstick, best_epoch, best_error_for, verdicts
from core.follow_ups import Judgement, judgements
from core.liveness import lost_since, now_ms
from core.schema import Metric, Param, Tag, Value
from core.settings import EXPERIMENT_SETTINGS, config_group, dataset_label, model_label, unset
from core.store import (
    Credentials,
    StoreError,
    artifact_root,
    env_credentials,
    is_server,
    probe_server,
    search_all,
    sqlite_path,
    store_problem,
    tracking_uri,
)
from dashboard import state
from dashboard.bulk import (
    POINT_COLUMNS,
    Snapshot,
    StoredRun,
    experiment_names,
    metric_names,
    metric_points,
    read_changes,
    runs_by_id,
    sql_store,
    stored_runs,
)
from dashboard.conventions import (
    Convention,
    ConventionError,
    detect,
    load_user_conventions,
    roles_to_read,
    translate,
    user_conventions_path,
    with_derived,
)
from dashboard.identity import signed_in_client
from dashboard.launcher import Advice, read_advice

READ_SECONDS = "read_seconds"  # load_runs' attrs: how long the read behind a (cached) frame took
CACHE_SECONDS = 30  # runs change while training; pages that show running runs refresh sooner
RUN_COLUMNS = [
    "run_id",
    "experiment",
    "run_name",
    "model",
    "dataset",
    "convention",
    "reading",
    "status",
    "start",
    "duration_s",
    "epochs",
    "params_epochs",
    "test_acc",
    "best_val_acc",
    "best_epoch",
    "gap",
    "avoidable_bias",
    "diagnosis",
    "params_total",
    "suite",
    "sweep",
    "params",
    "yardstick",
    "config",
    "config_group",
    "advice_of",
    "train_size",
    "test_size",
    "val_size",
    "diverged",
]
SIZE_COLUMNS = ["train_size", "test_size", "val_size"]  # image counts (floats: NaN where a run did not log one)
SWEEP_COLUMNS = ["run_id", "sweep", "status", "start", "method", "pruner", "planned", "best_value"]
TRIAL_COLUMNS = [
    "run_id",
    "run_name",
    "trial",
    "state",
    "status",
    "best_val_acc",
    "test_acc",
    "epochs_trained",
    "params",
]


@dataclass(frozen=True)
class Store:
    """What the cached reads are keyed by: the store and who reads it (a server shows each user their own
    experiments, so one user's cached answer must never serve another). A signed-in session's credentials ride
    along, out of every cache key (BY_IDENTITY) and never printed; without them MLflow reads the environment's."""

    uri: str
    user: str | None
    signed_in: Credentials | None = field(default=None, repr=False, compare=False)

    def identity(self) -> tuple[str, str | None]:
        return self.uri, self.user


BY_IDENTITY = {Store: Store.identity}  # hash_funcs of every cache keyed by a Store: no password in any key


PROBE_SECONDS = 30  # a server that answered, and took the user's password, is not asked again for this long
probed: dict[tuple[str, int], float] = {}  # when each store and user was last probed (time.monotonic)


def client_for(store: Store) -> MlflowClient:
    """A client on the store as its user; a server is probed first (and the user's credentials checked), so an
    unreachable one fails in seconds. Not before every read: behind MLflow's auth app each request pays for a
    password hash (about 0.3 s here), and a page makes several reads."""
    who = (store.uri, hash(store.signed_in or env_credentials()))  # a password changed is probed again
    if is_server(store.uri) and time.monotonic() - probed.get(who, -PROBE_SECONDS) >= PROBE_SECONDS:
        probe_server(store.uri, signed_in=store.signed_in)
        probed[who] = time.monotonic()
    return MlflowClient(store.uri) if store.signed_in is None else signed_in_client(store.uri, store.signed_in)


@dataclass(frozen=True)
class Reading:
    """How to read one run's metrics: the convention it follows and the names it logged."""

    convention: Convention
    logged: frozenset

    @classmethod
    def of(cls, metric_names, user: tuple[Convention, ...]) -> "Reading":
        logged = frozenset(metric_names)
        return cls(detect(logged, user), logged)


def metric_frame(
    client: MlflowClient, run_ids: list[str], names: list[str], readings: dict[str, Reading] | None = None
) -> pd.DataFrame:
    """Every point of the schema metrics `names` for `run_ids` (run_id, metric, step = epoch, value), whatever
    names each run logged them under (dashboard.conventions); a step logged twice (e.g. a resumed run) keeps its
    last value. `readings` say how to read each run; looked up when not given."""
    readings = readings if readings is not None else readings_of(client, run_ids)
    native = [r for r in run_ids if r not in readings or readings[r].convention.native]
    frames = [metric_points(client, native, names)] if native else []
    roles = roles_to_read(names)  # bias and variance, which foreign runs do not log, come from the accuracies
    for run_id in set(run_ids) - set(native):
        reading = readings[run_id]
        foreign = [n for role, n in reading.convention.names(reading.logged).items() if role in roles]
        wanted = foreign + ([reading.convention.epoch_metric] if reading.convention.epoch_metric else [])
        if foreign:
            translated = translate(
                metric_points(client, [run_id], wanted), run_id, reading.convention, reading.logged, roles
            )
            frames.append(with_derived(translated, names))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=POINT_COLUMNS)
    frame = frame.astype({"step": int, "value": float}) if len(frame) else frame
    return frame.drop_duplicates(["run_id", "metric", "step"], keep="last").sort_values(["run_id", "metric", "step"])


def user_conventions(uri: str) -> tuple[Convention, ...]:
    """The user's own conventions for this store (conventions.toml beside its database, or CNN_CONVENTIONS)."""
    try:
        return load_user_conventions(user_conventions_path(sqlite_path(uri)))
    except ConventionError as err:
        raise StoreError(str(err)) from err


def readings_of(client: MlflowClient, run_ids: list[str]) -> dict[str, Reading]:
    """How to read each of these runs, from the metric names it logged."""
    user = user_conventions(client.tracking_uri)
    return {run_id: Reading.of(names, user) for run_id, names in metric_names(client, run_ids).items()}


def status_of(status: str, lifecycle_stage: str, tags: dict) -> str:
    """MLflow's status, except DELETED for deleted runs and LOST for RUNNING runs whose heartbeat stopped."""
    if lifecycle_stage == "deleted":
        return "DELETED"
    return "LOST" if lost_since(status, tags, now_ms()) is not None else status


def count(value) -> int | None:
    """A logged size (a param string) as an int; None when absent or not a whole number."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


FOREIGN_MODEL_PARAMS = ("model_name", "_name_or_path", "model_type", "architectures")  # Hugging Face and others
UNKNOWN = "unknown"


def model_name(params: dict) -> str:
    """The model: our `model` param, else what another tool logged about it (Keras runs: read later from the
    summary artifact autolog writes), else unknown."""
    if Param.MODEL in params:
        return model_label(params[Param.MODEL])
    found = next((params[name] for name in FOREIGN_MODEL_PARAMS if params.get(name) not in (None, "", "None")), None)
    return found or UNKNOWN


def dataset_name(run: StoredRun) -> str:
    """Our `dataset` param, else a `dataset` tag, else the name of a dataset MLflow recorded as the run's input
    (autolog names arrays it cannot name "dataset": that says nothing)."""
    found = run.params.get(Param.DATASET) or run.tags.get("dataset")
    named = [name for name in run.inputs if name not in ("", "dataset")]
    return dataset_label(found) if found else (named[0] if named else UNKNOWN)


def number(value) -> float:
    """A logged param (a string) as a number; NaN when absent or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def run_row(run: StoredRun, experiments: dict, reading: Reading) -> dict:
    """A run's row as logged; `derive` marks the runs whose verdict (best epoch, diagnosis) must come from
    their history: running, stopped or foreign runs, which did not log one. Times stay in ms (see fetch_runs)."""
    params, metrics, tags = run.params, run.metrics, run.tags
    logged = {Metric.BEST_EPOCH, Metric.BEST_VAL_ACC, Metric.EPOCHS_TRAINED} <= set(metrics) and Tag.DIAGNOSIS in tags
    return {
        "run_id": run.run_id,
        "experiment": experiments.get(run.experiment_id, run.experiment_id),
        "run_name": run.name or run.run_id[:8],
        "model": model_name(params),
        "dataset": dataset_name(run),
        "convention": reading.convention.name,
        "reading": reading,
        "status": status_of(run.status, run.lifecycle_stage, tags),
        "start": run.start_time,
        "end": run.end_time,
        "params_epochs": number(params.get(Param.EPOCHS)),
        "epochs": metrics.get(Metric.EPOCHS_TRAINED, np.nan),
        "best_val_acc": metrics.get(Metric.BEST_VAL_ACC, np.nan),
        "best_epoch": metrics.get(Metric.BEST_EPOCH, np.nan),
        "test_acc": metrics.get(reading.convention.names(reading.logged).get(Metric.TEST_ACC), np.nan),
        "gap": metrics.get(Metric.VARIANCE, np.nan),
        "avoidable_bias": metrics.get(Metric.AVOIDABLE_BIAS, np.nan),
        "diagnosis": tags.get(Tag.DIAGNOSIS, ""),
        "params_total": metrics.get(Metric.PARAMS_TOTAL, np.nan),
        "suite": tags.get(Tag.SUITE, ""),
        "sweep": tags.get(Tag.SWEEP, ""),
        "params": params,
        "yardstick": Yardstick(
            best_error_for(params.get(Param.DATASET), params.get(Param.BEST_ERROR, reading.convention.best_error)),
            count(params.get(Param.TRAIN_EVAL_SIZE)),
            count(params.get(Param.VAL_SIZE)),
        ),
        "derive": not logged,
        "metrics_key": hash((run.status, *((k, repr(v)) for k, v in sorted(metrics.items())))),  # moves as it logs
        "config": {
            name: params[name] for name in EXPERIMENT_SETTINGS if name in params and not unset(name, params[name])
        },
        "config_group": tags.get(Tag.CONFIG_GROUP) or config_group(params),
        "advice_of": tags.get(Tag.ADVICE_OF, ""),
        "train_size": count(params.get(Param.TRAIN_SIZE)),
        "test_size": count(params.get(Param.TEST_SIZE)),
        "val_size": count(params.get(Param.VAL_SIZE)),
        "diverged": Tag.DIVERGED_AT_STEP in tags,
    }


def with_times(table: pd.DataFrame) -> pd.DataFrame:
    """Start as a UTC timestamp and duration in seconds (running runs: until now), converted column-wise."""
    end = table["end"].fillna(now_ms())
    return table.assign(
        start=pd.to_datetime(table["start"], unit="ms", utc=True), duration_s=(end - table["start"]) / 1000
    ).drop(columns="end")


DERIVED = ["epochs", "best_epoch", "best_val_acc", "gap", "avoidable_bias", "diagnosis"]


def with_derived_verdicts(client: MlflowClient, table: pd.DataFrame, known: dict | None = None) -> pd.DataFrame:
    """Fill epochs, best epoch, best val acc, gap and diagnosis of the runs that did not log them, from their
    train/val accuracy histories, through core.diagnosis.verdict, as the runner does. `known` keeps what was
    derived, by run and its latest metrics: a run whose metrics have not moved is not read again."""
    known = {} if known is None else known
    wanted = table.loc[table["derive"], "metrics_key"].to_dict()
    rows = {run_id: known[run_id][1] for run_id, key in wanted.items() if known.get(run_id, (None,))[0] == key}
    unknown = table.loc[[run_id for run_id in wanted if run_id not in rows], "yardstick"].to_dict()
    if unknown:
        rows |= derived_rows(client, table, unknown)
        known.update({run_id: (wanted[run_id], rows[run_id]) for run_id in unknown if run_id in rows})
    if not rows:
        return table
    derived = pd.DataFrame.from_dict(rows, orient="index", columns=DERIVED)
    table = table.copy()
    table.loc[derived.index, derived.columns] = derived
    return table


def derived_rows(client: MlflowClient, table: pd.DataFrame, unknown: dict) -> dict[str, dict]:
    """The derived columns of the `unknown` runs (run id -> yardstick) that logged an accuracy history."""
    diverged = set(table.index[table["diverged"]])
    points = metric_frame(
        client, list(unknown), [Metric.TRAIN_ACC, Metric.VAL_ACC], table.loc[list(unknown), "reading"].to_dict()
    )
    judged = verdicts(points, unknown, diverged)
    rows = {
        run_id: dict(
            zip(
                DERIVED,
                (v.epochs_trained, v.best_epoch, v.best_val_acc, v.gap, v.avoidable_bias, v.diagnosis),
                strict=True,
            )
        )
        for run_id, v in judged.items()
    }
    val = points[points["metric"] == Metric.VAL_ACC]
    for run_id, history in val.groupby("run_id"):  # no train accuracy (e.g. Hugging Face): no gap or diagnosis
        if run_id not in rows:
            epoch, best = best_epoch(history.set_index("step")["value"])
            rows[run_id] = dict(
                zip(DERIVED, (int(history["step"].max()), epoch, best, np.nan, np.nan, ""), strict=True)
            )
    return rows


KERAS_SUMMARY = "model_summary.txt"  # what Keras autolog writes: its first line names the model
SUMMARIES_READ = 200  # at most this many runs' summaries are read for their model's name


def with_keras_model_names(client: MlflowClient, table: pd.DataFrame, known: dict | None = None) -> pd.DataFrame:
    """Runs that logged no model name but a Keras summary get the name the summary gives (`Model: "NAME"`);
    `known` keeps the names found, by run (a summary does not change)."""
    known = {} if known is None else known
    nameless = table.index[(table["model"] == UNKNOWN) & (table["convention"] == "Keras autolog")][:SUMMARIES_READ]
    if not len(nameless):
        return table
    table = table.copy()
    for run_id in nameless:
        if run_id not in known:
            summary = fetch_artifact(client, run_id, KERAS_SUMMARY).value
            found = re.search(r'Model: "([^"]+)"', summary or "")
            known[run_id] = f"{found.group(1)} (Keras)" if found else None
        if known[run_id]:
            table.loc[run_id, "model"] = known[run_id]
    return table


def fetch_runs(client: MlflowClient) -> pd.DataFrame:
    """One row per training run of every experiment (sweep parents left out), with its verdict."""
    try:
        runs = stored_runs(client)
    except Exception as err:  # an unreachable, unreadable or foreign store: say so, never a traceback
        raise store_problem(client.tracking_uri, err) from err
    return runs_table(client, runs)


def runs_table(
    client: MlflowClient, runs: list[StoredRun], known: dict | None = None, experiments: dict | None = None
) -> pd.DataFrame:
    """The Runs table of these runs (sweep parents left out), newest first; `known` keeps what was derived or
    read for them beyond their columns, between reads of the same store; `experiments`: names by id, if read."""
    known = {} if known is None else known
    try:
        experiments = experiment_names(client) if experiments is None else experiments
    except Exception as err:
        raise store_problem(client.tracking_uri, err) from err
    runs = [run for run in runs if run.tags.get(Tag.RUN_KIND) != Value.RUN_KIND_SWEEP]
    if not runs:
        return pd.DataFrame(columns=RUN_COLUMNS)
    user = user_conventions(client.tracking_uri)
    reading = functools.lru_cache(maxsize=None)(lambda names: Reading.of(names, user))  # runs share their names
    table = pd.DataFrame([run_row(run, experiments, reading(frozenset(run.metrics))) for run in runs])
    table[SIZE_COLUMNS] = table[SIZE_COLUMNS].astype(float)  # NaN, never None, where no run of them logged a size
    table = with_keras_model_names(client, with_times(table).set_index("run_id"), known.setdefault("keras", {}))
    table = with_derived_verdicts(client, table, known.setdefault("derived", {})).reset_index()[RUN_COLUMNS]
    return table.sort_values("start", ascending=False, ignore_index=True)  # newest first, as MLflow lists them


def read_snapshot(client: MlflowClient, before: Snapshot | None, experiments: dict[str, str]) -> Snapshot:
    """Every run of the store's `experiments`: all of them the first time, then only what changed since `before`."""
    return (
        Snapshot.of(stored_runs(client, experiments)) if before is None else read_changes(client, before, experiments)
    )


FULL_READ_SECONDS = 600  # a full read now and then takes what read_changes cannot see (a finished run's tag edited)


class RunsSource:
    """The Runs table of one store as one identity reads it, kept between reads and shared by every session
    that reads as that identity: after the first read of a tracking server, each refresh reads only what
    changed (benchmarks/dashboard_read.py). MLflow's SQL store is read whole each time: its column queries
    take about a second for 10,000 runs."""

    def __init__(self):
        self.lock = threading.Lock()
        self.snapshot: Snapshot | None = None
        self.full_at = 0.0
        self.known: dict = {}

    def read(self, store: Store) -> pd.DataFrame:
        """The runs as `store`'s user sees them (the one this source is kept for: runs_source)."""
        with self.lock:
            client = client_for(store)
            if time.monotonic() - self.full_at > FULL_READ_SECONDS:
                self.snapshot, self.known, self.full_at = None, {}, time.monotonic()
            if sql_store(client) is not None:  # its five column queries read every run faster than a search
                self.snapshot = None
            try:
                experiments = experiment_names(client)  # one request each refresh, for the read and the table
                self.snapshot = read_snapshot(client, self.snapshot, experiments)
            except Exception as err:
                raise store_problem(client.tracking_uri, err) from err
            return runs_table(client, list(self.snapshot.runs.values()), self.known, experiments)


def search_tagged(client: MlflowClient, filter_string: str) -> list:
    """Active runs of every experiment matching an MLflow filter (sweep parents, a sweep's trials)."""
    try:
        return search_all(client, filter_string)
    except Exception as err:
        raise store_problem(client.tracking_uri, err) from err


def fetch_sweeps(client: MlflowClient) -> pd.DataFrame:
    """One row per sweep (its parent run), newest first."""
    rows = [
        {
            "run_id": run.info.run_id,
            "sweep": run.data.tags.get(Tag.SWEEP, run.info.run_name),
            "status": run.info.status,
            "start": pd.to_datetime(run.info.start_time, unit="ms", utc=True),
            "method": run.data.params.get(Param.SWEEP_METHOD, "?"),
            "pruner": run.data.params.get(Param.SWEEP_PRUNER),
            "planned": pd.to_numeric(run.data.params.get(Param.SWEEP_TRIALS), errors="coerce"),
            "best_value": run.data.metrics.get(Metric.SWEEP_BEST, np.nan),
        }
        for run in search_tagged(client, f"tags.{Tag.RUN_KIND} = '{Value.RUN_KIND_SWEEP}'")
    ]
    return pd.DataFrame(rows, columns=SWEEP_COLUMNS).sort_values("start", ascending=False, ignore_index=True)


def fetch_sweep_trials(client: MlflowClient, parent_run_id: str) -> pd.DataFrame:
    """The trials of one sweep: one row per trial run, its chosen values as a dict in `params`."""
    rows = []
    for run in search_tagged(client, f"tags.`{Tag.PARENT_RUN}` = '{parent_run_id}'"):
        tags, metrics = run.data.tags, run.data.metrics
        epochs = pd.to_numeric(run.data.params.get(Param.EPOCHS), errors="coerce")
        rows.append(
            {
                "run_id": run.info.run_id,
                "run_name": run.info.run_name,
                "trial": pd.to_numeric(tags.get(Tag.TRIAL), errors="coerce"),
                "state": tags.get(Tag.TRIAL_STATE, "?"),
                "status": run.info.status,
                "best_val_acc": metrics.get(Metric.BEST_VAL_ACC, np.nan),
                "test_acc": metrics.get(Metric.TEST_ACC, np.nan),
                "epochs_trained": metrics.get(
                    Metric.EPOCHS_TRAINED, pd.to_numeric(tags.get(Tag.STOPPED_AT_EPOCH, epochs), errors="coerce")
                ),
                "params": json.loads(tags.get(Tag.TRIAL_PARAMS, "{}")),
            }
        )
    return pd.DataFrame(rows, columns=TRIAL_COLUMNS).sort_values("trial", ignore_index=True)


def fetch_params(client: MlflowClient, run_ids: list[str]) -> pd.DataFrame:
    """Params of the runs, one row per run (index run_id, in the order given), one column per param name; one
    search for them all (a request per run pays for a password hash each behind MLflow's auth app)."""
    found = {run.run_id: run.params for run in runs_by_id(client, list(experiment_names(client)), run_ids)}
    return pd.DataFrame({run_id: found.get(run_id, {}) for run_id in run_ids}).T


@dataclass(frozen=True)
class ArtifactRead:
    """A run's artifact as read: its parsed value (None when the run has none), or what makes it unreadable."""

    value: object = None
    problem: str | None = None


def parse_artifact(local: Path):
    """A downloaded JSON, CSV, npz or text artifact: dict, DataFrame, dict of arrays (never unpickled) or str."""
    if local.suffix == ".json":
        return json.loads(local.read_text())
    if local.suffix == ".txt":
        return local.read_text()
    if local.suffix == ".npz":
        with np.load(local, allow_pickle=False) as arrays:
            return dict(arrays)
    return pd.read_csv(local)


def moved_location(recorded: Path, tracking: str) -> Path | None:
    """Where a moved embedded store keeps a run's artifacts now: the same experiment/run folders under the
    artifacts folder beside its database (the runners' layout), if that exists."""
    root = artifact_root(tracking)
    if root is None:
        return None
    candidate = Path(unquote(urlsplit(root).path)).joinpath(*recorded.parts[-3:])
    return candidate if candidate.is_dir() else None


def artifact_folder(client: MlflowClient, run_id: str) -> tuple[Path | None, str | None]:
    """The local folder of a run's artifacts (None: read them through MLflow's client), and what to tell the
    user when the location recorded in the store no longer exists (a copied or moved mlruns/)."""
    recorded = client.get_run(run_id).info.artifact_uri
    if not recorded.startswith(("file:", "/")):
        return None, None
    folder = Path(unquote(urlsplit(recorded).path))
    if folder.exists():
        return folder, None
    found = moved_location(folder, client.tracking_uri)
    if found is None:
        return folder, (
            f"This run's artifacts were recorded at {folder}, which no longer exists: the store was "
            "moved or its artifacts folder deleted. Move it back, or keep the artifacts folder beside "
            "mlflow.db where the runners put it."
        )
    return found, (
        f"This run's artifacts were recorded at {folder}, which no longer exists (the store was "
        f"moved); they are read from {found}."
    )


def fetch_artifact(client: MlflowClient, run_id: str, path: str) -> ArtifactRead:
    """A run's artifact: no value when it was not logged (or its folder is gone, see artifact_folder), a
    problem naming the file when it is there but corrupt."""
    folder, _ = artifact_folder(client, run_id)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = folder / path if folder is not None else Path(client.download_artifacts(run_id, path, tmp))
        except MlflowException:
            return ArtifactRead()  # not logged (yet)
        if not local.exists():
            return ArtifactRead()
        try:
            return ArtifactRead(parse_artifact(local))
        except Exception as err:  # noqa: BLE001 - a file that is there but does not parse, however it fails
            detail = str(err).splitlines()[0][:200] if str(err).strip() else "no detail"
            return ArtifactRead(
                problem=f"{path} of this run is corrupt or unreadable ({type(err).__name__}: {detail})."
            )


def fetch_location_note(client: MlflowClient, run_id: str) -> str | None:
    return artifact_folder(client, run_id)[1]


@dataclass(frozen=True)
class RunRecord:
    """One run as the Run detail and inspector pages read it."""

    params: dict
    tags: dict
    metrics: dict
    status: str
    lifecycle_stage: str
    experiment_id: str


def fetch_run(client: MlflowClient, run_id: str) -> RunRecord:
    run = client.get_run(run_id)
    return RunRecord(
        dict(run.data.params),
        dict(run.data.tags),
        dict(run.data.metrics),
        status_of(run.info.status, run.info.lifecycle_stage, run.data.tags),
        run.info.lifecycle_stage,
        run.info.experiment_id,
    )


def store_errors(fetch):
    """Any failure to read the store becomes a StoreError naming the store, which pages show in an error box."""

    @functools.wraps(fetch)
    def guarded(store: Store, *args):
        try:
            return fetch(store, *args)
        except StoreError:
            raise
        except Exception as err:
            raise store_problem(store.uri, err) from err

    return guarded


# ---------------------------------------------------------------- cached wrappers used by the pages


@st.cache_resource(show_spinner=False, hash_funcs=BY_IDENTITY)
def runs_source(store: Store) -> RunsSource:
    return RunsSource()


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, hash_funcs=BY_IDENTITY)
@store_errors
def load_runs(store: Store, tick: int = 0) -> pd.DataFrame:
    """All runs, with the seconds their read took in attrs[READ_SECONDS] (live refresh paces itself by them); a
    new `tick` forces a fresh read (live refresh while runs are training): of what changed only."""
    started = time.perf_counter()
    runs = runs_source(store).read(store)
    runs.attrs[READ_SECONDS] = time.perf_counter() - started
    return runs


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, hash_funcs=BY_IDENTITY)
@store_errors
def load_metrics(store: Store, run_ids: tuple[str, ...], names: tuple[str, ...]) -> pd.DataFrame:
    client = client_for(store)
    return metric_frame(client, list(run_ids), list(names), kept_readings(store, client, list(run_ids)))


def kept_readings(store: Store, client: MlflowClient, run_ids: list[str]) -> dict[str, Reading]:
    """How to read each run: from the metric names the kept Runs table read for it (no request to the store), else
    asked of the store."""
    snapshot, user = runs_source(store).snapshot, user_conventions(store.uri)
    runs = snapshot.runs if snapshot else {}
    kept = {r: Reading.of(frozenset(runs[r].metrics), user) for r in run_ids if r in runs}
    missing = [r for r in run_ids if r not in kept]
    return kept | (readings_of(client, missing) if missing else {})


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, hash_funcs=BY_IDENTITY)
@store_errors
def load_params(store: Store, run_ids: tuple[str, ...]) -> pd.DataFrame:
    return fetch_params(client_for(store), list(run_ids))


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, hash_funcs=BY_IDENTITY)
@store_errors
def load_run(store: Store, run_id: str) -> RunRecord:
    return fetch_run(client_for(store), run_id)


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, hash_funcs=BY_IDENTITY)
@store_errors
def load_sweeps(store: Store) -> pd.DataFrame:
    return fetch_sweeps(client_for(store))


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, hash_funcs=BY_IDENTITY)
@store_errors
def load_sweep_trials(store: Store, parent_run_id: str) -> pd.DataFrame:
    return fetch_sweep_trials(client_for(store), parent_run_id)


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, hash_funcs=BY_IDENTITY)
@store_errors
def load_location_note(store: Store, run_id: str) -> str | None:
    return fetch_location_note(client_for(store), run_id)


@st.cache_data(show_spinner=False, hash_funcs=BY_IDENTITY)
@store_errors
def load_artifact(store: Store, run_id: str, path: str, tick: int = 0) -> ArtifactRead:
    """A run's artifact, kept for good: a new `tick` reads it again (a running run's, as it grows)."""
    return fetch_artifact(client_for(store), run_id, path)


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, hash_funcs=BY_IDENTITY)
@store_errors
def load_judgements(store: Store, version: str = "") -> list[Judgement]:
    """Every follow-up in the store, each judged against its original; read afresh for a new `version` (a launch
    started or ended)."""
    return judgements(client_for(store))


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, hash_funcs=BY_IDENTITY)
@store_errors
def load_experiment_id(store: Store, name: str) -> str | None:
    """The id of the experiment of that name, None where there is none (yet)."""
    found = client_for(store).get_experiment_by_name(name)
    return found.experiment_id if found else None


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, hash_funcs=BY_IDENTITY)
def load_advice(store: Store, target: str, seeds: int, version: str = "") -> Advice | str:
    """What `advise` proposes for `target` (the runner's own answer, a few seconds to start), or why nothing."""
    return read_advice(store.uri, target, seeds, store.signed_in)


def load_images(dataset: str, split: str, sha256: str | None = None) -> np.ndarray | None:
    """This machine's copy of a dataset's train or test images (N, 28, 28), found by name in the verified cache
    (where the runner and `python -m experiments data` fetch it) and checked against the run's content hash where
    it logged one (the test file's); None if unavailable or different. The trainer's own folder is never used: on
    a shared server it is another machine's path. A dataset missing now is looked for again on the next read."""
    try:
        images, content = cached_images(dataset, split)
    except Exception:  # an unknown dataset, or one not fetched on this machine (yet)
        return None
    return images if sha256 is None or content == sha256 else None


@st.cache_data(show_spinner=False, max_entries=4)
def cached_images(dataset: str, split: str) -> tuple[np.ndarray, str]:
    """A whole split's images and their SHA-256, read once per process; a failure is raised, so it is not cached."""
    images = load_split(dataset, split).images
    return images, images_sha256(images)


def current_store() -> Store:
    """The store and who this session reads it as: its signed-in user on a team dashboard (sign_in.py), else the
    user of the dashboard's environment."""
    signed_in = state.signed_in()
    if signed_in is not None:
        return Store(tracking_uri(), signed_in.user, signed_in)
    environment = env_credentials()
    return Store(tracking_uri(), environment.user if environment else None)

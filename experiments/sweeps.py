"""Sweeps: many training runs over a search space, shared by any number of workers through Optuna.

A sweep is one Optuna study (in `--storage`: SQLite in mlruns/ by default, PostgreSQL to share it
between machines) and one MLflow parent run; each trial is one ordinary training run, nested under
the parent and tagged with the sweep's name. Start `python -m experiments sweep SPEC` as often and
wherever you like: every worker takes the next trial until the sweep is done.

- grid: every combination is queued once when the sweep is created; workers pop trials from the
  queue (Optuna makes the pop atomic), so no point runs twice and none is skipped.
- tpe / random: Optuna's samplers propose trials until `trials` of them are running or done.
- A worker that dies stops its trial's heartbeat; the next worker to look marks that trial (and its
  MLflow run) failed and queues its parameters again, up to `retries` times.
- A pruner (median or successive-halving) may stop a trial after any epoch; its run then ends
  FINISHED with its test results and is tagged pruned.
The objective is the best validation accuracy of the run (test accuracy is never used to choose).
"""

import json
import os
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import optuna
from mlflow.entities import Metric as MlflowMetric
from mlflow.entities import Param as MlflowParam
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from core.schema import Artifact, Metric, Param, Tag, Value
from core.settings import ConfigError
from core.store import DEFAULT_STORE, get_client, sqlite_path, tracking_uri
from experiments import interrupts
from experiments.config import RunConfig
from experiments.run import execute
from experiments.run_logger import experiment_id
from experiments.specs import SWEEP_METHODS, Spec
from experiments.track import RunInterrupted

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats are "experimental"
SWEEP_EXPERIMENT = "cnn-sweeps"  # where a sweep's runs go unless its spec names an experiment
OBJECTIVE = Metric.BEST_VAL_ACC
RUN_ID_ATTR = "mlflow_run_id"  # trial user attribute: the trial's MLflow run
PARENT_ATTR = "mlflow_parent_run_id"  # study user attribute: the sweep's MLflow run
SPEC_ATTR = "spec"  # study user attribute: the spec the sweep was created with
GRID_POINT_ATTR = "grid_point"  # trial user attribute: index of a queued grid combination
SURPLUS_ATTR = "surplus"  # trial user attribute: asked for after the grid ran out (two workers raced for its end)


class SweepError(ConfigError):
    """A sweep or storage that cannot be used; raised before any trial runs."""


def distributions(spec: Spec) -> dict[str, BaseDistribution]:
    """The search space as Optuna distributions (a list is categorical)."""
    result = {}
    for key, values in spec.space.items():
        if isinstance(values, list) and values:
            result[key] = CategoricalDistribution(values)
        elif isinstance(values, dict) and spec.method != "grid" and {"low", "high"} <= set(values):
            low, high, log = values["low"], values["high"], values.get("log", False)
            ints = isinstance(low, int) and isinstance(high, int) and not isinstance(values.get("step", 1), float)
            kind = IntDistribution if ints else FloatDistribution
            try:
                result[key] = kind(low, high, log=log, step=values.get("step", 1 if ints and not log else None))
            except (ValueError, TypeError) as err:
                raise spec.fail(f"{key}: {err}") from err
        else:
            raise spec.fail(
                f"{key}: expected a non-empty list of values"
                + ("" if spec.method == "grid" else " or a {low, high, log} range")
            )
    return result


def checked_sweep(spec: Spec) -> Spec:
    """The spec, refused unless it is a search Optuna can run (grid, tpe, random) with valid ranges."""
    if spec.method not in SWEEP_METHODS:
        raise spec.fail(f"a {spec.method} spec is a suite: run it with `suite`, or give it a grid space")
    distributions(spec)
    return spec


def spec_json(spec: Spec) -> dict:
    return {
        **asdict(spec),
        "distributions": {k: json.loads(distribution_to_json(d)) for k, d in distributions(spec).items()},
    }


def sweep_experiment(spec: Spec) -> str:
    return spec.experiment or SWEEP_EXPERIMENT


def default_storage() -> str:
    """SQLite beside the tracking store's database, so that a study never names another store's runs; in mlruns/
    when the tracking store is a server."""
    database = sqlite_path(tracking_uri())
    return f"sqlite:///{(database.parent if database else DEFAULT_STORE) / 'optuna.db'}"


def public_url(url: str) -> str:
    """The storage URL with any password masked, fit to log."""
    return make_url(url).render_as_string(hide_password=True)


def running_trial_runs(client, sweep: str, number: int) -> list:
    """The RUNNING MLflow run(s) of one trial, found by the tags every trial run is created with."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    return (
        client.search_runs(
            experiments,
            f"tags.{Tag.SWEEP} = '{sweep}' and tags.{Tag.TRIAL} = '{number}' and attributes.status = 'RUNNING'",
        )
        if experiments
        else []
    )


def open_storage(url: str, heartbeat_seconds: int, retries: int) -> RDBStorage:
    """Optuna's RDB storage with heartbeats: a trial whose worker is silent for 2 heartbeats + 10 s is
    failed (with its MLflow run) and, `retries` times at most, queued again."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    retry = RetryHeartbeatStaleTrialCallback(max_retry=retries) if retries else None

    def on_stale_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        client = get_client()
        for run in running_trial_runs(client, study.study_name, trial.number):
            client.set_tag(run.info.run_id, Tag.TRIAL_STATE, Value.TRIAL_FAILED)
            client.set_tag(run.info.run_id, Tag.ERROR, "its sweep worker stopped sending heartbeats (killed or lost)")
            client.set_terminated(run.info.run_id, status="FAILED")
        if retry:
            retry(study, trial)

    for attempt in range(3):
        try:
            return RDBStorage(
                url,
                heartbeat_interval=heartbeat_seconds,
                grace_period=2 * heartbeat_seconds + 10,
                heartbeat_stale_trial_callback=on_stale_trial,
            )
        except Exception as err:  # SQLAlchemy and driver errors: name the storage, hide the password
            if attempt == 2:
                reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]  # the driver's own words
                raise SweepError(f"--storage {public_url(url)}: cannot open ({reason})") from err
            # Workers starting together on an empty database race to create Optuna's tables; the
            # loser's retry finds them made.
            time.sleep(1 + attempt)


def make_sampler(spec: Spec) -> optuna.samplers.BaseSampler:
    # Distinct seeds per worker process, so concurrent workers do not propose the same points.
    seed = spec.seed * 100_003 + os.getpid()
    return optuna.samplers.RandomSampler(seed) if spec.method == "random" else optuna.samplers.TPESampler(seed=seed)


def make_pruner(spec: Spec) -> optuna.pruners.BasePruner:
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=spec.pruner_startup_trials, n_warmup_steps=spec.pruner_warmup_epochs
        )
    if spec.pruner == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def join_sweep(spec: Spec, storage: RDBStorage, storage_url: str, wait_seconds: float = 120) -> optuna.Study:
    """Create the sweep, or join it if another worker has (waiting until its creator has set it up)."""
    with interrupts.held():  # created whole: a study without its parent run would make every later worker fail
        study = created_sweep(spec, storage, storage_url)
    if study is not None:
        return study
    study = optuna.load_study(
        study_name=spec.name, storage=storage, sampler=make_sampler(spec), pruner=make_pruner(spec)
    )
    deadline = time.monotonic() + wait_seconds
    while PARENT_ATTR not in study.user_attrs:  # its creator is still setting it up
        if time.monotonic() > deadline:
            raise SweepError(
                f"sweep {spec.name!r} exists in the storage but its creator never finished "
                "setting it up; delete the study or use another name"
            )
        time.sleep(0.5)
    if study.user_attrs[SPEC_ATTR] != spec_json(spec):
        raise SweepError(f"sweep {spec.name!r} already exists with a different spec; rename this one")
    return study


def created_sweep(spec: Spec, storage: RDBStorage, storage_url: str) -> optuna.Study | None:
    """The new sweep (study, queued grid, MLflow parent run), or None when another worker created it first."""
    try:
        study = optuna.create_study(
            study_name=spec.name,
            storage=storage,
            direction="maximize",
            sampler=make_sampler(spec),
            pruner=make_pruner(spec),
        )
    except optuna.exceptions.DuplicatedStudyError:
        return None
    study.set_user_attr(SPEC_ATTR, spec_json(spec))
    if spec.method == "grid":
        for point, params in enumerate(spec.grid()):
            study.enqueue_trial(params, user_attrs={GRID_POINT_ATTR: point})
    study.set_user_attr(PARENT_ATTR, start_parent_run(spec, storage_url))
    return study


def start_parent_run(spec: Spec, storage_url: str) -> str:
    client = get_client()
    run = client.create_run(
        experiment_id(client, sweep_experiment(spec)),
        run_name=spec.name,
        tags={Tag.RUN_KIND: Value.RUN_KIND_SWEEP, Tag.SWEEP: spec.name},
    )
    client.log_batch(
        run.info.run_id,
        params=[
            MlflowParam(k, str(v))
            for k, v in {
                Param.SWEEP_METHOD: spec.method,
                Param.SWEEP_PRUNER: spec.pruner,
                Param.SWEEP_TRIALS: spec.size,
                Param.SWEEP_OBJECTIVE: OBJECTIVE,
                Param.SWEEP_STORAGE: public_url(storage_url),
            }.items()
        ],
    )
    client.log_dict(run.info.run_id, spec_json(spec), Artifact.SWEEP_SPEC)
    return run.info.run_id


class GridExhausted(Exception):
    """The queue emptied between a worker's look and its ask: the trial Optuna made instead is not run."""


def trial_config(spec: Spec, params: dict, number: int) -> RunConfig:
    config = spec.config({**spec.fixed, **params}, number, experiment=sweep_experiment(spec), progress=False)
    spec.check(config)  # a sampled value outside what the setting allows fails this trial, named
    return config


def suggest(trial: optuna.Trial, key: str, dist: BaseDistribution):
    """The trial's value for key: its queued value in a grid, else the sampler's pick from dist."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(key, dist.choices)
    suggest_number = trial.suggest_int if isinstance(dist, IntDistribution) else trial.suggest_float
    return suggest_number(key, dist.low, dist.high, log=dist.log, step=dist.step)


def make_objective(spec: Spec, parent_run_id: str):
    space = distributions(spec)

    def objective(trial: optuna.Trial) -> float:
        if spec.method == "grid" and GRID_POINT_ATTR not in trial.user_attrs:
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise GridExhausted("grid sweep: no queued trial left")
        params = {key: suggest(trial, key, dist) for key, dist in space.items()}
        config = trial_config(spec, params, trial.number)
        run = {}

        def on_start(run_id: str) -> None:
            run["id"] = run_id
            trial.set_user_attr(RUN_ID_ATTR, run_id)

        def should_stop(record) -> bool:
            trial.report(record.val_acc, record.epoch)
            return trial.should_prune()

        tags = {
            Tag.SWEEP: spec.name,
            Tag.TRIAL: trial.number,
            Tag.PARENT_RUN: parent_run_id,
            Tag.TRIAL_STATE: Value.TRIAL_RUNNING,
            Tag.TRIAL_PARAMS: json.dumps(params),
        }
        values = []
        for position, replica in enumerate(config.replicas()):  # the pruner watches the first seed only
            try:
                result = execute(
                    replica, tags=tags, should_stop=should_stop if position == 0 else None, on_start=on_start
                )
            except BaseException as err:
                finished = isinstance(err, RunInterrupted) and err.status == "FINISHED"  # the signal came as it ended
                if "id" in run:
                    get_client().set_tag(
                        run["id"], Tag.TRIAL_STATE, Value.TRIAL_COMPLETE if finished else Value.TRIAL_FAILED
                    )
                if isinstance(err, KeyboardInterrupt):  # this worker is stopping: leave its point to the others
                    trial.study.enqueue_trial(
                        params, user_attrs={k: v for k, v in trial.user_attrs.items() if k == GRID_POINT_ATTR}
                    )
                raise
            pruned = result.epochs_trained < replica.epochs
            get_client().set_tag(result.run_id, Tag.TRIAL_STATE, Value.TRIAL_PRUNED if pruned else Value.TRIAL_COMPLETE)
            if pruned:
                raise optuna.TrialPruned(f"pruned after epoch {result.epochs_trained}")
            values.append(result.metrics[OBJECTIVE])
        return sum(values) / len(values)  # with repeats, the objective is the mean over the seeds

    return objective


def sweep_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The sweep's trials, without the surplus ones a grid worker opened and failed after the grid ran out."""
    return [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(SURPLUS_ATTR)]


def next_step(study: optuna.Study, spec: Spec) -> str:
    """'run' a new trial, 'wait' for running ones (they may die and be queued again), or 'done'."""
    trials = sweep_trials(study)
    count = {state: sum(t.state == state for t in trials) for state in TrialState}
    if count[TrialState.WAITING]:
        return "run"
    if spec.method != "grid":
        started = count[TrialState.COMPLETE] + count[TrialState.PRUNED] + count[TrialState.RUNNING]
        if started < spec.trials and count[TrialState.FAIL] < spec.trials:
            return "run"
    return "wait" if count[TrialState.RUNNING] else "done"


def run_worker(spec: Spec, storage_url: str | None = None, heartbeat_seconds: int = 30, log=print) -> dict:
    """Take trials of the sweep until it is done; returns the sweep's summary (also logged to its parent run)."""
    checked_sweep(spec)
    storage_url = storage_url or default_storage()
    storage = open_storage(storage_url, heartbeat_seconds, spec.retries)
    study = join_sweep(spec, storage, storage_url)
    objective = make_objective(spec, study.user_attrs[PARENT_ATTR])
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        name = f"{Metric.VAL_ACC} when pruned" if trial.state == TrialState.PRUNED else OBJECTIVE
        value = "" if trial.value is None else f" {name} {trial.value:.4f}"
        log(f"sweep {spec.name}: trial {trial.number} {trial.state.name.lower()}{value} {trial.params}", flush=True)

    while (step := next_step(study, spec)) != "done":
        if step == "wait":
            optuna.storages.fail_stale_trials(study)  # a dead worker's trial fails here, and is queued again
            time.sleep(min(heartbeat_seconds, 5))
            continue
        study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=[report])
    return finish_parent_run(study)


def summarize(study: optuna.Study) -> dict:
    trials = sweep_trials(study)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    summary = {
        Metric.SWEEP_COMPLETE: len(complete),
        Metric.SWEEP_PRUNED: sum(t.state == TrialState.PRUNED for t in trials),
        Metric.SWEEP_FAILED: sum(t.state == TrialState.FAIL for t in trials),
    }
    if complete:
        summary[Metric.SWEEP_BEST] = max(t.value for t in complete)
    return summary


def finish_parent_run(study: optuna.Study) -> dict:
    """Log the sweep's summary to its parent run and end it; the first worker to see the sweep done does this,
    the others only read the summary."""
    client = get_client()
    parent = study.user_attrs[PARENT_ATTR]
    if client.get_run(parent).info.status == "FINISHED":
        return {"parent_run_id": parent, **summarize(study)}
    return record_summary(study)


def record_summary(study: optuna.Study) -> dict:
    """Log the sweep's summary as it stands to its parent run, and end the run. Also called once every worker of a
    Ray sweep has ended: a worker may see the sweep done in the moment between a dead worker's trial failing and its
    retry being queued, and log a summary the retry then changes."""
    summary, client, parent = summarize(study), get_client(), study.user_attrs[PARENT_ATTR]
    now = int(time.time() * 1000)
    client.log_batch(parent, metrics=[MlflowMetric(k, float(v), now, 0) for k, v in summary.items()])
    client.set_terminated(parent, status="FINISHED")
    return {"parent_run_id": parent, **summary}

"""Writing runs to MLflow: the store's location and one RunLogger per training run.

The default store is embedded: an SQLite database plus an artifact folder under mlruns/ at the
repository root, nothing to start. MLFLOW_TRACKING_URI points runners and dashboard anywhere else.
Everything is logged in batches: one log_batch and at most one artifact write per epoch.
"""
import dataclasses
import fcntl
import json
import os
import re
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import numpy as np
import pandas as pd
from mlflow.entities import Metric as MlflowMetric, Param as MlflowParam, RunTag
from mlflow.tracking import MlflowClient

from experiments import interrupts
from experiments.schema import Artifact, Metric, Tag
from experiments.settings import SETTINGS, ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STORE = REPO_ROOT / "mlruns"
MAX_PARAMS_PER_BATCH = 100  # MLflow's limit on params in one log_batch call
STORE_TIMEOUT_SECONDS = float(os.environ.get("CNN_STORE_TIMEOUT_SECONDS", "5"))  # to answer a health check
# On this machine: what a run could not log while its store was away (CNN_SPOOL_DIR moves it).
SPOOL_DIR = Path(os.environ.get("CNN_SPOOL_DIR") or DEFAULT_STORE / "spool")
# In a runner, one call to a tracking server gives up within about 7 s (MLflow's own defaults retry for minutes);
# the run's logger then retries it for as long as its `store_retry` setting says (RunLogger.patiently).
RUNNER_HTTP_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                       "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else the embedded SQLite store in mlruns/."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_STORE / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of an sqlite:/// URI (sqlite:////abs/x.db or sqlite:///relative.db), else None."""
    prefix = "sqlite:///"
    return Path(unquote(uri[len(prefix):])).resolve() if uri.startswith(prefix) else None


def artifact_root(uri: str) -> str | None:
    """Artifacts of an SQLite store go beside its database; a server chooses its own (None)."""
    database = sqlite_path(uri)
    return (database.parent / "artifacts").as_uri() if database else None


@contextmanager
def store_lock(uri: str):
    """Serialise first-time set-up of an embedded store across processes (SQLite schema creation and
    experiment creation race when several runners start at once); a no-op for servers."""
    database = sqlite_path(uri)
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class StoreError(ConfigError):
    """The tracking store cannot be used: one line naming it (password masked), what is wrong and the fix."""


class StoreAway(RuntimeError):
    """The store stopped answering during a run and stayed away for the run's store_retry seconds: the run stops,
    its last epoch and checkpoint spooled on this machine, to be logged by `train --resume RUN_ID`."""

    def __init__(self, run_id: str, epoch: int, spool: Path, seconds: float, cause: Exception):
        reason = str(cause).strip().splitlines()[0][:200] if str(cause).strip() else type(cause).__name__
        super().__init__(f"the tracking store stopped answering during run {run_id} and stayed away {seconds:.0f} s "
                         f"({reason}); epoch {epoch} and its checkpoint are saved in {spool}, every earlier one is "
                         f"logged. Once the store is back: `python -m experiments train --resume {run_id}`")
        self.run_id = run_id


def is_outage(err: Exception) -> bool:
    """Whether a failed store call means the store is unreachable (worth waiting for), not that it refused."""
    import requests

    return isinstance(err, (requests.RequestException, ConnectionError, TimeoutError)) or \
        "failed with exception" in str(err) or "failed with timeout exception" in str(err)


def spool_path(run_id: str) -> Path:
    return SPOOL_DIR / run_id / "epoch.pt"


def read_spool(run_id: str) -> dict | None:
    """A run's spooled epoch ({record: EpochRecord fields, checkpoint}), tensors and numbers only, or None."""
    import torch

    path = spool_path(run_id)
    return torch.load(path, weights_only=True) if path.exists() else None


def shown_uri(uri: str) -> str:
    """The URI fit to print: any password in it masked (also in a URI too malformed to parse)."""
    try:
        parts = urlsplit(uri)
        parts.password  # noqa: B018 (parses the netloc, which raises on e.g. an unclosed '[')
    except ValueError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", uri)
    if parts.password:
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
    return uri


def probe_server(uri: str, timeout: float = STORE_TIMEOUT_SECONDS) -> None:
    """Fail within `timeout` seconds, in one line, when an HTTP tracking server does not answer its health
    check: MLflow's own client retries with back-off for minutes before it gives up."""
    import requests

    try:
        answer = requests.get(uri.rstrip("/") + "/health", timeout=timeout)
    except requests.RequestException as err:
        what = (f"no answer within {timeout:g} s" if isinstance(err, requests.Timeout) else
                "connection refused or host unknown")
        raise StoreError(f"cannot read the tracking store at {shown_uri(uri)}: {what} ({type(err).__name__}); "
                         "check the host and port, or start the server (scripts/server)") from err
    if answer.status_code != 200:
        raise StoreError(f"cannot read the tracking store at {shown_uri(uri)}: its /health answered "
                         f"HTTP {answer.status_code}")
    check_credentials(uri, timeout)


def check_credentials(uri: str, timeout: float) -> None:
    """One line, without a traceback, when a server behind MLflow's auth app refuses our (missing or wrong)
    MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD."""
    import requests

    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    answer = requests.post(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search", json={"max_results": 1},
                           auth=(user, password) if user else None, timeout=timeout)
    if answer.status_code == 401:
        what = ("refused the user name and password in MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD"
                if user else "needs a user: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
        raise StoreError(f"cannot read the tracking store at {shown_uri(uri)}: the server {what}")


def store_problem(uri: str, err: Exception) -> StoreError:
    """One line for a store MLflow could not open, with the fix where there is one."""
    reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
    fix = ""
    if "out-of-date database schema" in str(err):
        fix = f"; upgrade it with `mlflow db upgrade {shown_uri(uri)}` (back it up first)"
    elif "file is not a database" in reason:
        fix = "; MLFLOW_TRACKING_URI must name an MLflow SQLite store (or leave it unset for mlruns/)"
    return StoreError(f"cannot read the tracking store at {shown_uri(uri)}: {reason}{fix}")


def get_client(uri: str | None = None) -> MlflowClient:
    """A client on the store, checked first (a server must answer within seconds), its schema created or
    migrated under the store lock; StoreError in one line when the store cannot be used."""
    uri = uri or tracking_uri()
    if uri.startswith(("http://", "https://")):
        probe_server(uri)
    try:
        with store_lock(uri):
            client = MlflowClient(uri)  # an SQLite store's schema is read (and created) here
            client.search_experiments(max_results=1)  # the first store access creates or upgrades the schema
    except Exception as err:
        raise store_problem(uri, err) from err
    return client


def store_has_runs() -> bool:
    client = get_client()
    experiments = [e.experiment_id for e in client.search_experiments()]
    return bool(experiments and client.search_runs(experiments, max_results=1))


def experiment_id(client: MlflowClient, name: str) -> str:
    """The id of experiment `name`, created (with its artifact location) if missing."""
    with store_lock(client.tracking_uri):
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        root = artifact_root(client.tracking_uri)
        return client.create_experiment(name, artifact_location=f"{root}/{name}" if root else None)


def grown(series: dict, epoch: int, entry: dict) -> dict:
    """A per-epoch artifact with this epoch's entry appended to its lists, after dropping any entries of this epoch
    or later (left by a runner killed between this artifact and its checkpoint, then resumed)."""
    kept = [i for i, e in enumerate(series.get("epochs", [])) if e < epoch]
    lists = {name: [*(series[name][i] for i in kept), value] if name in series else [value]
             for name, value in entry.items()}
    return {**series, "epochs": [*(series["epochs"][i] for i in kept), epoch], **lists}


def tensor_tree(obj):
    """The same nested dicts and lists with numpy arrays as torch tensors, so torch.load(weights_only=True) reads it."""
    import torch

    if isinstance(obj, dict):
        return {str(k) if isinstance(k, str) else k: tensor_tree(v) for k, v in obj.items()}  # Names -> plain str
    if isinstance(obj, (list, tuple)):
        return type(obj)(tensor_tree(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


LOST_AFTER_BEATS = 3  # a RUNNING run whose heartbeat is older than this many intervals has lost its runner


def now_ms() -> int:
    return int(time.time() * 1000)


def lost_since(status: str, tags: dict, now: int) -> int | None:
    """When a RUNNING run's heartbeat stopped (ms), if it is older than LOST_AFTER_BEATS intervals; else None.
    Runs without heartbeats (other tools, older runs) are never called lost: nothing tells them from slow ones."""
    if status != "RUNNING" or Tag.HEARTBEAT not in tags:
        return None
    try:
        last = int(tags[Tag.HEARTBEAT])
        interval = float(tags.get(Tag.HEARTBEAT_SECONDS, SETTINGS["heartbeat"].default))
    except ValueError:
        return None
    return last if now - last > LOST_AFTER_BEATS * interval * 1000 else None


class Heartbeat:
    """A daemon thread that stamps the run's heartbeat tag every `seconds` while its runner lives, so that a
    reader can tell a lost run (runner killed, machine gone) from a slow one."""

    def __init__(self, client: MlflowClient, run_id: str, seconds: float):
        self.client, self.run_id, self.seconds = client, run_id, seconds
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.beat_until_stopped, name=f"heartbeat-{run_id[:8]}", daemon=True)

    def start(self) -> "Heartbeat":
        self.client.set_tag(self.run_id, Tag.HEARTBEAT_SECONDS, str(self.seconds))
        self.beat()
        self.thread.start()
        return self

    def beat(self) -> None:
        try:
            self.client.set_tag(self.run_id, Tag.HEARTBEAT, str(now_ms()))
        except Exception:  # a busy or briefly unreachable store: the next beat tries again
            pass

    def beat_until_stopped(self) -> None:
        while not self.stopped.wait(self.seconds):
            self.beat()

    def stop(self) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join()


class RunLogger:
    """Logs one training run: params and tags at the start, a batch per epoch, results at the end.

    Each epoch's checkpoint is written as the run's checkpoint.pt artifact, so a run whose runner
    died (killed, out of memory, machine lost) can still be resumed; a FINISHED run drops it. A
    heartbeat thread stamps the run while the runner lives.
    """

    def __init__(self, client: MlflowClient, run_id: str, class_names: tuple[str, ...], heartbeat_seconds: float,
                 retry_seconds: float = SETTINGS["store_retry"].default):
        self.client, self.run_id, self.class_names = client, run_id, list(class_names)
        self.retry_seconds = retry_seconds
        for name, value in RUNNER_HTTP_RETRIES.items():  # the user's own settings win
            os.environ.setdefault(name, value)
        self.series: dict[str, dict] = {name: {"class_names": self.class_names} for name in Artifact.PER_EPOCH}
        self.scratch = tempfile.TemporaryDirectory(prefix="cnn-run-")
        self.heartbeat = Heartbeat(client, run_id, heartbeat_seconds)
        self.final_status: str | None = None  # the status finish() gave the run

    @classmethod
    def start(cls, experiment: str, run_name: str, params: dict, tags: dict, config: dict,
              class_names: tuple[str, ...], heartbeat_seconds: float = SETTINGS["heartbeat"].default,
              retry_seconds: float = SETTINGS["store_retry"].default) -> "RunLogger":
        client = get_client()
        run = client.create_run(experiment_id(client, experiment), run_name=run_name,
                                tags={k: str(v) for k, v in tags.items()})
        logger = cls(client, run.info.run_id, class_names, heartbeat_seconds, retry_seconds)
        items = [MlflowParam(k, str(v)) for k, v in params.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            client.log_batch(logger.run_id, params=items[i:i + MAX_PARAMS_PER_BATCH])
        client.log_dict(logger.run_id, config, Artifact.CONFIG)
        logger.heartbeat.start()
        return logger

    @classmethod
    def reopen(cls, run_id: str, class_names: tuple[str, ...],
               heartbeat_seconds: float = SETTINGS["heartbeat"].default,
               retry_seconds: float = SETTINGS["store_retry"].default,
               checkpoint: dict | None = None) -> tuple["RunLogger", dict]:
        """A stopped run set RUNNING again, with its last checkpoint (read with weights_only=True), unless a newer
        one is given (spooled on this machine while the store was away)."""
        import torch

        client = get_client()
        logger = cls(client, run_id, class_names, heartbeat_seconds, retry_seconds)
        if checkpoint is None:
            local = client.download_artifacts(run_id, Artifact.CHECKPOINT, logger.scratch.name)
            try:
                checkpoint = torch.load(local, weights_only=True)
            except Exception as err:  # weights_only refuses any pickled object that is not tensors and numbers
                raise ConfigError(f"--resume: run {run_id}'s {Artifact.CHECKPOINT} cannot be read safely "
                                  f"({type(err).__name__}); it was not loaded") from err
        logged = {f.path for f in client.list_artifacts(run_id)}
        for name in logger.series.keys() & logged:  # a run logged by an older version may lack some
            local = client.download_artifacts(run_id, name, logger.scratch.name)
            logger.series[name] = json.loads(Path(local).read_text())
        client.update_run(run_id, status="RUNNING")
        if Tag.ERROR in client.get_run(run_id).data.tags:
            client.delete_tag(run_id, Tag.ERROR)
        logger.heartbeat.start()
        return logger, checkpoint

    def log_metrics(self, values: dict, step: int) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[MlflowMetric(k, float(v), now, step) for k, v in values.items()])

    def patiently(self, action, *args, **kwargs):
        """action(*args), retried with back-off while the store is unreachable, for up to retry_seconds; then
        StoreAway. A store that answers with an error is not retried: that error is raised at once."""
        started, delay = time.monotonic(), 1.0
        while True:
            try:
                return action(*args, **kwargs)
            except Exception as err:
                waited = time.monotonic() - started
                if not is_outage(err) or waited >= self.retry_seconds:
                    raise
                time.sleep(min(delay, self.retry_seconds - waited))
                delay = min(2 * delay, 10.0)

    def log_epoch(self, record, checkpoint: dict) -> None:
        """Commit one epoch (an experiments.train.EpochRecord): metrics and step losses in one batch, the per-epoch
        artifacts grown by its entries, and its checkpoint; an interrupt waits for the whole commit. If the store is
        away for longer than retry_seconds, the epoch and its checkpoint are spooled here and StoreAway raised."""
        try:
            self.patiently(self.commit_epoch, record, checkpoint)
        except Exception as err:
            if not is_outage(err):
                raise
            path = spool_path(self.run_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            import torch

            torch.save(tensor_tree({"record": dataclasses.asdict(record), "checkpoint": checkpoint}), path)
            raise StoreAway(self.run_id, record.epoch, path.parent, self.retry_seconds, err) from err

    def commit_epoch(self, record, checkpoint: dict) -> None:
        """One epoch's whole commit, which an interrupt waits for; safe to repeat (a step logged twice keeps its last
        value when read)."""
        with interrupts.held():
            self.commit_epoch_now(record, checkpoint)

    def commit_epoch_now(self, record, checkpoint: dict) -> None:
        now = int(time.time() * 1000)
        epoch = record.epoch
        metrics = [MlflowMetric(name, float(value), now, epoch) for name, value in record.metrics().items()]
        metrics += [MlflowMetric(Metric.TRAIN_LOSS_STEP, loss, now, step) for step, loss in record.step_losses]
        for i in range(0, len(metrics), 1000):  # MLflow accepts at most 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])
        series = {name: grown(self.series[name], epoch, entry) for name, entry in record.artifact_entries().items()}
        for name, data in series.items():  # compact: rewritten whole every epoch, 6,000 predictions and more
            self.client.log_text(self.run_id, json.dumps(data, separators=(",", ":")), name)
        self.upload_checkpoint(checkpoint)
        self.series = series

    def upload_checkpoint(self, checkpoint: dict) -> None:
        """The checkpoint as the run's artifact (tensors and numbers only: weights_only loads it)."""
        import torch

        path = Path(self.scratch.name) / Artifact.CHECKPOINT
        torch.save(tensor_tree(checkpoint), path)
        self.client.log_artifact(self.run_id, str(path))

    def drop_checkpoint(self) -> None:
        """A finished run needs no checkpoint (its model is logged): delete it where the artifact store can."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        try:
            get_artifact_repository(self.client.get_run(self.run_id).info.artifact_uri).delete_artifacts(
                Artifact.CHECKPOINT)
        except Exception:  # a store that cannot delete keeps it; nothing else depends on its absence
            pass

    def log_table(self, frame: pd.DataFrame, name: str) -> None:
        self.client.log_text(self.run_id, frame.to_csv(index=False), name)

    def log_dict(self, data: dict, name: str) -> None:
        self.client.log_dict(self.run_id, data, name)

    def set_tags(self, tags: dict) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_npz(self, arrays: dict, name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            np.savez_compressed(path, **arrays)
            self.client.log_artifact(self.run_id, str(path))

    def finish(self, status: str = "FINISHED", error: str | None = None) -> None:
        """End the run, whole: an interrupt waits (a run that lost its checkpoint but still shows RUNNING could
        neither finish nor resume)."""
        with interrupts.held():
            self.heartbeat.stop()
            if error:
                self.set_tags({Tag.ERROR: error[:5000]})
            if status == "FINISHED":
                self.drop_checkpoint()
            self.client.set_terminated(self.run_id, status=status)
            self.final_status = status


def reap(client: MlflowClient, now: int) -> list[tuple[str, str]]:
    """End every lost run FAILED with the reason (it can then be resumed); returns (run id, reason) pairs."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    running = client.search_runs(experiments, "attributes.status = 'RUNNING'", max_results=50_000) \
        if experiments else []
    reaped = []
    for run in running:
        since = lost_since(run.info.status, run.data.tags, now)
        if since is None:
            continue
        reason = (f"lost: no heartbeat since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since / 1000))} "
                  f"({(now - since) / 1000:.0f} s, more than {LOST_AFTER_BEATS} heartbeat intervals); reaped")
        client.set_tag(run.info.run_id, Tag.ERROR, reason)
        client.set_terminated(run.info.run_id, status="FAILED")
        reaped.append((run.info.run_id, reason))
    return reaped

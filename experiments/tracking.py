"""Writing runs to MLflow: the store's location and one RunLogger per training run.

The default store is embedded: an SQLite database plus an artifact folder under mlruns/ at the
repository root, nothing to start. MLFLOW_TRACKING_URI points runners and dashboard anywhere else.
Everything is logged in batches: one log_batch and at most one artifact write per epoch.
"""
import fcntl
import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
from mlflow.entities import Metric as MlflowMetric, Param as MlflowParam, RunTag
from mlflow.tracking import MlflowClient

from experiments import interrupts
from experiments.schema import Artifact, Metric, Tag
from experiments.settings import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STORE = REPO_ROOT / "mlruns"
MAX_PARAMS_PER_BATCH = 100  # MLflow's limit on params in one log_batch call


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


def get_client() -> MlflowClient:
    """A client on the store, its schema created or migrated under the store lock."""
    uri = tracking_uri()
    client = MlflowClient(uri)
    with store_lock(uri):
        client.search_experiments(max_results=1)  # the first store access creates or upgrades the schema
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


def json_ready(matrix: np.ndarray) -> list:
    return np.asarray(matrix).astype(int).tolist()


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


class RunLogger:
    """Logs one training run: params and tags at the start, a batch per epoch, results at the end.

    The latest end-of-epoch checkpoint is kept in memory; it is written as the run's
    checkpoint.pt artifact only when the run stops early (killed or failed), for --resume.
    """

    def __init__(self, client: MlflowClient, run_id: str, class_names: tuple[str, ...]):
        self.client, self.run_id, self.class_names = client, run_id, list(class_names)
        self.val_confusions: dict = {"class_names": self.class_names, "epochs": [], "matrices": []}
        self.scratch = tempfile.TemporaryDirectory(prefix="cnn-run-")
        self.checkpoint = None

    @classmethod
    def start(cls, experiment: str, run_name: str, params: dict, tags: dict, config: dict,
              class_names: tuple[str, ...]) -> "RunLogger":
        client = get_client()
        run = client.create_run(experiment_id(client, experiment), run_name=run_name,
                                tags={k: str(v) for k, v in tags.items()})
        logger = cls(client, run.info.run_id, class_names)
        items = [MlflowParam(k, str(v)) for k, v in params.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            client.log_batch(logger.run_id, params=items[i:i + MAX_PARAMS_PER_BATCH])
        client.log_dict(logger.run_id, config, Artifact.CONFIG)
        return logger

    @classmethod
    def reopen(cls, run_id: str, class_names: tuple[str, ...]) -> tuple["RunLogger", dict]:
        """A stopped run set RUNNING again, with its last checkpoint (read with weights_only=True)."""
        import torch

        client = get_client()
        logger = cls(client, run_id, class_names)
        local = client.download_artifacts(run_id, Artifact.CHECKPOINT, logger.scratch.name)
        try:
            checkpoint = torch.load(local, weights_only=True)
        except Exception as err:  # weights_only refuses any pickled object that is not tensors and numbers
            raise ConfigError(f"--resume: run {run_id}'s {Artifact.CHECKPOINT} cannot be read safely "
                              f"({type(err).__name__}); it was not loaded") from err
        confusions = client.download_artifacts(run_id, Artifact.CONFUSION_VAL_EPOCHS, logger.scratch.name)
        logger.val_confusions = json.loads(Path(confusions).read_text())
        client.update_run(run_id, status="RUNNING")
        if Tag.ERROR in client.get_run(run_id).data.tags:
            client.delete_tag(run_id, Tag.ERROR)
        return logger, checkpoint

    def log_metrics(self, values: dict, step: int) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[MlflowMetric(k, float(v), now, step) for k, v in values.items()])

    def log_epoch(self, record, checkpoint: dict) -> None:
        """Commit one epoch (an experiments.train.EpochRecord): metrics and step losses in one batch, the val
        confusion matrices so far, and its checkpoint (in memory); an interrupt waits for the whole commit."""
        now = int(time.time() * 1000)
        epoch = record.epoch
        metrics = [MlflowMetric(name, float(value), now, epoch) for name, value in record.metrics().items()]
        metrics += [MlflowMetric(Metric.TRAIN_LOSS_STEP, loss, now, step) for step, loss in record.step_losses]
        with interrupts.held():
            for i in range(0, len(metrics), 1000):  # MLflow accepts at most 1000 metrics per batch
                self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])
            self.val_confusions["epochs"].append(epoch)
            self.val_confusions["matrices"].append(json_ready(record.val_confusion))
            self.client.log_dict(self.run_id, self.val_confusions, Artifact.CONFUSION_VAL_EPOCHS)
            self.checkpoint = checkpoint

    def upload_checkpoint(self) -> None:
        """The last checkpoint as the run's artifact (tensors and numbers only: weights_only loads it)."""
        import torch

        if self.checkpoint is not None:
            path = Path(self.scratch.name) / Artifact.CHECKPOINT
            torch.save(tensor_tree(self.checkpoint), path)
            self.client.log_artifact(self.run_id, str(path))

    def log_table(self, frame: pd.DataFrame, name: str) -> None:
        self.client.log_text(self.run_id, frame.to_csv(index=False), name)

    def log_dict(self, data: dict, name: str) -> None:
        self.client.log_dict(self.run_id, data, name)

    def set_tags(self, tags: dict) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_npz(self, arrays: dict, name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            np.savez(path, **arrays)
            self.client.log_artifact(self.run_id, str(path))

    def finish(self, status: str = "FINISHED", error: str | None = None) -> None:
        if error:
            self.set_tags({Tag.ERROR: error[:5000]})
        self.client.set_terminated(self.run_id, status=status)

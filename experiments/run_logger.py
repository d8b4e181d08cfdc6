"""Writing one run to MLflow: params and tags at the start, one batch and at most one artifact write per epoch,
results at the end; each epoch's checkpoint so a run whose runner died can be resumed."""

import contextlib
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from mlflow.entities import Metric as MlflowMetric
from mlflow.entities import Param as MlflowParam
from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient

from core.schema import Artifact, Metric, Tag
from core.settings import SETTINGS, ConfigError
from core.store import artifact_root, get_client, store_lock
from experiments import interrupts
from experiments.heartbeat import Heartbeat
from experiments.spool import StoreAway, is_outage, spool_path, tensor_tree

MAX_PARAMS_PER_BATCH = 100  # MLflow's limit on params in one log_batch call
# In a runner, one call to a tracking server gives up within about 7 s (MLflow's own defaults retry for minutes);
# the run's logger then retries it for as long as its `store_retry` setting says (RunLogger.patiently).
RUNNER_HTTP_RETRIES = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def experiment_id(client: MlflowClient, name: str) -> str:
    """The id of experiment `name`, created (with its artifact location) if missing. On a tracking server no lock
    spans runners, so another runner may create it between our look and our create: then it is read back."""
    with store_lock(client.tracking_uri):
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        root = artifact_root(client.tracking_uri)
        try:
            return client.create_experiment(name, artifact_location=f"{root}/{name}" if root else None)
        except MlflowException as error:
            if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
            return client.get_experiment_by_name(name).experiment_id


def grown(series: dict, epoch: int, entry: dict) -> dict:
    """A per-epoch artifact with this epoch's entry appended to its lists, after dropping any entries of this epoch
    or later (left by a runner killed between this artifact and its checkpoint, then resumed)."""
    kept = [i for i, e in enumerate(series.get("epochs", [])) if e < epoch]
    lists = {
        name: [*(series[name][i] for i in kept), value] if name in series else [value] for name, value in entry.items()
    }
    return {**series, "epochs": [*(series["epochs"][i] for i in kept), epoch], **lists}


class RunLogger:
    """Logs one training run: params and tags at the start, a batch per epoch, results at the end.

    Each epoch's checkpoint is written as the run's checkpoint.pt artifact, so a run whose runner
    died (killed, out of memory, machine lost) can still be resumed; a FINISHED run drops it. A
    heartbeat thread stamps the run while the runner lives.
    """

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        class_names: tuple[str, ...],
        heartbeat_seconds: float,
        retry_seconds: float = SETTINGS["store_retry"].default,
    ):
        self.client, self.run_id, self.class_names = client, run_id, list(class_names)
        self.retry_seconds = retry_seconds
        for name, value in RUNNER_HTTP_RETRIES.items():  # the user's own settings win
            os.environ.setdefault(name, value)
        self.series: dict[str, dict] = {name: {"class_names": self.class_names} for name in Artifact.PER_EPOCH}
        self.scratch = tempfile.TemporaryDirectory(prefix="cnn-run-")
        self.heartbeat = Heartbeat(client, run_id, heartbeat_seconds)
        self.final_status: str | None = None  # the status finish() gave the run

    @classmethod
    def start(
        cls,
        experiment: str,
        run_name: str,
        params: dict,
        tags: dict,
        config: dict,
        class_names: tuple[str, ...],
        heartbeat_seconds: float = SETTINGS["heartbeat"].default,
        retry_seconds: float = SETTINGS["store_retry"].default,
    ) -> "RunLogger":
        client = get_client()
        run = client.create_run(
            experiment_id(client, experiment), run_name=run_name, tags={k: str(v) for k, v in tags.items()}
        )
        logger = cls(client, run.info.run_id, class_names, heartbeat_seconds, retry_seconds)
        logger.log_params(params)
        client.log_dict(logger.run_id, config, Artifact.CONFIG)
        logger.heartbeat.start()
        return logger

    @classmethod
    def reopen(
        cls,
        run_id: str,
        class_names: tuple[str, ...],
        heartbeat_seconds: float = SETTINGS["heartbeat"].default,
        retry_seconds: float = SETTINGS["store_retry"].default,
        checkpoint: dict | None = None,
    ) -> tuple["RunLogger", dict]:
        """A stopped run set RUNNING again, with its last checkpoint (read with weights_only=True), unless a newer
        one is given (spooled on this machine while the store was away)."""
        client = get_client()
        logger = cls(client, run_id, class_names, heartbeat_seconds, retry_seconds)
        if checkpoint is None:
            local = client.download_artifacts(run_id, Artifact.CHECKPOINT, logger.scratch.name)
            try:
                checkpoint = torch.load(local, weights_only=True)
            except Exception as err:  # weights_only refuses any pickled object that is not tensors and numbers
                raise ConfigError(
                    f"--resume: run {run_id}'s {Artifact.CHECKPOINT} cannot be read safely "
                    f"({type(err).__name__}); it was not loaded"
                ) from err
        logged = {f.path for f in client.list_artifacts(run_id)}
        for name in logger.series.keys() & logged:  # a run logged by an older version may lack some
            local = client.download_artifacts(run_id, name, logger.scratch.name)
            logger.series[name] = json.loads(Path(local).read_text())
        client.update_run(run_id, status="RUNNING")
        if Tag.ERROR in client.get_run(run_id).data.tags:
            client.delete_tag(run_id, Tag.ERROR)
        logger.heartbeat.start()
        return logger, checkpoint

    def log_params(self, params: dict) -> None:
        items = [MlflowParam(k, str(v)) for k, v in params.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + MAX_PARAMS_PER_BATCH])

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

    def log_epoch(self, record, checkpoint: dict | None) -> None:
        """Commit one epoch (an experiments.train.EpochRecord): metrics and step losses in one batch, the per-epoch
        artifacts grown by its entries, and its checkpoint (the runner's; your own loop has none); an interrupt waits
        for the whole commit. If the store is away for longer than retry_seconds, StoreAway is raised, with the
        epoch and its checkpoint spooled here where there is a checkpoint to resume from."""
        try:
            self.patiently(self.commit_epoch, record, checkpoint)
        except Exception as err:
            if not is_outage(err):
                raise
            if checkpoint is None:  # nothing could resume from the spool
                raise StoreAway(self.run_id, record.epoch, None, self.retry_seconds, err) from err
            path = spool_path(self.run_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(tensor_tree({"record": dataclasses.asdict(record), "checkpoint": checkpoint}), path)
            raise StoreAway(self.run_id, record.epoch, path.parent, self.retry_seconds, err) from err

    def commit_epoch(self, record, checkpoint: dict | None) -> None:
        """One epoch's whole commit, which an interrupt waits for; safe to repeat (a step logged twice keeps its last
        value when read)."""
        with interrupts.held():
            self.commit_epoch_now(record, checkpoint)

    def commit_epoch_now(self, record, checkpoint: dict | None) -> None:
        now = int(time.time() * 1000)
        epoch = record.epoch
        metrics = [MlflowMetric(name, float(value), now, epoch) for name, value in record.metrics().items()]
        metrics += [MlflowMetric(Metric.TRAIN_LOSS_STEP, loss, now, step) for step, loss in record.step_losses]
        for i in range(0, len(metrics), 1000):  # MLflow accepts at most 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])
        series = {name: grown(self.series[name], epoch, entry) for name, entry in record.artifact_entries().items()}
        for name, data in series.items():  # compact: rewritten whole every epoch, 6,000 predictions and more
            self.client.log_text(self.run_id, json.dumps(data, separators=(",", ":")), name)
        if checkpoint is not None:
            self.upload_checkpoint(checkpoint)
        self.series = series

    def upload_checkpoint(self, checkpoint: dict) -> None:
        """The checkpoint as the run's artifact (tensors and numbers only: weights_only loads it)."""
        path = Path(self.scratch.name) / Artifact.CHECKPOINT
        torch.save(tensor_tree(checkpoint), path)
        self.client.log_artifact(self.run_id, str(path))

    def drop_checkpoint(self) -> None:
        """A finished run needs no checkpoint (its model is logged): delete it where the artifact store can."""
        with contextlib.suppress(Exception):  # a store that cannot delete keeps it; nothing depends on its absence
            repository = get_artifact_repository(self.client.get_run(self.run_id).info.artifact_uri)
            repository.delete_artifacts(Artifact.CHECKPOINT)

    def log_table(self, frame: pd.DataFrame, name: str) -> None:
        self.client.log_text(self.run_id, frame.to_csv(index=False), name)

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

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

"""One tracked run: configuration -> data -> model -> fit -> test -> everything logged to MLflow.

The model's framework (PyTorch, Keras, numpy) is its adapter's business (experiments.adapters); nothing here
branches on it.
"""

import contextlib
import json
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from sklearn.metrics import confusion_matrix

from core.datasets import NUM_CLASSES, images_sha256
from core.diagnosis import ADVICE, DIVERGED, Yardstick, best_error_for, verdict
from core.schema import Artifact, Metric, Param, Tag
from core.settings import SETTINGS, ConfigError, config_group
from core.store import get_client
from experiments import interrupts
from experiments.adapters import ModelAdapter, adapter_for
from experiments.config import RunConfig
from experiments.data import Splits, make_splits, scale_images
from experiments.memory import keep_freed_memory
from experiments.models import MODELS, ModelSpec, get_model_spec
from experiments.run_logger import RunLogger
from experiments.spool import SPOOL_DIR, StoreAway, read_spool
from experiments.train import Diverged, EpochRecord, Evaluation, FitResult, evaluate, fit

MISCLASSIFIED_LIMIT = 1000  # most-confident mistakes kept per run


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run: it is logged KILLED with its last checkpoint, or, when the signal came as
    it ended, it keeps the `status` it ended with (FINISHED, FAILED)."""

    def __init__(self, run_id: str, status: str = "KILLED"):
        super().__init__(run_id)
        self.run_id, self.status = run_id, status


@dataclass
class RunResult:
    """A finished run: its id, the epochs it trained, its final metrics by schema name, and its config group."""

    run_id: str
    epochs_trained: int
    metrics: dict
    group: str = ""


def check(config: RunConfig) -> tuple[ModelSpec, ModelAdapter]:
    """Validate every setting, then what the model and its framework allow; raises ConfigError."""
    config.validate()
    spec = get_model_spec(config.model)
    try:
        framework = spec.framework_of(config.framework)
    except ValueError as err:
        raise ConfigError(f"--framework: {err}") from err
    styles = spec.styles(framework)
    if config.style is not None and config.style not in styles:
        raise ConfigError(
            f"--style: model {config.model!r} has no style {config.style!r} in {framework}; "
            f"expected one of {', '.join(styles)}"
        )
    adapter = adapter_for(framework)
    if config.width is not None and framework not in spec.scalable:
        scaling = ", ".join(f"{m.name} in {' or '.join(m.scalable)}" for m in MODELS.values() if m.scalable)
        raise ConfigError(f"--width: {config.model} in {framework} has a fixed width (scalable: {scaling})")
    adapter.check(config, spec)
    return spec, adapter


@dataclass
class Prepared:
    """Everything a run needs before it is logged: data on the device, the model and its learner."""

    spec: ModelSpec
    adapter: ModelAdapter
    splits: Splits
    device: str
    yardstick: Yardstick  # best error and the train-eval and validation sizes, for the diagnosis
    model: object
    learner: object
    inputs: dict  # split name -> images in the learner's own type
    own_data: bool  # read from the user's --data-dir, not the verified cache
    memory_kept: bool  # the allocator keeps freed memory for reuse (experiments.memory)


def prepare(config: RunConfig) -> Prepared:
    """Validate, load the splits and build the model; raises ConfigError or DataError before any logging.
    Also sets the process-wide allocator setting (experiments.memory) before the model allocates anything."""
    spec, adapter = check(config)
    try:
        splits = make_splits(
            config.dataset,
            data_dir=config.data_dir,
            val_split=config.val_split,
            val_from_test=config.val_from_test,
            train_size=config.train_size,
            test_size=config.test_size,
            seed=config.seed,
        )
    except ValueError as err:  # sizes that do not fit the data
        raise ConfigError(str(err)) from err
    device = adapter.device(config)
    memory_kept = keep_freed_memory(config.keep_freed_memory)
    model, learner = adapter.build(spec, config, device)
    dtype = adapter.input_dtype(config)
    inputs = {
        name: learner.to_inputs(scale_images(part.images, config.input_scaling, dtype))
        for name, part in (("train", splits.train), ("val", splits.val), ("test", splits.test))
    }
    yardstick = Yardstick(
        best_error_for(config.dataset, config.best_error),
        train_eval_size=min(config.train_eval_size, len(splits.train)),
        val_size=len(splits.val),
    )
    return Prepared(
        spec,
        adapter,
        splits,
        device,
        yardstick,
        model,
        learner,
        inputs,
        own_data=config.data_dir is not None,
        memory_kept=memory_kept,
    )


def run_params(config: RunConfig, ready: Prepared) -> dict:
    """Every logged setting that applies to the model's framework, as resolved for this run, and the versions."""
    spec, splits = ready.spec, ready.splits
    settings = {
        name: getattr(config, name)
        for name, setting in SETTINGS.items()
        if setting.logged and (not setting.frameworks or ready.adapter.framework in setting.frameworks)
    }
    return {
        **settings,
        Param.FRAMEWORK: ready.adapter.framework,
        Param.STYLE: config.style or spec.styles(ready.adapter.framework)[0],
        Param.DATA_DIR: splits.data_dir,
        Param.TRAIN_SIZE: len(splits.train),
        Param.VAL_SIZE: len(splits.val),
        Param.TEST_SIZE: len(splits.test),
        Param.TEST_IMAGES_SHA256: splits.test_sha256,
        Param.TRAIN_EVAL_SIZE: ready.yardstick.train_eval_size,
        Param.BEST_ERROR: ready.yardstick.best_error,
        Param.DEVICE: ready.device,
        Param.KEEP_FREED_MEMORY: ready.memory_kept,
        **ready.adapter.resolved_params(config, ready.model, ready.device),
        Param.TORCH_VERSION: torch.__version__,
        Param.NUMPY_VERSION: np.__version__,
        Param.MLFLOW_VERSION: mlflow.__version__,
        Param.PYTHON_VERSION: platform.python_version(),
    }


def test_artifacts(tested: Evaluation, test, class_names) -> dict:
    """Confusion matrix, per-class accuracy and misclassified samples of the test evaluation."""
    predicted, confidence = tested.predicted, tested.confidence
    matrix = confusion_matrix(test.labels, predicted, labels=range(NUM_CLASSES))
    support = matrix.sum(axis=1)
    per_class = pd.DataFrame(
        {
            "class": range(NUM_CLASSES),
            "name": class_names,
            "support": support,
            "correct": matrix.diagonal(),
            "accuracy": np.where(support > 0, matrix.diagonal() / np.maximum(support, 1), np.nan),
        }
    )
    wrong = np.flatnonzero(predicted != test.labels)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:MISCLASSIFIED_LIMIT]
    misclassified = pd.DataFrame(
        {
            "index": test.index[wrong],
            "true": test.labels[wrong],
            "predicted": predicted[wrong],
            "confidence": confidence[wrong].round(5),
        }
    )
    predictions = {
        "index": smallest_int(test.index),
        "label": smallest_int(test.labels),
        "predicted": smallest_int(predicted),
        "confidence": confidence.astype(np.float16),
    }
    return {
        "confusion": {"class_names": list(class_names), "matrix": matrix.tolist()},
        "per_class": per_class,
        "misclassified": misclassified,
        "misclassified_images": test.images[wrong],
        "predictions": predictions,
    }


def smallest_int(values: np.ndarray) -> np.ndarray:
    """The integers in the smallest unsigned type that holds them (10,000 predictions fit in 50 KB)."""
    return values.astype(np.min_scalar_type(int(values.max(initial=0))))


def val_images(config: RunConfig, val) -> dict:
    """Which images the validation set holds (the file they come from, their indexes in it, their labels, and the
    SHA-256 of those images), so the dashboard can show, from its own copy of the dataset once the hash matches, the
    validation images whose prediction changed between two epochs."""
    return {
        "source": "train" if config.val_split > 0 else "test",
        "index": val.index.tolist(),
        "labels": val.labels.tolist(),
        "sha256": images_sha256(val.images),
    }


def execute(
    config: RunConfig,
    tags: dict | None = None,
    should_stop: Callable[[EpochRecord], bool] | None = None,
    on_start: Callable[[str], None] | None = None,
) -> RunResult:
    """Train and test one configuration, logging it as one new MLflow run; returns the final metrics.

    tags are added to the run's own; should_stop(epoch record) can end training early (a sweep's
    pruner); on_start(run_id) is called once the run exists.
    """
    ready = prepare(config)
    params = run_params(config, ready)
    with KilledWhenInterrupted() as guard:
        with interrupts.held():  # the run is created and described whole; an interrupt waits for that, then ends it
            guard.logger = RunLogger.start(
                config.experiment,
                config.name(),
                params=params,
                tags={
                    Tag.RECIPE_SOURCE: ready.spec.source,
                    Tag.CONFIG_GROUP: config_group(params),
                    **({Tag.SUITE: config.suite} if config.suite else {}),
                    **(tags or {}),
                },
                config=config.as_dict(),
                class_names=ready.splits.class_names,
                heartbeat_seconds=config.heartbeat,
                retry_seconds=config.store_retry,
            )
            guard.logger.log_dict(val_images(config, ready.splits.val), Artifact.VAL_IMAGES)
            if on_start:
                on_start(guard.logger.run_id)
        result = train_and_log(config, ready, guard.logger, should_stop=should_stop)
    return replace(result, group=config_group(params))


def resume(run_id: str, progress: bool = True) -> tuple[RunConfig, RunResult]:
    """Continue a KILLED or FAILED run from its last checkpoint, in the same MLflow run."""
    client = get_client()
    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        raise ConfigError(f"--resume: no run {run_id!r} in the tracking store ({err.message})") from err
    spooled = read_spool(run_id)  # this machine's copy of an epoch its store was away for
    if run.info.status not in ("KILLED", "FAILED") and spooled is None:
        raise ConfigError(f"--resume: run {run_id} is {run.info.status}; only KILLED or FAILED runs can resume")
    if spooled is None and not any(f.path == Artifact.CHECKPOINT for f in client.list_artifacts(run_id)):
        raise ConfigError(
            f"--resume: run {run_id} has no {Artifact.CHECKPOINT} (it stopped before its first checkpoint was written)"
        )
    record = spooled_record(spooled, run_id) if spooled else None
    with tempfile.TemporaryDirectory() as tmp:
        stored = json.loads(Path(client.download_artifacts(run_id, Artifact.CONFIG, tmp)).read_text())
    config = replace(RunConfig.from_dict(stored, f"--resume: run {run_id}'s {Artifact.CONFIG}"), progress=progress)
    ready = prepare(config)
    with KilledWhenInterrupted() as guard:
        with interrupts.held():  # reopened RUNNING and known to the guard, or not reopened
            guard.logger, checkpoint = RunLogger.reopen(
                run_id,
                ready.splits.class_names,
                config.heartbeat,
                config.store_retry,
                spooled["checkpoint"] if spooled else None,
            )
        if not any(f.path == Artifact.VAL_IMAGES for f in client.list_artifacts(run_id)):  # logged by an older version
            guard.logger.log_dict(val_images(config, ready.splits.val), Artifact.VAL_IMAGES)
        if record:  # log the epoch the store missed, then forget the spool
            guard.logger.log_epoch(record, checkpoint)
            shutil.rmtree(SPOOL_DIR / run_id)
        result = train_and_log(config, ready, guard.logger, resume_from=checkpoint)
    return config, result


def spooled_record(spooled: dict, run_id: str) -> EpochRecord:
    """The spooled epoch's record, or one line saying it cannot be read (spooled by an older version)."""
    try:
        return EpochRecord.from_dict(spooled["record"])
    except (KeyError, TypeError) as err:
        raise ConfigError(
            f"--resume: the epoch spooled in {SPOOL_DIR / run_id} was written by an older version "
            f"(no {err}); move that folder away to resume from the store's last checkpoint"
        ) from err


class KilledWhenInterrupted:
    """Around a run's whole life in this process, from the moment its logger exists. Ctrl-C or SIGTERM, wherever
    it lands (during training, or between two statements of the code that starts it), ends the run KILLED and
    leaves as RunInterrupted; a run that had just ended keeps its status. Any other error (but the store going
    away, which the spool resumes) ends it FAILED. No run is left RUNNING with its heartbeat still beating."""

    logger: RunLogger | None = None

    def __enter__(self):
        return self

    def __exit__(self, kind, err, traceback) -> None:
        logger = self.logger
        if logger is None or err is None or isinstance(err, RunInterrupted):
            return
        if isinstance(err, KeyboardInterrupt):
            if logger.final_status is None:
                with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C while it ends: KILLED all the same
                    logger.finish("KILLED", error=f"interrupted ({err or 'Ctrl-C'})")
            raise RunInterrupted(logger.run_id, logger.final_status or "KILLED") from err
        if isinstance(err, StoreAway):  # nothing more can be told to the store: the run resumes from the spool
            logger.heartbeat.stop()
        elif logger.final_status is None:
            logger.finish("FAILED", error=f"{type(err).__name__}: {err}")


def train_and_log(
    config: RunConfig,
    ready: Prepared,
    logger: RunLogger,
    resume_from: dict | None = None,
    should_stop: Callable[[EpochRecord], bool] | None = None,
) -> RunResult:
    """fit, test with the best-val weights, log the results; a diverged run ends FAILED with its diagnosis, and
    the caller's KilledWhenInterrupted ends any other stopped run."""
    started = time.perf_counter()
    splits, learner, inputs = ready.splits, ready.learner, ready.inputs
    eval_rows = np.sort(np.random.default_rng(config.seed).permutation(len(splits.train))[: config.train_eval_size])
    try:
        fitted = fit(
            learner,
            (inputs["train"], learner.to_labels(splits.train.labels)),
            (inputs["val"], splits.val.labels),
            (inputs["train"][eval_rows], splits.train.labels[eval_rows]),
            epochs=config.epochs,
            batch_size=config.batch_size,
            seed=config.seed,
            best_error=ready.yardstick.best_error,
            log_every=config.log_every,
            eval_batch_size=config.eval_batch_size,
            progress=config.progress,
            on_epoch=logger.log_epoch,
            resume_from=resume_from,
            should_stop=should_stop,
        )
        if fitted.epochs_trained < config.epochs:
            logger.set_tags({Tag.STOPPED_AT_EPOCH: fitted.epochs_trained})
        learner.load_weights(fitted.best_weights)
        tested = evaluate(learner, inputs["test"], splits.test.labels, batch_size=config.eval_batch_size)
        final = log_results(logger, ready, fitted, tested)
        final[Metric.TOTAL_SECONDS] = time.perf_counter() - started
        logger.log_metrics({Metric.TOTAL_SECONDS: final[Metric.TOTAL_SECONDS]}, step=fitted.epochs_trained)
        logger.finish("FINISHED")
    except Diverged as err:
        logger.set_tags(
            {Tag.DIVERGED_AT_STEP: err.step, Tag.DIAGNOSIS: DIVERGED, Tag.DIAGNOSIS_RULE: f"{err}: {ADVICE[DIVERGED]}"}
        )
        logger.finish("FAILED", error=str(err))
        err.run_id = logger.run_id
        raise
    return RunResult(logger.run_id, fitted.epochs_trained, final)


def log_results(logger: RunLogger, ready: Prepared, fitted: FitResult, tested: Evaluation) -> dict:
    """Final metrics, the verdict (best epoch, diagnosis) of the whole history, and the artifacts."""
    judged = verdict(fitted.history, ready.yardstick)
    layers = ready.adapter.layer_table(ready.model)
    final = {
        Metric.TEST_LOSS: tested.loss,
        Metric.TEST_ACC: tested.acc,
        Metric.BEST_EPOCH: judged.best_epoch,
        Metric.BEST_VAL_ACC: judged.best_val_acc,
        Metric.EPOCHS_TRAINED: judged.epochs_trained,
        **ready.adapter.size_figures(ready.model, layers),
    }
    logger.log_metrics(final, step=fitted.epochs_trained)
    logger.set_tags(
        {
            Tag.DIAGNOSIS: judged.diagnosis,
            Tag.DIAGNOSIS_RULE: f"last trained epoch ({judged.epochs_trained}): {judged.rule}",
        }
    )
    artifacts = test_artifacts(tested, ready.splits.test, ready.splits.class_names)
    logger.log_table(layers, Artifact.LAYERS)
    logger.log_dict(artifacts["confusion"], Artifact.CONFUSION_TEST)
    logger.log_table(artifacts["per_class"], Artifact.PER_CLASS)
    logger.log_table(artifacts["misclassified"], Artifact.MISCLASSIFIED)
    logger.log_npz(artifacts["predictions"], Artifact.TEST_PREDICTIONS)
    if ready.own_data:  # the user's own files: no other machine can find them, so keep their pictures
        logger.log_npz({"images": artifacts["misclassified_images"]}, Artifact.MISCLASSIFIED_IMAGES)
    ready.adapter.log_weights(logger, ready.model)
    return final

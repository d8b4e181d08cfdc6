"""One tracked run: configuration -> data -> model -> fit -> test -> everything logged to MLflow."""
import json
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable

import mlflow
from mlflow.exceptions import MlflowException
import numpy as np
import pandas as pd
import torch
from sklearn.metrics import confusion_matrix

from experiments.data import DATASETS, INPUT_SCALINGS, NUM_CLASSES, make_splits, scale_images
from experiments.diagnosis import BEST_ERROR, diagnose
from experiments.layers import dropout_layers, set_dropout
from experiments.models import MODELS, get_model_spec
from experiments.schema import Artifact, Metric, Param, Tag
from experiments.summary import layer_table, size_figures
from experiments.tracking import DEFAULT_EXPERIMENT, RunLogger, get_client
from experiments.train import (OPTIMIZERS, PRECISIONS, Diverged, TorchLearner, default_device, evaluate, fit,
                               resolve_precision)

MISCLASSIFIED_LIMIT = 1000  # most-confident mistakes kept per run


class ConfigError(ValueError):
    """A run configuration that cannot run; raised before anything is logged."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run; it is logged KILLED with its last checkpoint."""

    def __init__(self, run_id: str):
        super().__init__(run_id)
        self.run_id = run_id


@dataclass
class RunConfig:
    model: str
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    input_scaling: str
    val_split: float = 0.0
    val_from_test: float = 0.0
    train_size: int | None = None
    test_size: int | None = None
    style: str | None = None
    dataset: str = "mnist"
    data_dir: str | None = None
    seed: int = 0
    train_eval_size: int = 10_000
    best_error: float | None = None
    log_every: int = 50
    filters: int = 8
    dtype: str = "float64"  # numpy model only
    device: str | None = None
    precision: str = "fp32"  # PyTorch models: fp32, bf16, or auto (bf16 where native)
    channels_last: bool = False  # PyTorch models: NHWC images and conv weights
    dropout: float | None = None  # PyTorch models: one rate for every dropout layer (None: the model's own)
    experiment: str = DEFAULT_EXPERIMENT
    run_name: str | None = None
    suite: str | None = None
    progress: bool = True

    @classmethod
    def from_recipe(cls, model: str, **overrides) -> "RunConfig":
        """The model's published recipe, with any non-None override applied."""
        recipe = asdict(get_model_spec(model).recipe)
        recipe.pop("published_test_acc")
        config = cls(model=model, **recipe)
        if overrides.get("val_split") or overrides.get("val_from_test"):
            config = replace(config, val_split=0.0, val_from_test=0.0)  # the override chooses the split kind
        known = {f.name for f in fields(cls)}
        return replace(config, **{k: v for k, v in overrides.items() if v is not None and k in known})

    def validate(self) -> None:
        """Raise ConfigError naming the first bad argument and its allowed values."""
        spec = MODELS.get(self.model)
        checks = [
            (spec is not None, "model", f"one of {', '.join(MODELS)}"),
            (self.dataset in DATASETS, "dataset", f"one of {', '.join(DATASETS)}"),
            (self.optimizer in OPTIMIZERS, "optimizer", f"one of {', '.join(OPTIMIZERS)}"),
            (self.input_scaling in INPUT_SCALINGS, "input-scaling", f"one of {', '.join(INPUT_SCALINGS)}"),
            (self.epochs > 0, "epochs", "an integer > 0"),
            (self.batch_size > 0, "batch-size", "an integer > 0"),
            (self.lr > 0, "lr", "a number > 0"),
            (self.log_every > 0, "log-every", "an integer > 0"),
            (self.train_eval_size > 0, "train-eval-size", "an integer > 0"),
            (self.filters > 0, "filters", "an integer > 0"),
            (self.train_size is None or self.train_size > 0, "train-size", "an integer > 0"),
            (self.test_size is None or self.test_size > 0, "test-size", "an integer > 0"),
            (0 <= self.val_split < 1, "val-split", "a fraction in (0, 1)"),
            (0 <= self.val_from_test < 1, "val-from-test", "a fraction in (0, 1)"),
            ((self.val_split > 0) != (self.val_from_test > 0), "val-split/val-from-test",
             "exactly one of them > 0"),
            (self.dtype in ("float64", "float32"), "dtype", "float64 or float32"),
            (self.precision in PRECISIONS, "precision", f"one of {', '.join(PRECISIONS)}"),
            (self.dropout is None or 0 <= self.dropout < 1, "dropout", "a rate in [0, 1)"),
        ]
        for ok, argument, allowed in checks:
            if not ok:
                raise ConfigError(f"--{argument}: {getattr(self, argument.replace('-', '_'), '')!r} is not "
                                  f"allowed; expected {allowed}")
        if spec.framework == "numpy" and self.optimizer != "sgd":
            raise ConfigError(f"--optimizer: the numpy model supports only sgd, not {self.optimizer!r}")
        if self.style is not None and self.style not in spec.styles:
            raise ConfigError(f"--style: model {self.model!r} has no style {self.style!r}; "
                              f"expected one of {', '.join(spec.styles)}")


def make_model_and_learner(config: RunConfig, device: str):
    spec = get_model_spec(config.model)
    if spec.framework == "numpy":
        from experiments.numpy_cnn import NumpyLearner, TinyNumpyCNN

        model = TinyNumpyCNN(filters=config.filters, seed=config.seed, dtype=np.dtype(config.dtype))
        return model, NumpyLearner(model, lr=config.lr)
    torch.manual_seed(config.seed)
    model = spec.build(config.style)
    if config.dropout is not None:
        if not dropout_layers(model):
            raise ConfigError(f"--dropout: model {config.model!r} has no dropout layers")
        set_dropout(model, config.dropout)
    return model, TorchLearner(model, config.optimizer, config.lr, device,
                               resolve_precision(config.precision, device), config.channels_last)


def run_params(config: RunConfig, ready: "Prepared") -> dict:
    spec, splits, device, best_error = ready.spec, ready.splits, ready.device, ready.best_error
    rates = ",".join(f"{layer.p:g}" for layer in dropout_layers(ready.model))
    return {
        Param.MODEL: config.model, Param.STYLE: config.style or spec.styles[0], Param.FRAMEWORK: spec.framework,
        Param.DATASET: config.dataset, Param.DATA_DIR: splits.data_dir, Param.INPUT_SCALING: config.input_scaling,
        Param.EPOCHS: config.epochs, Param.BATCH_SIZE: config.batch_size, Param.OPTIMIZER: config.optimizer,
        Param.LR: config.lr, Param.SEED: config.seed, Param.VAL_SPLIT: config.val_split,
        Param.VAL_FROM_TEST: config.val_from_test, Param.TRAIN_SIZE: len(splits.train),
        Param.VAL_SIZE: len(splits.val), Param.TEST_SIZE: len(splits.test),
        Param.TRAIN_EVAL_SIZE: min(config.train_eval_size, len(splits.train)), Param.BEST_ERROR: best_error,
        Param.LOG_EVERY: config.log_every, Param.DEVICE: device,
        **({Param.FILTERS: config.filters, Param.DTYPE: config.dtype} if spec.framework == "numpy" else
           {Param.PRECISION: resolve_precision(config.precision, device), Param.CHANNELS_LAST: config.channels_last,
            Param.DROPOUT: rates or "none"}),
        Param.TORCH_VERSION: torch.__version__, Param.NUMPY_VERSION: np.__version__,
        Param.MLFLOW_VERSION: mlflow.__version__, Param.PYTHON_VERSION: platform.python_version(),
    }


def test_artifacts(test_result: dict, test, class_names) -> dict:
    """Confusion matrix, per-class accuracy and misclassified samples of the test evaluation."""
    predicted, confidence = test_result["predicted"], test_result["confidence"]
    matrix = confusion_matrix(test.labels, predicted, labels=range(NUM_CLASSES))
    support = matrix.sum(axis=1)
    per_class = pd.DataFrame({"class": range(NUM_CLASSES), "name": class_names, "support": support,
                              "correct": matrix.diagonal(),
                              "accuracy": np.where(support > 0, matrix.diagonal() / np.maximum(support, 1), np.nan)})
    wrong = np.flatnonzero(predicted != test.labels)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:MISCLASSIFIED_LIMIT]
    misclassified = pd.DataFrame({"index": test.index[wrong], "true": test.labels[wrong],
                                  "predicted": predicted[wrong], "confidence": confidence[wrong].round(5)})
    return {"confusion": {"class_names": list(class_names), "matrix": matrix.tolist()},
            "per_class": per_class, "misclassified": misclassified}


@dataclass
class Prepared:
    """Everything a run needs before it is logged: data on the device, the model and its learner."""

    spec: object
    splits: object
    device: str
    best_error: float
    model: object
    learner: object
    inputs: dict


def prepare(config: RunConfig) -> Prepared:
    """Validate, load the splits and build the model; raises ConfigError or DataError before any logging."""
    config.validate()
    spec = get_model_spec(config.model)
    try:
        splits = make_splits(config.dataset, data_dir=config.data_dir, val_split=config.val_split,
                             val_from_test=config.val_from_test, train_size=config.train_size,
                             test_size=config.test_size, seed=config.seed)
    except ValueError as err:  # sizes that do not fit the data
        raise ConfigError(str(err)) from err
    device = "cpu" if spec.framework == "numpy" else (config.device or default_device())
    best_error = BEST_ERROR[config.dataset] if config.best_error is None else config.best_error
    model, learner = make_model_and_learner(config, device)
    dtype = np.dtype(config.dtype) if spec.framework == "numpy" else np.float32
    inputs = {name: learner.to_inputs(scale_images(part.images, config.input_scaling, dtype))
              for name, part in (("train", splits.train), ("val", splits.val), ("test", splits.test))}
    return Prepared(spec, splits, device, best_error, model, learner, inputs)


def execute(config: RunConfig, tags: dict | None = None, should_stop: Callable[[dict], bool] | None = None,
            on_start: Callable[[str], None] | None = None) -> dict:
    """Train and test one configuration, logging it as one new MLflow run; returns the final metrics.

    tags are added to the run's own; should_stop(epoch record) can end training early (a sweep's
    pruner); on_start(run_id) is called once the run exists.
    """
    ready = prepare(config)
    logger = RunLogger.start(
        config.experiment, config.run_name or f"{config.model}-{config.dataset}",
        params=run_params(config, ready),
        tags={Tag.RECIPE_SOURCE: ready.spec.source, **({Tag.SUITE: config.suite} if config.suite else {}),
              **(tags or {})},
        config=asdict(config), class_names=ready.splits.class_names)
    if on_start:
        on_start(logger.run_id)
    return train_and_log(config, ready, logger, should_stop=should_stop)


def resume(run_id: str, progress: bool = True) -> tuple[RunConfig, dict]:
    """Continue a KILLED or FAILED run from its last checkpoint, in the same MLflow run."""
    client = get_client()
    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        raise ConfigError(f"--resume: no run {run_id!r} in the tracking store ({err.message})") from err
    if run.info.status not in ("KILLED", "FAILED"):
        raise ConfigError(f"--resume: run {run_id} is {run.info.status}; only KILLED or FAILED runs can resume")
    if not any(f.path == Artifact.CHECKPOINT for f in client.list_artifacts(run_id)):
        raise ConfigError(f"--resume: run {run_id} has no {Artifact.CHECKPOINT} (it stopped before its first epoch)")
    with tempfile.TemporaryDirectory() as tmp:
        stored = json.loads(Path(client.download_artifacts(run_id, Artifact.CONFIG, tmp)).read_text())
    config = replace(RunConfig(**stored), progress=progress)
    ready = prepare(config)
    logger, checkpoint = RunLogger.reopen(run_id, ready.splits.class_names)
    return config, train_and_log(config, ready, logger, resume_from=checkpoint)


def train_and_log(config: RunConfig, ready: Prepared, logger: RunLogger, resume_from: dict | None = None,
                  should_stop: Callable[[dict], bool] | None = None) -> dict:
    """fit, test with the best-val weights, log the results; a stopped run ends KILLED or FAILED, never RUNNING."""
    started = time.perf_counter()
    splits, learner, inputs = ready.splits, ready.learner, ready.inputs
    eval_rows = np.sort(np.random.default_rng(config.seed).permutation(len(splits.train))[:config.train_eval_size])
    try:
        history = fit(learner, (inputs["train"], learner.to_labels(splits.train.labels)),
                      (inputs["val"], splits.val.labels),
                      (inputs["train"][eval_rows], splits.train.labels[eval_rows]),
                      epochs=config.epochs, batch_size=config.batch_size, seed=config.seed,
                      best_error=ready.best_error, log_every=config.log_every, progress=config.progress,
                      on_epoch=logger.log_epoch, resume_from=resume_from, should_stop=should_stop)
        if history["last"]["epoch"] < config.epochs:
            logger.set_tags({Tag.STOPPED_AT_EPOCH: history["last"]["epoch"]})
        learner.load_state(history["best_state"])
        tested = evaluate(learner, inputs["test"], splits.test.labels)
        final = log_results(logger, ready.model, history, tested, splits)
        final[Metric.TOTAL_SECONDS] = time.perf_counter() - started
        logger.log_metrics({Metric.TOTAL_SECONDS: final[Metric.TOTAL_SECONDS]}, step=history["last"]["epoch"])
        logger.finish("FINISHED")
    except KeyboardInterrupt as err:
        stop(logger, "KILLED", f"interrupted ({err or 'Ctrl-C'})")
        raise RunInterrupted(logger.run_id) from err
    except Diverged as err:
        logger.set_tags({Tag.DIVERGED_AT_STEP: err.step})
        stop(logger, "FAILED", str(err))
        raise
    except BaseException as err:
        stop(logger, "FAILED", f"{type(err).__name__}: {err}")
        raise
    return {"run_id": logger.run_id, "epochs_trained": history["last"]["epoch"], **final}


def stop(logger: RunLogger, status: str, reason: str) -> None:
    """End a run early: keep its last checkpoint as an artifact (if the store still takes it), then its status."""
    try:
        logger.upload_checkpoint()
    finally:
        logger.finish(status, error=reason)


def log_results(logger: RunLogger, model, history: dict, tested: dict, splits) -> dict:
    """Final metrics, diagnosis tags and artifacts of a trained run."""
    last = history["last"]
    table = layer_table(model)
    final = {Metric.TEST_LOSS: tested["loss"], Metric.TEST_ACC: tested["acc"],
             Metric.BEST_EPOCH: history["best_epoch"], Metric.BEST_VAL_ACC: history["best_val_acc"],
             **size_figures(model, table)}
    logger.log_metrics(final, step=last["epoch"])
    label, rule = diagnose(last[Metric.AVOIDABLE_BIAS], last[Metric.VARIANCE])
    logger.set_tags({Tag.DIAGNOSIS: label, Tag.DIAGNOSIS_RULE: f"final epoch: {rule}"})
    artifacts = test_artifacts(tested, splits.test, splits.class_names)
    logger.log_table(table, Artifact.LAYERS)
    logger.log_dict(artifacts["confusion"], Artifact.CONFUSION_TEST)
    logger.log_table(artifacts["per_class"], Artifact.PER_CLASS)
    logger.log_table(artifacts["misclassified"], Artifact.MISCLASSIFIED)
    if hasattr(model, "parameter_arrays"):
        logger.log_npz(model.parameter_arrays(), Artifact.NUMPY_WEIGHTS)
    else:
        logger.log_torch_model(model)
    return final

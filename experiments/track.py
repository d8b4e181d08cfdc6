"""Track your own training loop: the public API, and the one writer of a run's schema.

    from experiments import track

    run = track.start(config=vars(args), model=model, dataset="mnist", class_names=[str(d) for d in range(10)])
    for epoch in range(1, args.epochs + 1):
        train(args, model, device, train_loader, optimizer, epoch)
        run.log_epoch(model, train=train_loader, val=val_loader)
    run.finish(model, test=test_loader)

After each epoch hand over the model with your train and validation loaders (at most `train_eval_size` training
images are evaluated), or the logits and labels you computed yourself: `run.log_epoch(train=(logits, labels),
val=(logits, labels))`. Every epoch logs what the runner logs: losses, accuracies, bias and variance, confusion
matrices, per-class errors, the reliability table and ECE, the validation predictions. `finish` evaluates the test
set and logs the test predictions, the misclassified images, the parameter counts and layer table, the best epoch
and the diagnosis. The run gets the runner's guarantees: the store is checked before it exists, a heartbeat marks
it alive, Ctrl-C or SIGTERM ends it KILLED and an error FAILED (with `with track.start(...) as run:` or without),
a loss that diverges stops it, and a store that goes away is retried for `store_retry` seconds.

The built-in runner (experiments.run) writes through the same Run: there is one writer of the schema.
"""

import atexit
import contextlib
import copy
import math
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import confusion_matrix

from core.datasets import Subset, images_sha256
from core.diagnosis import ADVICE, DIVERGED, Yardstick, best_error_for, verdict
from core.schema import Artifact, Metric, Param, Tag, Value
from core.settings import DEFAULT_EXPERIMENT, SETTINGS, ConfigError, dataset_label, free_config_group
from experiments import interrupts
from experiments.adapters import LAYER_COLUMNS, ModelAdapter, adapter_for
from experiments.adapters.keras_adapter import PROBABILITY_FLOOR
from experiments.run_logger import RunLogger
from experiments.spool import StoreAway
from experiments.train import (
    Diverged,
    EpochRecord,
    EpochStats,
    Evaluation,
    FitProgress,
    diverged,
    evaluation_of,
    measure_epoch,
)

# Params the Run logs from the sets it is handed (MLflow keeps a param's first value): your config's own values of
# them (a --test-size of None, say) stay in its config.json, not in the params the dashboard reads.
MEASURED = (Param.TRAIN_EVAL_SIZE, Param.VAL_SIZE, Param.TEST_SIZE, Param.TEST_IMAGES_SHA256, Param.INPUT_SHAPE)
KEPT_IMAGES_LIMIT = 64 * 2**20  # bytes of images a run keeps when no other machine can find them by name
EVAL_BATCH = SETTINGS["eval_batch_size"].default  # images per batch when evaluating arrays handed over
MISCLASSIFIED_LIMIT = 1000  # most-confident mistakes kept per run


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run: it is logged KILLED with its last checkpoint, or, when the signal came as
    it ended, it keeps the `status` it ended with (FINISHED, FAILED)."""

    def __init__(self, run_id: str, status: str = "KILLED"):
        super().__init__(run_id)
        self.run_id, self.status = run_id, status


class Run:
    """One tracked run: what it logged so far, and how it ends. Also a context manager: Ctrl-C or SIGTERM inside
    ends the run KILLED and leaves as RunInterrupted; any other error (but the store going away, which the runner's
    spool resumes) ends it FAILED, and so does leaving the block before finish(). No run is left RUNNING with its
    heartbeat beating."""

    def __init__(self, logger: RunLogger, class_names: Sequence[str], yardstick: Yardstick):
        self.logger, self.class_names, self.yardstick = logger, tuple(class_names), yardstick
        self.started = self.epoch_started = time.perf_counter()
        self.progress = FitProgress()
        self.step_losses: list[tuple[int, float]] = []
        self.steps = self.images_seen = 0
        self.train_eval_size = SETTINGS["train_eval_size"].default
        self.kept_images: dict[str, np.ndarray] = {}
        self.uncaught: BaseException | None = None
        self.restore_signals = lambda: None  # what track.start changed, put back when the run ends

    @property
    def run_id(self) -> str:
        return self.logger.run_id

    @classmethod
    def open(cls, params: dict, tags: dict, config: dict, class_names, yardstick: Yardstick, **where) -> "Run":
        """Create the run in the store, described whole (an interrupt waits for that, then ends it KILLED and
        leaves as RunInterrupted): params, tags, config. `where` holds experiment, run_name, heartbeat_seconds,
        retry_seconds."""
        logger = None
        try:
            with interrupts.held():
                logger = RunLogger.start(
                    where.pop("experiment"),
                    where.pop("run_name"),
                    params=params,
                    tags=tags,
                    config=config,
                    class_names=tuple(class_names),
                    **where,
                )
        except KeyboardInterrupt as err:
            if logger is None:
                raise
            cls(logger, class_names, yardstick).__exit__(type(err), err, None)
        return cls(logger, class_names, yardstick)

    # ------------------------------------------------------------ ending, whatever happens

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, kind, err, traceback) -> None:
        if isinstance(err, RunInterrupted):
            return
        self.end_after(err)
        if isinstance(err, KeyboardInterrupt):
            raise RunInterrupted(self.run_id, self.logger.final_status or "KILLED") from err

    def end(self, status: str, error: str | None = None) -> None:
        """End the run with `status` (FINISHED, FAILED, KILLED), once."""
        self.logger.finish(status, error=error)
        self.restore_signals()

    def end_after(self, err: BaseException | None) -> None:
        """End a run that did not finish: KILLED after Ctrl-C or SIGTERM, FAILED after an error or when it was left
        before finish() (err None); a run whose store went away keeps its spool for --resume."""
        if self.logger.final_status is not None:
            return
        if isinstance(err, KeyboardInterrupt):
            with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C while it ends: KILLED all the same
                self.end("KILLED", error=f"interrupted ({err or 'Ctrl-C'})")
        elif isinstance(err, StoreAway):  # nothing more can be told to the store
            self.logger.heartbeat.stop()
            self.restore_signals()
        else:
            self.end("FAILED", error=f"{type(err).__name__}: {err}" if err else "ended before finish()")

    # ------------------------------------------------------------ what the runner hands over

    def describe_val(self, source: str, val: Subset) -> None:
        """Which images the validation set holds (the file they come from, their indexes in it, their labels, and
        the SHA-256 of those images), so the dashboard can show the validation images whose prediction changed
        between two epochs: from its own copy of the dataset once the hash matches, or from the run's images."""
        record = {"source": source, "index": val.index.tolist(), "labels": val.labels.tolist()}
        self.logger.log_dict({**record, "sha256": images_sha256(val.images)}, Artifact.VAL_IMAGES)

    def keep_images(self, images: dict[str, np.ndarray]) -> None:
        """Keep images no other machine can find by name with the run (Artifact.RUN_IMAGES), at once, so that a run
        still training, or stopped, shows them too; up to KEPT_IMAGES_LIMIT bytes."""
        self.kept_images.update(images)
        if sum(a.nbytes for a in self.kept_images.values()) <= KEPT_IMAGES_LIMIT:
            self.logger.log_npz(self.kept_images, Artifact.RUN_IMAGES)

    def keep_source(self, path: Path) -> None:
        """A copy of the file your model comes from (Artifact.MODEL_SOURCE)."""
        self.logger.log_text(path.read_text(), Artifact.MODEL_SOURCE)

    def stopped_early(self, epochs_trained: int) -> None:
        self.logger.set_tags({Tag.STOPPED_AT_EPOCH: epochs_trained})

    def commit_epoch(self, record: EpochRecord, checkpoint: dict | None = None) -> None:
        """Log one measured epoch (and the runner's checkpoint) and add it to the history the verdict judges."""
        self.logger.log_epoch(record, checkpoint)
        self.progress.epochs[record.epoch] = {str(name): float(value) for name, value in record.metrics().items()}

    def log_results(
        self,
        tested: Evaluation,
        test: Subset,
        model,
        adapter: ModelAdapter,
        input_shape,
        history: pd.DataFrame,
        weights: str = Value.TESTED_BEST_VAL,
    ) -> dict:
        """Final metrics (the run's wall time too), the verdict (best epoch, diagnosis) of the whole history, and
        the artifacts, of a test evaluation with `weights` (Value.TESTED_WEIGHTS); returns the final metrics by
        schema name."""
        judged = verdict(history, self.yardstick)
        self.logger.set_tags({Tag.TESTED_WEIGHTS: weights})
        layers = adapter.layer_table(model, input_shape)
        final = {
            Metric.TEST_LOSS: tested.loss,
            Metric.TEST_ACC: tested.acc,
            **adapter.size_figures(model, layers),
        }
        if judged:  # at least one epoch was logged
            final |= {
                Metric.BEST_EPOCH: judged.best_epoch,
                Metric.BEST_VAL_ACC: judged.best_val_acc,
                Metric.EPOCHS_TRAINED: judged.epochs_trained,
            }
            self.logger.set_tags(
                {
                    Tag.DIAGNOSIS: judged.diagnosis,
                    Tag.DIAGNOSIS_RULE: f"last trained epoch ({judged.epochs_trained}): {judged.rule}",
                }
            )
        artifacts = test_artifacts(tested, test, self.class_names)
        self.logger.log_table(layers, Artifact.LAYERS)
        self.logger.log_dict(artifacts["confusion"], Artifact.CONFUSION_TEST)
        self.logger.log_table(artifacts["per_class"], Artifact.PER_CLASS)
        self.logger.log_table(artifacts["misclassified"], Artifact.MISCLASSIFIED)
        self.logger.log_npz(artifacts["predictions"], Artifact.TEST_PREDICTIONS)
        adapter.log_weights(self.logger, model, input_shape)
        final[Metric.TOTAL_SECONDS] = time.perf_counter() - self.started
        self.logger.log_metrics(final, step=int(history.index.max()) if len(history) else 0)
        return final

    def end_diverged(self, err: Diverged) -> None:
        """A diverged run ends FAILED, diagnosed so, with the step it blew up at."""
        self.logger.set_tags(
            {Tag.DIVERGED_AT_STEP: err.step, Tag.DIAGNOSIS: DIVERGED, Tag.DIAGNOSIS_RULE: f"{err}: {ADVICE[DIVERGED]}"}
        )
        self.end("FAILED", error=str(err))
        err.run_id = self.run_id

    # ------------------------------------------------------------ your own loop

    def log_step(self, loss: float, images: int = 0) -> None:
        """Optional, after an optimisation step: its loss (a float or a one-element tensor) for the step-loss curve
        and the divergence stop, and how many images it trained on, for images per second."""
        self.steps += 1
        self.images_seen += images
        value = float(loss)
        if diverged(value):
            err = Diverged(value, self.steps, self.progress.epochs_done + 1)
            self.end_diverged(err)
            raise err
        self.step_losses.append((self.steps, value))

    def log_epoch(self, model=None, *, train, val, epoch: int | None = None) -> EpochRecord:
        """Measure and log one epoch. `train` and `val` are each a loader of (images, labels) batches or an
        (images, labels) pair of arrays, evaluated with `model` in eval mode (at most train_eval_size training
        images); or, without a model, a (logits, labels) pair you computed. Raises Diverged, after ending the run
        FAILED, when the training loss is NaN or exploded."""
        epoch = epoch or self.progress.epochs_done + 1
        seconds = time.perf_counter() - self.epoch_started
        first = not self.progress.epochs
        on_train = measured(model, train, "train", len(self.class_names), self.train_eval_size)
        on_val = measured(model, val, "val", len(self.class_names), keep_images=first)
        if first:
            self.describe_first_epoch(len(on_train.labels), on_val)
        trained = self.images_seen or len(getattr(train, "dataset", ())) or math.nan  # images per epoch, if known
        stats = EpochStats(
            loss=on_train.evaluation.loss,
            acc=on_train.evaluation.acc,
            step_losses=self.step_losses or [(epoch, on_train.evaluation.loss)],
            seconds=seconds,
            samples_per_s=trained / seconds,
        )
        record = measure_epoch(
            epoch,
            stats,
            (on_train.evaluation, on_train.labels),
            (on_val.evaluation, on_val.labels),
            len(self.class_names),
            self.yardstick.best_error,
        )
        if diverged(on_train.evaluation.loss):
            err = Diverged(on_train.evaluation.loss, self.steps, epoch)
            self.end_diverged(err)
            raise err
        self.commit_epoch(record)
        self.step_losses, self.images_seen, self.epoch_started = [], 0, time.perf_counter()
        return record

    def describe_first_epoch(self, train_eval_size: int, val: "Measured") -> None:
        """What the first epoch logged tells about the sets: their sizes (for the diagnosis's intervals) and the
        validation images (kept with the run)."""
        self.yardstick = Yardstick(self.yardstick.best_error, train_eval_size, len(val.labels))
        self.logger.log_params({Param.TRAIN_EVAL_SIZE: train_eval_size, Param.VAL_SIZE: len(val.labels)})
        self.describe_val("val", Subset(shown(val.images, val.labels), val.labels, np.arange(len(val.labels))))
        if val.images is not None:
            self.keep_images({"val": val.images})

    def finish(self, model=None, *, test=None) -> dict:
        """Evaluate the test set (a loader or (images, labels) arrays with `model`, or (logits, labels)) with the
        weights the model has now, log the results, and end the run FINISHED; returns the final metrics by schema
        name."""
        if self.logger.final_status is not None:
            raise ConfigError(f"run {self.run_id} has already ended {self.logger.final_status}")
        if test is None:
            raise ConfigError("finish(test=...): give the test loader (with the model) or its (logits, labels)")
        tested = measured(model, test, "test", len(self.class_names), keep_images=True)
        test_set = Subset(shown(tested.images, tested.labels), tested.labels, np.arange(len(tested.labels)))
        self.logger.log_params(
            {Param.TEST_SIZE: len(tested.labels)}
            | ({Param.TEST_IMAGES_SHA256: images_sha256(tested.images)} if tested.images is not None else {})
            | ({Param.INPUT_SHAPE: "x".join(map(str, tested.input_shape))} if tested.input_shape else {})
        )
        if tested.images is not None:
            self.keep_images({"test": tested.images})
        adapter = NoModel() if model is None else adapter_for(framework_of(model))
        copied = None if model is None else copy.deepcopy(model)  # weights are logged from the CPU: leave yours be
        shape, history = tested.input_shape, self.progress.history()
        final = self.log_results(tested.evaluation, test_set, copied, adapter, shape, history, Value.TESTED_AS_HANDED)
        self.end("FINISHED")
        return final


def shown(images: np.ndarray | None, labels: np.ndarray) -> np.ndarray:
    """The images of a set, or blank ones where only logits were handed over."""
    return images if images is not None else np.zeros((len(labels), 1, 1), np.uint8)


class NoModel:
    """finish() without a model (logits handed over): no layer table, sizes or weights to log."""

    def layer_table(self, model, input_shape) -> pd.DataFrame:
        return pd.DataFrame(columns=LAYER_COLUMNS)

    def size_figures(self, model, table) -> dict:
        return {}

    def log_weights(self, logger, model, input_shape) -> None:
        pass


def start(
    config: dict | None = None,
    *,
    model=None,
    dataset: str = "",
    class_names: Sequence[str],
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
    tags: dict | None = None,
) -> Run:
    """Open a run of your own loop. `config` (a dict) is logged as params: a name that is a numeric run setting
    (core.settings: lr, epochs, batch_size, seed, best_error, train_eval_size...) is checked for its type and range
    as the runner checks it, any other is logged as it is. `model` names the run's model (its class) and
    framework; `dataset` names the data (a known dataset's name sets the best achievable error, any other is
    judged against 0 unless the config gives best_error); `class_names` label every axis.
    ConfigError before anything is logged when a setting is wrong; StoreError when the store cannot be used."""
    config = {name: value.item() if isinstance(value, np.generic) else value for name, value in (config or {}).items()}
    for name, value in config.items():
        problem = runner_problem(name, value)
        if problem:
            raise ConfigError(problem.replace(SETTINGS[name].flag, name, 1))
    if len(class_names) < 2:
        raise ConfigError(f"class_names: {len(class_names)} given; a classifier needs two or more")
    described = {
        **config,
        Param.MODEL: config.get("model") or (type(model).__name__ if model is not None else "unnamed"),
        Param.DATASET: dataset or config.get("dataset") or "unnamed",
    }
    best_error = best_error_for(described[Param.DATASET], config.get("best_error"), unknown=0.0)
    params = {
        **{name: value for name, value in described.items() if name not in MEASURED},
        Param.BEST_ERROR: best_error,
        **({Param.FRAMEWORK: framework_of(model)} if model is not None else {}),
        Param.TORCH_VERSION: torch.__version__,
        Param.NUMPY_VERSION: np.__version__,
    }
    tags = {
        Tag.CONFIG_GROUP: free_config_group(described),
        Tag.RECIPE_SOURCE: "your own loop (experiments.track)",
        **(tags or {}),
    }
    restore = interrupts.install_where_unset()  # SIGTERM as Ctrl-C, from before the run exists
    try:
        run = Run.open(
            params,
            tags,
            config,
            class_names,
            Yardstick(best_error),
            experiment=experiment,
            run_name=run_name or f"{described[Param.MODEL]}-{dataset_label(str(described[Param.DATASET]))}",
            heartbeat_seconds=config.get("heartbeat", SETTINGS["heartbeat"].default),
            retry_seconds=config.get("store_retry", SETTINGS["store_retry"].default),
        )
    except BaseException:  # no run (the store cannot be used), or one ended KILLED as it was created
        restore()
        raise
    run.train_eval_size = config.get("train_eval_size", run.train_eval_size)
    run.restore_signals = restore
    end_whatever_happens(run)
    return run


def runner_problem(name: str, value) -> str | None:
    """What the runner would refuse in a value of one of its settings: the type and range of a number, not the
    runner's own choices (your loop may use an optimizer the runner does not have)."""
    if name not in SETTINGS or name in ("model", "dataset") or SETTINGS[name].choices:
        return None
    return SETTINGS[name].problem(value)


def end_whatever_happens(run: Run) -> None:
    """A program that ends before run.finish() ends the run: KILLED after Ctrl-C or SIGTERM, else FAILED."""
    previous = sys.excepthook

    def remember(kind, err, traceback):
        run.uncaught = err
        previous(kind, err, traceback)

    sys.excepthook = remember
    atexit.register(lambda: run.end_after(run.uncaught))


# ---------------------------------------------------------------- measuring a set


@dataclass
class Measured:
    """A set as measured: its evaluation and labels; its images as uint8 for the galleries when they were asked
    for and can be shown; the shape of one input as the model takes it (None for logits handed over)."""

    evaluation: Evaluation
    labels: np.ndarray
    images: np.ndarray | None = None
    input_shape: tuple[int, ...] | None = None


def measured(model, data, split: str, classes: int, limit: int | None = None, keep_images: bool = False) -> Measured:
    """A set given as a loader of (images, labels) batches or an (images, labels) pair of arrays, evaluated with
    the model; or, without a model, as a (logits, labels) pair you computed. ConfigError when its scores are not
    one per class."""
    if isinstance(data, tuple | list) and len(data) == 2 and not is_loader(data):
        first, labels = as_numpy(data[0]), as_numpy(data[1]).astype(np.int64)
        if len(first) != len(labels) or labels.ndim != 1:
            raise ConfigError(f"{split}: {len(first)} rows but labels of shape {labels.shape}")
        if model is None:
            check_scores(first, classes, split)
            return Measured(evaluation_of(first, labels), labels)
        data = [(first[i : i + EVAL_BATCH], labels[i : i + EVAL_BATCH]) for i in range(0, len(labels), EVAL_BATCH)]
    if model is None:
        raise ConfigError(f"{split}: images need the model: log_epoch(model, ...) or finish(model, ...)")
    refuse_shuffled(data, split)
    logits, labels, images, shape = outputs_of(model, data, limit, keep_images)
    check_scores(logits, classes, split)
    return Measured(evaluation_of(logits, labels), labels, images, shape)


def check_scores(scores: np.ndarray, classes: int, split: str) -> None:
    if scores.ndim != 2 or scores.shape[1] != classes:
        raise ConfigError(f"{split}: scores of shape {scores.shape} for {classes} class names: one score per class")


def is_loader(data) -> bool:
    return isinstance(data, torch.utils.data.DataLoader)


def refuse_shuffled(loader, split: str) -> None:
    """Validation and test predictions are compared image by image across epochs and runs: their order must hold."""
    if split != "train" and isinstance(getattr(loader, "sampler", None), torch.utils.data.RandomSampler):
        raise ConfigError(f"{split}: the loader shuffles; give it shuffle=False so predictions pair image by image")


def as_numpy(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().float().cpu().numpy() if values.is_floating_point() else values.cpu().numpy()
    return np.asarray(values)


@torch.inference_mode()
def outputs_of(model, loader: Iterable, limit: int | None, keep_images: bool):
    """Logits, labels, displayable images (when asked for; else None) and one input's shape, of a loader's
    (images, labels) batches, model in eval mode (and put back in the mode it was in); at most `limit` images."""
    keras_model = is_keras(model)
    training = getattr(model, "training", False)
    if not keras_model:
        model.eval()
        device = next(model.parameters()).device
    logits, labels, images, seen = [], [], [], 0
    try:
        for batch in loader:
            if not isinstance(batch, tuple | list) or len(batch) < 2:
                raise ConfigError(f"batches must be (images, labels) pairs, not {type(batch).__name__}")
            x, y = batch[0], batch[1]
            if limit is not None:
                x, y = x[: limit - seen], y[: limit - seen]
            if keras_model:
                logits.append(np.log(np.maximum(model.predict_on_batch(as_numpy(x)), PROBABILITY_FLOOR)))
            else:
                logits.append(as_numpy(model(torch.as_tensor(x).to(device))))
            labels.append(as_numpy(y).astype(np.int64))
            if keep_images:
                images.append(displayable(as_numpy(x), channels_last=keras_model))
            shape = tuple(x.shape[1:])
            seen += len(y)
            if limit is not None and seen >= limit:
                break
    finally:
        if not keras_model:
            model.train(training)
    kept = np.concatenate(images) if images and images[0] is not None else None
    return np.concatenate(logits), np.concatenate(labels), kept, channels_first(shape, keras_model)


def displayable(batch: np.ndarray, channels_last: bool = False) -> np.ndarray | None:
    """A batch of model inputs as uint8 pictures for the galleries: (N, H, W) grey or (N, H, W, 3) colour, each
    image stretched to 0..255 (inputs are usually normalised: this shows them as the model saw them); None for
    inputs that are not images (flat vectors)."""
    x = batch.astype(np.float32)
    if x.ndim not in (3, 4):
        return None
    if x.ndim == 4 and not channels_last:
        x = x.transpose(0, 2, 3, 1)
    if x.ndim == 4 and x.shape[-1] != 3:
        x = x[..., 0]  # one channel, or a number other than 3: the first one, grey
    low = x.reshape(len(x), -1).min(axis=1).reshape(-1, *[1] * (x.ndim - 1))
    high = x.reshape(len(x), -1).max(axis=1).reshape(-1, *[1] * (x.ndim - 1))
    return np.round(255 * (x - low) / np.maximum(high - low, 1e-12)).astype(np.uint8)


def channels_first(shape: tuple[int, ...], channels_last: bool) -> tuple[int, ...]:
    """One input's shape as the adapters take it, (C, H, W) for images (a Keras input comes as (H, W, C))."""
    return (shape[2], shape[0], shape[1]) if channels_last and len(shape) == 3 else shape


def is_keras(model) -> bool:
    """A Keras model (on the PyTorch backend a Keras model is also a torch.nn.Module)."""
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(model, keras.Model)


def framework_of(model) -> str:
    return "keras" if is_keras(model) else "pytorch"


# ---------------------------------------------------------------- the test set's artifacts


def test_artifacts(tested: Evaluation, test: Subset, class_names) -> dict:
    """Confusion matrix, per-class accuracy and misclassified samples of the test evaluation."""
    predicted, confidence = tested.predicted, tested.confidence
    classes = range(len(class_names))
    matrix = confusion_matrix(test.labels, predicted, labels=classes)
    support = matrix.sum(axis=1)
    per_class = pd.DataFrame(
        {
            "class": classes,
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
        "predictions": predictions,
    }


def smallest_int(values: np.ndarray) -> np.ndarray:
    """The integers in the smallest unsigned type that holds them (10,000 predictions fit in 50 KB)."""
    return values.astype(np.min_scalar_type(int(values.max(initial=0))))

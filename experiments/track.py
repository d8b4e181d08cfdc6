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
import sys
import threading
import time
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import confusion_matrix

from core.datasets import Subset, images_sha256
from core.diagnosis import ADVICE, DIVERGED, Yardstick, best_error_for, verdict
from core.schema import Artifact, Metric, Param, Tag
from core.settings import DEFAULT_EXPERIMENT, SETTINGS, ConfigError, dataset_label, free_config_group
from experiments import interrupts
from experiments.adapters import ModelAdapter, adapter_for
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

EVAL_BATCH = SETTINGS["eval_batch_size"].default  # images per batch when evaluating arrays handed over
MISCLASSIFIED_LIMIT = 1000  # most-confident mistakes kept per run
KEPT_IMAGES_LIMIT = 64 * 2**20  # bytes of images a run keeps when no other machine can find them by name


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run: it is logged KILLED with its last checkpoint, or, when the signal came as
    it ended, it keeps the `status` it ended with (FINISHED, FAILED)."""

    def __init__(self, run_id: str, status: str = "KILLED"):
        super().__init__(run_id)
        self.run_id, self.status = run_id, status


class Run:
    """One tracked run: what it logged so far, and how it ends. Also a context manager: Ctrl-C or SIGTERM inside
    ends the run KILLED and leaves as RunInterrupted; any other error (but the store going away, which the runner's
    spool resumes) ends it FAILED. No run is left RUNNING with its heartbeat beating."""

    def __init__(self, logger: RunLogger, class_names: Sequence[str], yardstick: Yardstick):
        self.logger, self.class_names, self.yardstick = logger, tuple(class_names), yardstick
        self.progress = FitProgress()
        self.epoch_started = time.perf_counter()
        self.step_losses: list[tuple[int, float]] = []
        self.steps = self.images_seen = 0
        self.train_eval_size = SETTINGS["train_eval_size"].default
        self.kept_images: dict[str, np.ndarray] = {}
        self.uncaught: BaseException | None = None

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
        if err is None or isinstance(err, RunInterrupted):
            return
        self.end_after(err)
        if isinstance(err, KeyboardInterrupt):
            raise RunInterrupted(self.run_id, self.logger.final_status or "KILLED") from err

    def end_after(self, err: BaseException | None) -> None:
        """End a run that did not finish: KILLED after Ctrl-C or SIGTERM, FAILED after an error or when the program
        ended before finish() (err None); a run whose store went away keeps its spool for --resume."""
        if self.logger.final_status is not None:
            return
        if isinstance(err, KeyboardInterrupt):
            with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C while it ends: KILLED all the same
                self.logger.finish("KILLED", error=f"interrupted ({err or 'Ctrl-C'})")
        elif isinstance(err, StoreAway):  # nothing more can be told to the store
            self.logger.heartbeat.stop()
        else:
            self.logger.finish("FAILED", error=f"{type(err).__name__}: {err}" if err else "ended before finish()")

    # ------------------------------------------------------------ what the runner hands over

    def describe_val(self, source: str, val: Subset) -> None:
        """Which images the validation set holds (the file they come from, their indexes in it, their labels, and
        the SHA-256 of those images), so the dashboard can show the validation images whose prediction changed
        between two epochs: from its own copy of the dataset once the hash matches, or from the run's images."""
        record = {"source": source, "index": val.index.tolist(), "labels": val.labels.tolist()}
        self.logger.log_dict({**record, "sha256": images_sha256(val.images)}, Artifact.VAL_IMAGES)

    def keep_images(self, images: dict[str, np.ndarray]) -> None:
        """Images no other machine can find by name (Artifact.RUN_IMAGES), logged at the end."""
        self.kept_images.update(images)

    def commit_epoch(self, record: EpochRecord, checkpoint: dict | None = None) -> None:
        """Log one measured epoch (and the runner's checkpoint) and add it to the history the verdict judges."""
        self.logger.log_epoch(record, checkpoint)
        self.progress.epochs[record.epoch] = {str(name): float(value) for name, value in record.metrics().items()}

    def log_results(
        self, tested: Evaluation, test: Subset, model, adapter: ModelAdapter, input_shape, history: pd.DataFrame
    ) -> dict:
        """Final metrics, the verdict (best epoch, diagnosis) of the whole history, and the artifacts; returns the
        final metrics by schema name."""
        judged = verdict(history, self.yardstick)
        layers = adapter.layer_table(model, input_shape)
        final = {
            Metric.TEST_LOSS: tested.loss,
            Metric.TEST_ACC: tested.acc,
            Metric.BEST_EPOCH: judged.best_epoch,
            Metric.BEST_VAL_ACC: judged.best_val_acc,
            Metric.EPOCHS_TRAINED: judged.epochs_trained,
            **adapter.size_figures(model, layers),
        }
        self.logger.log_metrics(final, step=judged.epochs_trained)
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
        if self.kept_images and sum(a.nbytes for a in self.kept_images.values()) <= KEPT_IMAGES_LIMIT:
            self.logger.log_npz(self.kept_images, Artifact.RUN_IMAGES)
        adapter.log_weights(self.logger, model, input_shape)
        return final

    def end_diverged(self, err: Diverged) -> None:
        """A diverged run ends FAILED, diagnosed so, with the step it blew up at."""
        self.logger.set_tags(
            {Tag.DIVERGED_AT_STEP: err.step, Tag.DIAGNOSIS: DIVERGED, Tag.DIAGNOSIS_RULE: f"{err}: {ADVICE[DIVERGED]}"}
        )
        self.logger.finish("FAILED", error=str(err))
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
        """Measure and log one epoch. `train` and `val` are each a loader of (images, labels) batches, evaluated
        with `model` in eval mode (at most train_eval_size training images), or a (logits, labels) pair you
        computed. Raises Diverged, after ending the run FAILED, when the training loss is NaN or exploded."""
        epoch = epoch or self.progress.epochs_done + 1
        seconds = time.perf_counter() - self.epoch_started
        on_train, train_labels, _ = measured(model, train, "train", self.train_eval_size)
        on_val, val_labels, val_images = measured(model, val, "val")
        if epoch == self.progress.epochs_done + 1 == 1:
            self.describe_first_epoch(len(train_labels), val_labels, val_images)
        stats = EpochStats(
            loss=on_train.loss,
            acc=on_train.acc,
            step_losses=self.step_losses or [(epoch, on_train.loss)],
            seconds=seconds,
            samples_per_s=self.images_seen / seconds if self.images_seen else len(train_labels) / seconds,
        )
        record = measure_epoch(
            epoch,
            stats,
            (on_train, train_labels),
            (on_val, val_labels),
            len(self.class_names),
            self.yardstick.best_error,
        )
        if diverged(on_train.loss):
            err = Diverged(on_train.loss, self.steps, epoch)
            self.end_diverged(err)
            raise err
        self.commit_epoch(record)
        self.step_losses, self.images_seen, self.epoch_started = [], 0, time.perf_counter()
        return record

    def describe_first_epoch(self, train_eval_size: int, val_labels: np.ndarray, val_images) -> None:
        """What the first epoch tells about the sets: their sizes (for the diagnosis's intervals) and the
        validation images (your own: kept with the run)."""
        self.yardstick = Yardstick(self.yardstick.best_error, train_eval_size, len(val_labels))
        self.logger.log_params({Param.TRAIN_EVAL_SIZE: train_eval_size, Param.VAL_SIZE: len(val_labels)})
        self.describe_val("val", Subset(shown(val_images, val_labels), val_labels, np.arange(len(val_labels))))
        if val_images is not None:
            self.keep_images({"val": val_images})

    def finish(self, model=None, *, test=None) -> dict:
        """Evaluate the test set (a loader with `model`, or (logits, labels)) and log the results, then end the run
        FINISHED; returns the final metrics by schema name."""
        if self.logger.final_status is not None:
            raise ConfigError(f"run {self.run_id} has already ended {self.logger.final_status}")
        if test is None:
            raise ConfigError("finish(test=...): give the test loader (with the model) or its (logits, labels)")
        tested, labels, images = measured(model, test, "test")
        test_set = Subset(shown(images, labels), labels, np.arange(len(labels)))
        if images is not None:
            self.keep_images({"test": images})
        shape = input_shape_of(images)
        self.logger.log_params(
            {Param.TEST_SIZE: len(labels), Param.TEST_IMAGES_SHA256: images_sha256(test_set.images)}
            | ({Param.INPUT_SHAPE: "x".join(map(str, shape))} if shape else {})
        )
        adapter = NoModel() if model is None else adapter_for(framework_of(model))
        final = self.log_results(tested, test_set, copy.deepcopy(model), adapter, shape, self.progress.history())
        self.logger.finish("FINISHED")
        return final


def shown(images: np.ndarray | None, labels: np.ndarray) -> np.ndarray:
    """The images of a set, or blank ones where only logits were handed over."""
    return images if images is not None else np.zeros((len(labels), 1, 1), np.uint8)


class NoModel:
    """finish() without a model (logits handed over): no layer table, sizes or weights to log."""

    def layer_table(self, model, input_shape) -> pd.DataFrame:
        return pd.DataFrame(columns=["layer", "type", "output_shape", "activations", "params"])

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
    """Open a run of your own loop. `config` (a dict) is logged as params: a name that is a run setting
    (core.settings: lr, epochs, batch_size, seed, best_error, train_eval_size...) is checked as the runner checks
    it, any other is logged as it is. `model` names the run's model (its class) and framework; `dataset` names
    the data (a known dataset's name sets the best achievable error); `class_names` label every axis.
    ConfigError before anything is logged when a setting is wrong; StoreError when the store cannot be used."""
    config = dict(config or {})
    for name, value in config.items():
        problem = SETTINGS[name].problem(value) if name in SETTINGS and name not in ("model", "dataset") else None
        if problem:
            raise ConfigError(problem.replace(SETTINGS[name].flag, name, 1))
    if len(class_names) < 2:
        raise ConfigError(f"class_names: {len(class_names)} given; a classifier needs two or more")
    described = {
        **config,
        Param.MODEL: config.get("model") or (type(model).__name__ if model is not None else "unnamed"),
        Param.DATASET: dataset or config.get("dataset") or "unnamed",
    }
    best_error = best_error_for(described[Param.DATASET], config.get("best_error"))
    params = {
        **described,
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
    if threading.current_thread() is threading.main_thread():
        interrupts.install()  # SIGTERM as Ctrl-C, from before the run exists
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
    run.train_eval_size = config.get("train_eval_size", run.train_eval_size)
    end_whatever_happens(run)
    return run


def end_whatever_happens(run: Run) -> None:
    """A program that ends before run.finish() ends the run: KILLED after Ctrl-C or SIGTERM, else FAILED."""
    previous = sys.excepthook

    def remember(kind, err, traceback):
        run.uncaught = err
        previous(kind, err, traceback)

    sys.excepthook = remember
    atexit.register(lambda: run.end_after(run.uncaught))


# ---------------------------------------------------------------- measuring a set


def measured(model, data, split: str, limit: int | None = None) -> tuple[Evaluation, np.ndarray, np.ndarray | None]:
    """(evaluation, labels, images as uint8 for the galleries or None) of a set given as a loader of (images,
    labels) batches or an (images, labels) pair of arrays, evaluated with the model; or as a (logits, labels) pair
    computed by you (logits are 2-D: one row per image, one column per class)."""
    if isinstance(data, tuple | list) and len(data) == 2 and not is_loader(data):
        first, labels = (as_numpy(a) for a in data)
        if len(first) != len(labels) or labels.ndim != 1:
            raise ConfigError(f"{split}: {len(first)} rows but labels of shape {labels.shape}")
        if first.ndim == 2:
            return evaluation_of(first, labels.astype(np.int64)), labels.astype(np.int64), None
        data = [(first[i : i + EVAL_BATCH], labels[i : i + EVAL_BATCH]) for i in range(0, len(labels), EVAL_BATCH)]
    if model is None:
        raise ConfigError(f"{split}: images need the model: log_epoch(model, ...) or finish(model, ...)")
    refuse_shuffled(data, split)
    logits, labels, images = outputs_of(model, data, limit)
    return evaluation_of(logits, labels), labels, images


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
def outputs_of(model, loader: Iterable, limit: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits, labels and displayable images of a loader's (images, labels) batches, model in eval mode (and put
    back in the mode it was in); at most `limit` images."""
    keras_model = is_keras(model)
    training = getattr(model, "training", False)
    if not keras_model:
        model.eval()
        device = next(model.parameters()).device
    logits, labels, images, seen = [], [], [], 0
    try:
        for batch in loader:
            x, y = batch[0], batch[1]
            if limit is not None:
                x, y = x[: limit - seen], y[: limit - seen]
            out = model.predict_on_batch(as_numpy(x)) if keras_model else model(x.to(device))
            logits.append(np.log(np.maximum(as_numpy(out), 1e-7)) if keras_model else as_numpy(out))
            labels.append(as_numpy(y).astype(np.int64))
            images.append(displayable(as_numpy(x), channels_last=keras_model))
            seen += len(y)
            if limit is not None and seen >= limit:
                break
    finally:
        if not keras_model:
            model.train(training)
    return np.concatenate(logits), np.concatenate(labels), np.concatenate(images)


def displayable(batch: np.ndarray, channels_last: bool = False) -> np.ndarray:
    """A batch of model inputs as uint8 pictures for the galleries: (N, H, W) grey or (N, H, W, 3) colour, each
    image stretched to 0..255 (inputs are usually normalised: this shows them as the model saw them)."""
    x = batch.astype(np.float32)
    if x.ndim == 4 and not channels_last:
        x = x.transpose(0, 2, 3, 1)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim == 4 and x.shape[-1] != 3:
        x = x[..., 0]  # more or fewer than 3 channels: the first one, grey
    low = x.reshape(len(x), -1).min(axis=1).reshape(-1, *[1] * (x.ndim - 1))
    high = x.reshape(len(x), -1).max(axis=1).reshape(-1, *[1] * (x.ndim - 1))
    return np.round(255 * (x - low) / np.maximum(high - low, 1e-12)).astype(np.uint8)


def input_shape_of(images: np.ndarray | None) -> tuple[int, int, int] | None:
    if images is None:
        return None
    shape = images.shape[1:]
    return (1, *shape) if len(shape) == 2 else (shape[2], shape[0], shape[1])


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

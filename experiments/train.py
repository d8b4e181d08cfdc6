"""Training and evaluation loops, shared by every framework, and the records they hand on.

A *learner* adapts a model to these loops (experiments.adapters: TorchLearner, NumpyLearner):
it turns uint8-derived float arrays into its own inputs, takes one optimisation step, and
returns logits. Train and validation are measured by the same `evaluate`.
"""

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Protocol

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import confusion_matrix
from tqdm.auto import tqdm

from core.calibration import Reliability, class_errors, reliability
from core.diagnosis import best_epoch, bias_variance
from core.schema import Artifact, Metric


class Learner(Protocol):
    def to_inputs(self, images: np.ndarray): ...
    def to_labels(self, labels: np.ndarray): ...
    def train_step(self, inputs, labels) -> tuple[float, int]: ...
    def logits(self, inputs) -> np.ndarray: ...
    def weights(self) -> dict: ...
    def load_weights(self, weights: dict) -> None: ...
    def checkpoint(self) -> dict: ...
    def load_checkpoint(self, checkpoint: dict) -> None: ...


@dataclass
class Evaluation:
    """The model on one labelled set: mean cross-entropy, accuracy, and each example's prediction."""

    loss: float
    acc: float
    predicted: np.ndarray
    confidence: np.ndarray


@dataclass
class EpochStats:
    """One pass over the training set: running loss and accuracy, timing, and the step-loss curve."""

    loss: float
    acc: float
    step_losses: list[tuple[int, float]]  # (global step, mean loss of the last log_every steps)
    seconds: float
    samples_per_s: float


@dataclass
class EpochRecord:
    """What one epoch commits: its per-epoch metrics (Metric.PER_EPOCH), step losses, and what its per-epoch
    artifacts grow by (confusion matrices, the val reliability table)."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    val_ece: float
    bias: float
    variance: float
    avoidable_bias: float
    epoch_seconds: float
    samples_per_s: float
    step_losses: list[tuple[int, float]] = field(repr=False)
    val_confusion: np.ndarray = field(repr=False)
    train_confusion: np.ndarray = field(repr=False)  # on the train-eval subset
    val_predicted: np.ndarray = field(repr=False)
    val_reliability: Reliability = field(repr=False)

    def metrics(self) -> dict:
        """{Metric name: value} of the per-epoch metrics."""
        return {name: getattr(self, name) for name in Metric.PER_EPOCH}

    def artifact_entries(self) -> dict[str, dict]:
        """{per-epoch artifact (Artifact.PER_EPOCH): this epoch's entry}; experiments.run_logger appends each to its
        artifact's lists.
        Empty bins and absent classes are written as null (JSON has no NaN)."""
        table = self.val_reliability
        return {
            Artifact.CONFUSION_VAL_EPOCHS: {"matrices": self.val_confusion.astype(int).tolist()},
            Artifact.VAL_PREDICTIONS_EPOCHS: {"predicted": self.val_predicted.astype(int).tolist()},
            Artifact.PER_CLASS_EPOCHS: {
                "train_error": nulled(class_errors(self.train_confusion)),
                "val_error": nulled(class_errors(self.val_confusion)),
                "train_support": self.train_confusion.sum(axis=1).astype(int).tolist(),
                "val_support": self.val_confusion.sum(axis=1).astype(int).tolist(),
            },
            Artifact.RELIABILITY_VAL_EPOCHS: {
                "edges": table.edges,
                "counts": table.counts,
                "accuracy": nulled(table.accuracy),
                "confidence": nulled(table.confidence),
            },
        }

    @classmethod
    def from_dict(cls, fields: dict) -> "EpochRecord":
        """The record back from dataclasses.asdict (a spooled epoch)."""
        arrays = {name: np.asarray(fields[name]) for name in ("val_confusion", "train_confusion", "val_predicted")}
        return cls(**{**fields, **arrays, "val_reliability": Reliability(**fields["val_reliability"])})


def nulled(values) -> list:
    """Floats for JSON, NaN as None."""
    return [None if math.isnan(v) else float(v) for v in values]


@dataclass
class FitProgress:
    """How far fit has come: every epoch's metrics so far ({epoch: {metric: value}}) and the best epoch's
    weights. Saved in each checkpoint as a plain dict."""

    epochs: dict[int, dict[str, float]] = field(default_factory=dict)
    best_weights: dict | None = None

    @property
    def epochs_done(self) -> int:
        return max(self.epochs, default=0)

    def history(self) -> pd.DataFrame:
        """Index epoch, one column per per-epoch metric."""
        frame = pd.DataFrame.from_dict(self.epochs, orient="index", columns=list(map(str, Metric.PER_EPOCH)))
        return frame.rename_axis("epoch").sort_index()

    def best(self) -> tuple[int, float]:
        return best_epoch(self.history()[Metric.VAL_ACC])


@dataclass
class FitResult:
    """What fit hands back: the epochs trained, the best epoch with its weights, and the whole history."""

    epochs_trained: int
    best_epoch: int
    best_val_acc: float
    best_weights: dict
    history: pd.DataFrame  # index epoch, one column per per-epoch metric


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def evaluate(learner: Learner, inputs, labels: np.ndarray, batch_size: int = 256) -> Evaluation:
    """Loss, accuracy, predictions and confidences of the model on one dataset (model in eval mode)."""
    logits = np.concatenate([learner.logits(inputs[i : i + batch_size]) for i in range(0, len(labels), batch_size)])
    return evaluation_of(logits, labels)


def evaluation_of(logits: np.ndarray, labels: np.ndarray) -> Evaluation:
    """Loss, accuracy, predictions and confidences from a set's logits (or log-probabilities) and labels."""
    log_probs = log_softmax(np.asarray(logits, dtype=np.float64))
    predicted = log_probs.argmax(axis=1)
    return Evaluation(
        loss=float(-log_probs[np.arange(len(labels)), labels].mean()),
        acc=float((predicted == labels).mean()),
        predicted=predicted,
        confidence=np.exp(log_probs.max(axis=1)),
    )


# A training loss this many times that of a uniform guess (ln of the class count, 2.30 for ten classes)
# means the weights have exploded: a model that learns never gets there, and one that has cannot recover.
EXPLODING_LOSS_FACTOR = 100
# The limit is that of ten classes for every dataset: 230 is far past a uniform guess for any class count below
# e^230, and one limit keeps "diverged" meaning the same thing across datasets.
REFERENCE_CLASSES = 10
EXPLODING_LOSS = EXPLODING_LOSS_FACTOR * math.log(REFERENCE_CLASSES)


class Diverged(FloatingPointError):
    """The training loss became NaN or infinite, or exploded past its limit (EXPLODING_LOSS unless the framework
    caps its loss lower)."""

    def __init__(self, loss: float, step: int, epoch: int, limit: float = EXPLODING_LOSS):
        what = (
            f"became {loss}"
            if not math.isfinite(loss)
            else f"reached {loss:.4g}, over {EXPLODING_LOSS_FACTOR} x ln {REFERENCE_CLASSES} = {EXPLODING_LOSS:.1f}"
            if limit == EXPLODING_LOSS
            else f"reached {loss:.4g}, over {limit:.1f}, near the most the framework's "
            "clipped cross-entropy can report: every image confidently wrong"
        )
        super().__init__(f"diverged: training loss {what} at step {step} (epoch {epoch})")
        self.step, self.epoch = step, epoch
        self.run_id = None  # the run it ended, once logged


def diverged(loss: float, limit: float = EXPLODING_LOSS) -> bool:
    return not math.isfinite(loss) or loss > limit


class EpochMeter:
    """One training epoch as it goes: running loss and accuracy, the step-loss curve, the divergence check and
    the progress bar. Fed one step at a time, by our loop or by a Keras callback."""

    def __init__(
        self,
        n: int,
        epoch: int,
        first_step: int,
        log_every: int,
        desc: str,
        progress: bool,
        exploding_loss: float = EXPLODING_LOSS,
    ):
        self.n, self.epoch, self.log_every, self.exploding_loss = n, epoch, log_every, exploding_loss
        self.step = first_step - 1
        self.step_losses, self.window, self.seen, self.total_loss, self.total_correct = [], [], 0, 0.0, 0
        self.bar = tqdm(total=n, desc=desc, unit="img", disable=not progress, leave=False, mininterval=0.5)
        self.start = time.perf_counter()

    def add(self, loss: float, correct: int, rows: int) -> None:
        """One optimisation step's mean loss over `rows` images, `correct` of them right; Diverged if it blew up."""
        self.step += 1
        if diverged(loss, self.exploding_loss):
            self.bar.close()
            raise Diverged(loss, self.step, self.epoch, self.exploding_loss)
        self.seen += rows
        self.total_loss += loss * rows
        self.total_correct += correct
        self.window.append(loss)
        if len(self.window) == self.log_every:
            self.close_window()
            self.bar.set_postfix(
                loss=f"{self.step_losses[-1][1]:.4f}", acc=f"{self.total_correct / self.seen:.4f}", refresh=False
            )
        self.bar.update(rows)

    def close_window(self) -> None:
        """The steps since the last point become one point: their mean loss, at the last of them."""
        self.step_losses.append((self.step, float(np.mean(self.window))))
        self.window = []

    def done(self) -> EpochStats:
        """The epoch's figures; its last steps, fewer than log_every, make one more point, so that an epoch
        shorter than log_every steps has a step curve too."""
        seconds = time.perf_counter() - self.start
        if self.window:
            self.close_window()
        self.bar.close()
        return EpochStats(
            loss=self.total_loss / self.n,
            acc=self.total_correct / self.n,
            step_losses=self.step_losses,
            seconds=seconds,
            samples_per_s=self.n / seconds,
        )


def train_epoch(
    learner: Learner,
    inputs,
    labels,
    batch_size: int,
    rng: np.random.Generator,
    log_every: int,
    first_step: int = 1,
    epoch: int = 1,
    desc: str = "",
    progress: bool = True,
) -> EpochStats:
    """One pass over the shuffled training set; returns loss, accuracy, timing and the step-loss curve.

    Steps are numbered globally from first_step; step_losses holds (step, mean loss of the last
    log_every steps). A NaN, infinite or exploding loss stops at once with Diverged.
    """
    order = rng.permutation(len(labels))
    meter = EpochMeter(len(labels), epoch, first_step, log_every, desc, progress)
    for i in range(0, len(labels), batch_size):
        rows = order[i : i + batch_size]
        loss, correct = learner.train_step(inputs[rows], labels[rows])
        meter.add(loss, correct, len(rows))
    return meter.done()


def step_epochs(
    learner: Learner,
    inputs,
    labels,
    *,
    epochs: range,
    batch_size: int,
    rng: np.random.Generator,
    log_every: int,
    progress: bool,
    end_of_epoch: Callable[[int, EpochStats], bool],
) -> None:
    """Our epoch loop, for learners that take one step at a time: train_epoch, then end_of_epoch, until it says stop."""
    steps_per_epoch = math.ceil(len(labels) / batch_size)
    for epoch in epochs:
        stats = train_epoch(
            learner,
            inputs,
            labels,
            batch_size,
            rng,
            log_every,
            first_step=(epoch - 1) * steps_per_epoch + 1,
            epoch=epoch,
            desc=f"epoch {epoch}/{epochs.stop - 1}",
            progress=progress,
        )
        if end_of_epoch(epoch, stats):
            return


def measure_epoch(
    epoch: int,
    stats: EpochStats,
    train_eval: tuple[Evaluation, np.ndarray],
    val: tuple[Evaluation, np.ndarray],
    num_classes: int,
    best_error: float,
) -> EpochRecord:
    """One epoch's record from its training pass and the (evaluation, labels) of its train-eval and validation sets:
    the one place an epoch's metrics and per-epoch artifacts are computed, for our loop and for a user's
    (experiments.track)."""
    (on_train, train_labels), (on_val, val_labels) = train_eval, val
    table = reliability(on_val.confidence, on_val.predicted == val_labels)
    classes = range(num_classes)
    return EpochRecord(
        epoch=epoch,
        train_loss=on_train.loss,
        train_acc=on_train.acc,
        val_loss=on_val.loss,
        val_acc=on_val.acc,
        val_ece=table.ece,
        **bias_variance(on_train.acc, on_val.acc, best_error),
        epoch_seconds=stats.seconds,
        samples_per_s=stats.samples_per_s,
        step_losses=stats.step_losses,
        val_confusion=confusion_matrix(val_labels, on_val.predicted, labels=classes),
        train_confusion=confusion_matrix(train_labels, on_train.predicted, labels=classes),
        val_predicted=on_val.predicted,
        val_reliability=table,
    )


def fit(
    learner: Learner,
    train: tuple,
    val: tuple,
    train_eval: tuple,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    best_error: float,
    log_every: int,
    num_classes: int,
    eval_batch_size: int = 256,
    progress: bool = True,
    on_epoch: Callable[[EpochRecord, dict], None] | None = None,
    resume_from: dict | None = None,
    should_stop: Callable[[EpochRecord], bool] | None = None,
) -> FitResult:
    """Train for `epochs`, measuring train-eval and val sets after each; keep the best-val weights.

    `train`, `val` and `train_eval` are (inputs, labels) pairs: inputs in the learner's own type,
    labels as the learner's type for train and as numpy arrays for the evaluated sets.
    After every epoch calls on_epoch(record, checkpoint), then stops early if should_stop(record) is
    true (a sweep's pruner); a checkpoint given as `resume_from` continues exactly where it was
    taken (weights, optimizer, shuffling and dropout RNG states). A learner with its own epoch loop
    (Keras's model.fit) provides `train_epochs`, called like step_epochs; the others run in ours.
    """
    rng = np.random.default_rng(seed)
    so_far = FitProgress()
    if resume_from:
        learner.load_checkpoint(resume_from["learner"])
        rng.bit_generator.state = resume_from["rng"]
        torch.set_rng_state(resume_from["torch_rng"])
        so_far = FitProgress(**resume_from["progress"])

    def end_of_epoch(epoch: int, stats: EpochStats) -> bool:
        """Measure, record and hand on one trained epoch; True when training should stop."""
        on_train = evaluate(learner, *train_eval, batch_size=eval_batch_size)
        on_val = evaluate(learner, *val, batch_size=eval_batch_size)
        record = measure_epoch(epoch, stats, (on_train, train_eval[1]), (on_val, val[1]), num_classes, best_error)
        so_far.epochs[epoch] = {str(name): float(value) for name, value in record.metrics().items()}
        if so_far.best()[0] == epoch:
            so_far.best_weights = learner.weights()
        if progress:
            tqdm.write(
                f"epoch {epoch}/{epochs}: train loss {on_train.loss:.4f} acc {on_train.acc:.4f}"
                f" | val loss {on_val.loss:.4f} acc {on_val.acc:.4f}"
                f" | {stats.samples_per_s:.0f} img/s"
            )
        if on_epoch:
            checkpoint = {
                "progress": asdict(so_far),
                "learner": learner.checkpoint(),
                "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
            }
            on_epoch(record, checkpoint)
        return bool(should_stop and should_stop(record))

    if so_far.epochs_done < epochs:
        train_epochs = getattr(learner, "train_epochs", None) or partial(step_epochs, learner)
        train_epochs(
            *train,
            epochs=range(so_far.epochs_done + 1, epochs + 1),
            batch_size=batch_size,
            rng=rng,
            log_every=log_every,
            progress=progress,
            end_of_epoch=end_of_epoch,
        )
    epoch, best_val_acc = so_far.best()
    return FitResult(
        epochs_trained=so_far.epochs_done,
        best_epoch=epoch,
        best_val_acc=best_val_acc,
        best_weights=so_far.best_weights,
        history=so_far.history(),
    )

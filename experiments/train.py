"""Training and evaluation loops, shared by every model kind, and the records they hand on.

A *learner* adapts a model to these loops (experiments.adapters: TorchLearner, NumpyLearner):
it turns uint8-derived float arrays into its own inputs, takes one optimisation step, and
returns logits. Train and validation are measured by the same `evaluate`.
"""
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import confusion_matrix
from tqdm.auto import tqdm

from experiments.data import NUM_CLASSES
from experiments.diagnosis import best_epoch, bias_variance
from experiments.schema import Metric


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
    """What one epoch commits: its per-epoch metrics (Metric.PER_EPOCH), step losses and val confusion."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    bias: float
    variance: float
    avoidable_bias: float
    epoch_seconds: float
    samples_per_s: float
    step_losses: list[tuple[int, float]] = field(repr=False)
    val_confusion: np.ndarray = field(repr=False)

    def metrics(self) -> dict:
        """{Metric name: value} of the per-epoch metrics."""
        return {name: getattr(self, name) for name in Metric.PER_EPOCH}


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
    logits = np.concatenate([learner.logits(inputs[i:i + batch_size]) for i in range(0, len(labels), batch_size)])
    log_probs = log_softmax(logits.astype(np.float64))
    predicted = log_probs.argmax(axis=1)
    return Evaluation(loss=float(-log_probs[np.arange(len(labels)), labels].mean()),
                      acc=float((predicted == labels).mean()), predicted=predicted,
                      confidence=np.exp(log_probs.max(axis=1)))


# A training loss this many times that of a uniform guess (ln of the class count, 2.30 for ten classes)
# means the weights have exploded: a model that learns never gets there, and one that has cannot recover.
EXPLODING_LOSS_FACTOR = 100
EXPLODING_LOSS = EXPLODING_LOSS_FACTOR * math.log(NUM_CLASSES)


class Diverged(FloatingPointError):
    """The training loss became NaN or infinite, or exploded past EXPLODING_LOSS."""

    def __init__(self, loss: float, step: int, epoch: int):
        what = (f"became {loss}" if not math.isfinite(loss) else
                f"reached {loss:.4g}, over {EXPLODING_LOSS_FACTOR} x ln {NUM_CLASSES} = {EXPLODING_LOSS:.1f}")
        super().__init__(f"diverged: training loss {what} at step {step} (epoch {epoch})")
        self.step, self.epoch = step, epoch
        self.run_id = None  # the run it ended, once logged


def diverged(loss: float) -> bool:
    return not math.isfinite(loss) or loss > EXPLODING_LOSS


def train_epoch(learner: Learner, inputs, labels, batch_size: int, rng: np.random.Generator, log_every: int,
                first_step: int = 1, epoch: int = 1, desc: str = "", progress: bool = True) -> EpochStats:
    """One pass over the shuffled training set; returns loss, accuracy, timing and the step-loss curve.

    Steps are numbered globally from first_step; step_losses holds (step, mean loss of the last
    log_every steps). A NaN, infinite or exploding loss stops at once with Diverged.
    """
    n = len(labels)
    order = rng.permutation(n)
    step_losses, window, total_loss, total_correct = [], [], 0.0, 0
    bar = tqdm(total=n, desc=desc, unit="img", disable=not progress, leave=False, mininterval=0.5)
    start = time.perf_counter()
    for step, i in enumerate(range(0, n, batch_size), start=first_step):
        rows = order[i:i + batch_size]
        loss, correct = learner.train_step(inputs[rows], labels[rows])
        if diverged(loss):
            bar.close()
            raise Diverged(loss, step, epoch)
        total_loss += loss * len(rows)
        total_correct += correct
        window.append(loss)
        if len(window) == log_every:
            step_losses.append((step, float(np.mean(window))))
            window = []
            bar.set_postfix(loss=f"{step_losses[-1][1]:.4f}", acc=f"{total_correct / (i + len(rows)):.4f}",
                            refresh=False)
        bar.update(len(rows))
    seconds = time.perf_counter() - start
    bar.close()
    return EpochStats(loss=total_loss / n, acc=total_correct / n, step_losses=step_losses, seconds=seconds,
                      samples_per_s=n / seconds)


def fit(learner: Learner, train: tuple, val: tuple, train_eval: tuple, *, epochs: int, batch_size: int,
        seed: int, best_error: float, log_every: int, eval_batch_size: int = 256, progress: bool = True,
        on_epoch: Callable[[EpochRecord, dict], None] | None = None, resume_from: dict | None = None,
        should_stop: Callable[[EpochRecord], bool] | None = None) -> FitResult:
    """Train for `epochs`, measuring train-eval and val sets after each; keep the best-val weights.

    `train`, `val` and `train_eval` are (inputs, labels) pairs: inputs in the learner's own type,
    labels as the learner's type for train and as numpy arrays for the evaluated sets.
    After every epoch calls on_epoch(record, checkpoint), then stops early if should_stop(record) is
    true (a sweep's pruner); a checkpoint given as `resume_from` continues exactly where it was
    taken (weights, optimizer, shuffling and dropout RNG states).
    """
    rng = np.random.default_rng(seed)
    progress_so_far = FitProgress()
    if resume_from:
        learner.load_checkpoint(resume_from["learner"])
        rng.bit_generator.state = resume_from["rng"]
        torch.set_rng_state(resume_from["torch_rng"])
        progress_so_far = FitProgress(**resume_from["progress"])
    steps_per_epoch = math.ceil(len(train[1]) / batch_size)
    for epoch in range(progress_so_far.epochs_done + 1, epochs + 1):
        stats = train_epoch(learner, *train, batch_size, rng, log_every, first_step=(epoch - 1) * steps_per_epoch + 1,
                            epoch=epoch, desc=f"epoch {epoch}/{epochs}", progress=progress)
        on_train = evaluate(learner, *train_eval, batch_size=eval_batch_size)
        on_val = evaluate(learner, *val, batch_size=eval_batch_size)
        record = EpochRecord(
            epoch=epoch, train_loss=on_train.loss, train_acc=on_train.acc, val_loss=on_val.loss, val_acc=on_val.acc,
            **bias_variance(on_train.acc, on_val.acc, best_error),
            epoch_seconds=stats.seconds, samples_per_s=stats.samples_per_s, step_losses=stats.step_losses,
            val_confusion=confusion_matrix(val[1], on_val.predicted, labels=range(NUM_CLASSES)))
        progress_so_far.epochs[epoch] = {str(name): float(value) for name, value in record.metrics().items()}
        if progress_so_far.best()[0] == epoch:
            progress_so_far.best_weights = learner.weights()
        if progress:
            tqdm.write(f"epoch {epoch}/{epochs}: train loss {on_train.loss:.4f} acc {on_train.acc:.4f}"
                       f" | val loss {on_val.loss:.4f} acc {on_val.acc:.4f}"
                       f" | {stats.samples_per_s:.0f} img/s")
        if on_epoch:
            checkpoint = {"progress": asdict(progress_so_far), "learner": learner.checkpoint(),
                          "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()}
            on_epoch(record, checkpoint)
        if should_stop and should_stop(record):
            break
    epoch, best_val_acc = progress_so_far.best()
    return FitResult(epochs_trained=progress_so_far.epochs_done, best_epoch=epoch, best_val_acc=best_val_acc,
                     best_weights=progress_so_far.best_weights, history=progress_so_far.history())

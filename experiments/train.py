"""Training and evaluation loops, shared by every model.

A *learner* adapts a model to these loops (TorchLearner here, NumpyLearner in numpy_cnn):
it turns uint8-derived float arrays into its own inputs, takes one optimisation step, and
returns logits. Train and validation are measured by the same `evaluate`.
"""
import copy
import math
import time
from typing import Callable, Protocol

import numpy as np
import torch
from sklearn.metrics import confusion_matrix
from tqdm.auto import tqdm

from experiments.data import NUM_CLASSES
from experiments.diagnosis import bias_variance
from experiments.schema import Metric


class Learner(Protocol):
    def to_inputs(self, images: np.ndarray): ...
    def to_labels(self, labels: np.ndarray): ...
    def train_step(self, inputs, labels) -> tuple[float, int]: ...
    def logits(self, inputs) -> np.ndarray: ...
    def state(self) -> dict: ...
    def load_state(self, state: dict) -> None: ...
    def checkpoint(self) -> dict: ...
    def load_checkpoint(self, checkpoint: dict) -> None: ...


OPTIMIZERS = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adadelta": torch.optim.Adadelta,
}


PRECISIONS = ("auto", "fp32", "bf16")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def bf16_is_fast(device: str) -> bool:
    """Whether the device has native bf16 math (CUDA with bf16, or a CPU with AVX512-BF16 or AMX)."""
    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    return any(getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def resolve_precision(precision: str, device: str) -> str:
    """'auto' is bf16 autocast where the hardware runs it natively, else fp32."""
    if precision == "auto":
        return "bf16" if bf16_is_fast(device) else "fp32"
    return precision


class TorchLearner:
    """A torch.nn.Module with its optimizer; data lives on the device as tensors, batches are index slices.

    precision 'bf16' runs forward and loss under torch.autocast (weights and optimizer stay fp32);
    channels_last stores images and conv weights NHWC, which oneDNN's conv and pooling prefer.
    """

    def __init__(self, model: torch.nn.Module, optimizer: str, lr: float, device: str,
                 precision: str = "fp32", channels_last: bool = False):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.optimizer = OPTIMIZERS[optimizer](self.model.parameters(), lr=lr)
        self.autocast = dict(device_type=self.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def to_inputs(self, images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(images).to(self.device).contiguous(memory_format=self.memory_format)

    def to_labels(self, labels: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(labels.astype(np.int64)).to(self.device)

    def train_step(self, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[float, int]:
        self.model.train()
        with torch.autocast(**self.autocast):
            logits = self.model(inputs)
            loss = torch.nn.functional.cross_entropy(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item(), int((logits.argmax(1) == labels).sum())

    @torch.inference_mode()
    def logits(self, inputs: torch.Tensor) -> np.ndarray:
        self.model.eval()
        with torch.autocast(**self.autocast):
            return self.model(inputs).float().cpu().numpy()

    def state(self) -> dict:
        return copy.deepcopy(self.model.state_dict())

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state)

    def checkpoint(self) -> dict:
        return {"model": self.state(), "optimizer": copy.deepcopy(self.optimizer.state_dict())}

    def load_checkpoint(self, checkpoint: dict) -> None:
        self.load_state(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def evaluate(learner: Learner, inputs, labels: np.ndarray, batch_size: int = 1000) -> dict:
    """Loss, accuracy, predictions and confidences of the model on one dataset (model in eval mode)."""
    logits = np.concatenate([learner.logits(inputs[i:i + batch_size]) for i in range(0, len(labels), batch_size)])
    log_probs = log_softmax(logits.astype(np.float64))
    predicted = log_probs.argmax(axis=1)
    return {
        "loss": float(-log_probs[np.arange(len(labels)), labels].mean()),
        "acc": float((predicted == labels).mean()),
        "predicted": predicted,
        "confidence": np.exp(log_probs.max(axis=1)),
    }


class Diverged(FloatingPointError):
    """The training loss became NaN or infinite."""

    def __init__(self, loss: float, step: int, epoch: int):
        super().__init__(f"diverged: training loss became {loss} at step {step} (epoch {epoch})")
        self.step, self.epoch = step, epoch


def train_epoch(learner: Learner, inputs, labels, batch_size: int, rng: np.random.Generator, log_every: int,
                first_step: int = 1, epoch: int = 1, desc: str = "", progress: bool = True) -> dict:
    """One pass over the shuffled training set; returns loss, accuracy, timing and the step-loss curve.

    Steps are numbered globally from first_step; step_losses holds (step, mean loss of the last
    log_every steps). A NaN or infinite loss stops at once with Diverged.
    """
    n = len(labels)
    order = rng.permutation(n)
    step_losses, window, total_loss, total_correct = [], [], 0.0, 0
    bar = tqdm(total=n, desc=desc, unit="img", disable=not progress, leave=False, mininterval=0.5)
    start = time.perf_counter()
    for step, i in enumerate(range(0, n, batch_size), start=first_step):
        rows = order[i:i + batch_size]
        loss, correct = learner.train_step(inputs[rows], labels[rows])
        if not math.isfinite(loss):
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
    return {"loss": total_loss / n, "acc": total_correct / n, "step_losses": step_losses,
            "seconds": seconds, "samples_per_s": n / seconds}


def fit(learner: Learner, train: tuple, val: tuple, train_eval: tuple, *, epochs: int, batch_size: int,
        seed: int, best_error: float, log_every: int, progress: bool = True,
        on_epoch: Callable[[dict, dict], None] | None = None, resume_from: dict | None = None,
        should_stop: Callable[[dict], bool] | None = None) -> dict:
    """Train for `epochs`, measuring train-eval and val sets after each; keep the best-val weights.

    `train`, `val` and `train_eval` are (inputs, labels) pairs: inputs in the learner's own type,
    labels as the learner's type for train and as numpy arrays for the evaluated sets.
    After every epoch calls on_epoch(record, checkpoint), then stops early if should_stop(record) is
    true (a sweep's pruner); a checkpoint given as `resume_from`
    continues exactly where it was taken (weights, optimizer, shuffling and dropout RNG states).
    Returns the last epoch's record, the best epoch and its weights.
    """
    rng = np.random.default_rng(seed)
    state = {"epoch": 0, "best": {"epoch": 0, "val_acc": -1.0, "state": None}, "last": None}
    if resume_from:
        learner.load_checkpoint(resume_from["learner"])
        rng.bit_generator.state = resume_from["rng"]
        torch.set_rng_state(resume_from["torch_rng"])
        state = {k: resume_from[k] for k in ("epoch", "best", "last")}
    steps_per_epoch = math.ceil(len(train[1]) / batch_size)
    for epoch in range(state["epoch"] + 1, epochs + 1):
        stats = train_epoch(learner, *train, batch_size, rng, log_every, first_step=(epoch - 1) * steps_per_epoch + 1,
                            epoch=epoch, desc=f"epoch {epoch}/{epochs}", progress=progress)
        on_train = evaluate(learner, *train_eval)
        on_val = evaluate(learner, *val)
        record = {
            "epoch": epoch,
            Metric.TRAIN_LOSS: on_train["loss"], Metric.TRAIN_ACC: on_train["acc"],
            Metric.VAL_LOSS: on_val["loss"], Metric.VAL_ACC: on_val["acc"],
            **bias_variance(on_train["acc"], on_val["acc"], best_error),
            Metric.EPOCH_SECONDS: stats["seconds"], Metric.SAMPLES_PER_S: stats["samples_per_s"],
            "step_losses": stats["step_losses"],
            "val_confusion": confusion_matrix(val[1], on_val["predicted"], labels=range(NUM_CLASSES)),
        }
        if on_val["acc"] > state["best"]["val_acc"]:
            state["best"] = {"epoch": epoch, "val_acc": on_val["acc"], "state": learner.state()}
        state["epoch"] = epoch
        state["last"] = {k: v for k, v in record.items() if k not in ("step_losses", "val_confusion")}
        if progress:
            tqdm.write(f"epoch {epoch}/{epochs}: train loss {on_train['loss']:.4f} acc {on_train['acc']:.4f}"
                       f" | val loss {on_val['loss']:.4f} acc {on_val['acc']:.4f}"
                       f" | {stats['samples_per_s']:.0f} img/s")
        if on_epoch:
            checkpoint = {**state, "learner": learner.checkpoint(), "rng": rng.bit_generator.state,
                          "torch_rng": torch.get_rng_state()}
            on_epoch(record, checkpoint)
        if should_stop and should_stop(record):
            break
    best = state["best"]
    return {"last": state["last"], "best_epoch": best["epoch"], "best_val_acc": best["val_acc"],
            "best_state": best["state"]}

"""Keras 3 models on the PyTorch backend: the KerasLearner (model.compile and model.fit, as the tutorials
train) with the callback that logs this project's schema every epoch, and their adapter."""

import math
import os

import numpy as np
import pandas as pd
import torch

from core.schema import Artifact, Metric, Param
from core.settings import ConfigError
from experiments.adapters import LAYER_COLUMNS
from experiments.train import EXPLODING_LOSS, EpochMeter

BACKEND = "torch"  # Keras 3's backend this project runs on: keras_models sets it before Keras loads
OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adadelta": "Adadelta"}  # our names -> keras.optimizers classes
PROBABILITY_FLOOR = 1e-7  # Keras's own epsilon: its cross-entropy clips softmax outputs there too
# So its loss never passes -ln(PROBABILITY_FLOOR) = 16.1 and never reaches our EXPLODING_LOSS: a batch within 10% of
# that ceiling has nearly every image confidently wrong, which no learning model reaches (a uniform guess: 2.3).
EXPLODING_KERAS_LOSS = min(EXPLODING_LOSS, 0.9 * -math.log(PROBABILITY_FLOOR))


def load_keras():
    """Keras on its PyTorch backend: KERAS_BACKEND is set, unless the user set it, before Keras first loads
    (`check` refuses a run whose KERAS_BACKEND names another)."""
    os.environ.setdefault("KERAS_BACKEND", BACKEND)
    import keras  # noqa: PLC0415 (keras: seconds to load, only for Keras runs)

    return keras


def keras_backend_problem() -> str | None:
    """Why Keras cannot run here on PyTorch, or None (KERAS_BACKEND must be unset or 'torch')."""
    chosen = os.environ.get("KERAS_BACKEND", BACKEND)
    if chosen != BACKEND:
        return (
            f"--framework keras: KERAS_BACKEND is {chosen!r}; this project runs Keras on its PyTorch backend "
            f"(unset KERAS_BACKEND or set it to {BACKEND})"
        )
    return None


class KerasLearner:
    """A compiled Keras model. Keras runs its own epoch loop (model.fit); the callback made by train_epochs
    feeds each step to an EpochMeter and closes each epoch with experiments.train's end_of_epoch."""

    def __init__(self, model, optimizer: str, lr: float):
        keras = load_keras()

        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        self.model = model
        model.compile(
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            optimizer=getattr(keras.optimizers, OPTIMIZERS[optimizer])(learning_rate=lr),
        )

    def to_inputs(self, images: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(images.transpose(0, 2, 3, 1))  # (N, 1, 28, 28) -> the tutorials' (N, 28, 28, 1)

    def to_labels(self, labels: np.ndarray) -> np.ndarray:
        return labels.astype(np.int64)

    def train_epochs(
        self, inputs, labels, *, epochs: range, batch_size: int, rng, log_every: int, progress: bool, end_of_epoch
    ) -> None:
        """model.fit over `epochs` (1-based). Keras shuffles and drops out from torch's RNG, which fit checkpoints;
        the callback puts that RNG back where fit left it once model.fit has set itself up (which draws from it,
        more on a resumed run than on a fresh one), so a resumed run repeats an uninterrupted one exactly."""
        callback = schema_callback(
            len(labels), batch_size, log_every, progress, epochs, end_of_epoch, torch_rng=torch.get_rng_state()
        )
        self.model.fit(
            inputs,
            labels,
            batch_size=batch_size,
            initial_epoch=epochs.start - 1,
            epochs=epochs.stop - 1,
            shuffle=True,
            verbose=0,
            callbacks=[callback],
        )

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        """Log-probabilities (logits up to a constant) from the softmax output."""
        return np.log(np.maximum(self.model.predict_on_batch(inputs), PROBABILITY_FLOOR))

    def weights(self) -> dict:
        """Every variable (dropout's seed state too) by position: Keras numbers layer names per process."""
        return {str(i): variable.numpy().copy() for i, variable in enumerate(self.model.variables)}

    def load_weights(self, weights: dict) -> None:
        for i, variable in enumerate(self.model.variables):
            assign(variable, weights[str(i)])

    def checkpoint(self) -> dict:
        optimizer = self.model.optimizer
        return {"model": self.weights(), "optimizer": [v.numpy().copy() for v in optimizer.variables]}

    def load_checkpoint(self, checkpoint: dict) -> None:
        self.load_weights(checkpoint["model"])
        optimizer = self.model.optimizer
        if not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        for variable, value in zip(optimizer.variables, checkpoint["optimizer"], strict=True):
            assign(variable, value)


def assign(variable, value) -> None:
    """A saved value (array or tensor; a checkpoint stores scalars as one-element tensors) into a Keras variable."""
    variable.assign(np.reshape(np.asarray(value), variable.shape))


def schema_callback(
    n: int, batch_size: int, log_every: int, progress: bool, epochs: range, end_of_epoch, torch_rng: torch.Tensor
):
    """The Keras callback that turns model.fit's epochs into this project's: per-step losses into an EpochMeter,
    then end_of_epoch (evaluate, log, checkpoint), which may stop training. Training starts from torch_rng."""
    keras = load_keras()

    steps_per_epoch = -(-n // batch_size)

    class SchemaCallback(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            torch.set_rng_state(torch_rng)

        def on_epoch_begin(self, epoch, logs=None):
            self.meter = EpochMeter(
                n,
                epoch + 1,
                epoch * steps_per_epoch + 1,
                log_every,
                f"epoch {epoch + 1}/{epochs.stop - 1}",
                progress,
                EXPLODING_KERAS_LOSS,
            )
            self.loss_sum = self.correct_sum = 0.0

        def on_train_batch_end(self, batch, logs=None):
            # Keras reports the epoch's running means (weighted by batch size); their totals' increments
            # are this step's own loss and correct count.
            seen = min((batch + 1) * batch_size, n)
            rows = seen - batch * batch_size
            loss_sum, correct_sum = logs["loss"] * seen, logs["accuracy"] * seen
            self.meter.add((loss_sum - self.loss_sum) / rows, round(correct_sum - self.correct_sum), rows)
            self.loss_sum, self.correct_sum = loss_sum, correct_sum

        def on_epoch_end(self, epoch, logs=None):
            if end_of_epoch(epoch + 1, self.meter.done()):
                self.model.stop_training = True

    return SchemaCallback()


class KerasAdapter:
    framework = "keras"

    def check(self, config, spec) -> None:
        problem = keras_backend_problem()
        if problem:
            raise ConfigError(problem)
        if config.optimizer not in OPTIMIZERS:
            raise ConfigError(f"--optimizer: Keras runs take {', '.join(OPTIMIZERS)}, not {config.optimizer!r}")

    def device(self, config) -> str:
        return config.device or ("cuda" if torch.cuda.is_available() else "cpu")

    def input_dtype(self, config) -> np.dtype:
        return np.dtype(np.float32)

    def build(self, spec, config, device: str, data=None):
        keras = load_keras()

        torch.set_flush_denormal(config.flush_denormal)  # the backend's kernels are PyTorch's
        keras.utils.set_random_seed(config.seed)  # weights, Keras's shuffling and dropout
        with keras.device(device):
            model = spec.build(config.style, self.framework, data)
            if config.dropout is not None:
                for layer in dropout_layers(model):
                    layer.rate = config.dropout
            return model, KerasLearner(model, config.optimizer, config.lr)

    def resolved_params(self, config, model, device: str) -> dict:
        keras = load_keras()

        rates = ",".join(f"{layer.rate:g}" for layer in dropout_layers(model))
        return {Param.DROPOUT: rates or "none", Param.KERAS_VERSION: keras.__version__}

    def layer_table(self, model, input_shape: tuple[int, int, int]) -> pd.DataFrame:
        """Keras's own layer list, as model.summary() prints it (the input layer has no output of its own)."""
        rows = [
            {
                "layer": layer.name,
                "type": type(layer).__name__,
                "output_shape": "x".join(str(d) for d in layer.output.shape[1:]),
                "activations": int(np.prod(layer.output.shape[1:])),
                "params": int(layer.count_params()),
            }
            for layer in model.layers
            if type(layer).__name__ != "InputLayer"
        ]
        return pd.DataFrame(rows, columns=LAYER_COLUMNS)

    def size_figures(self, model, table: pd.DataFrame) -> dict:
        return {
            Metric.PARAMS_TOTAL: int(model.count_params()),
            Metric.PARAMS_TRAINABLE: int(sum(np.prod(w.shape) for w in model.trainable_weights)),
            Metric.MODEL_BYTES: int(sum(w.numpy().nbytes for w in model.weights)),
            Metric.ACTIVATION_BYTES: int(table["activations"].sum() * np.dtype(model.dtype).itemsize),
        }

    def log_weights(self, logger, model, input_shape: tuple[int, int, int]) -> None:
        """The model through mlflow.keras (a .keras file: architecture and weights, no pickle to load)."""
        keras = load_keras()
        import mlflow.keras  # noqa: PLC0415 (imports keras)

        channels, height, width = input_shape
        example = np.zeros((2, height, width, channels), dtype=np.float32)
        signature = mlflow.models.infer_signature(example, model.predict_on_batch(example))
        mlflow.set_tracking_uri(logger.client.tracking_uri)
        with mlflow.start_run(run_id=logger.run_id, log_system_metrics=False):
            mlflow.keras.log_model(
                model,
                name=Artifact.MODEL,
                signature=signature,
                pip_requirements=[f"keras=={keras.__version__}", f"torch=={torch.__version__.split('+')[0]}"],
            )


def dropout_layers(model) -> list:
    keras = load_keras()

    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]

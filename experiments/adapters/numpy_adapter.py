"""The from-scratch numpy CNN: its learner (SGD steps on numpy arrays) and its adapter."""

import numpy as np
import pandas as pd

from core.schema import Artifact, Metric, Param
from core.settings import ConfigError
from experiments.adapters import LAYER_COLUMNS
from experiments.numpy_cnn import TinyNumpyCNN, sgd_step


class NumpyLearner:
    """Adapts TinyNumpyCNN to experiments.train: numpy arrays in, SGD steps, logits out."""

    def __init__(self, model: TinyNumpyCNN, lr: float):
        self.model, self.lr = model, lr

    def to_inputs(self, images: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(images[:, 0], dtype=self.model.dtype)  # (N, 1, 28, 28) -> (N, 28, 28)

    def to_labels(self, labels: np.ndarray) -> np.ndarray:
        return labels.astype(np.int64)

    def train_step(self, inputs: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
        loss, logits = self.model.loss_and_grads(inputs, labels)
        sgd_step(self.model.layers, self.lr)
        return loss, int((logits.argmax(axis=1) == labels).sum())

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        return self.model.forward(inputs)

    def weights(self) -> dict:
        return {name: value.copy() for name, value in self.model.parameter_arrays().items()}

    def load_weights(self, weights: dict) -> None:
        for name, value in self.model.parameter_arrays().items():
            value[...] = np.asarray(weights[name])

    def checkpoint(self) -> dict:
        return {"model": self.weights()}  # plain SGD keeps no optimizer state

    def load_checkpoint(self, checkpoint: dict) -> None:
        self.load_weights(checkpoint["model"])


class NumpyAdapter:
    framework = "numpy"

    def check(self, config, spec) -> None:
        if config.optimizer != "sgd":
            raise ConfigError(f"--optimizer: the numpy model supports only sgd, not {config.optimizer!r}")

    def device(self, config) -> str:
        return "cpu"

    def input_dtype(self, config) -> np.dtype:
        return np.dtype(config.dtype)

    def build(self, spec, config, device: str, data=None) -> tuple[TinyNumpyCNN, NumpyLearner]:
        model = spec.build(
            config.style,
            framework=self.framework,
            filters=config.filters,
            seed=config.seed,
            dtype=np.dtype(config.dtype),
        )
        return model, NumpyLearner(model, lr=config.lr)

    def resolved_params(self, config, model, device: str) -> dict:
        return {Param.FILTERS: config.filters, Param.DTYPE: config.dtype}

    def layer_table(self, model, input_shape: tuple[int, int, int]) -> pd.DataFrame:
        return pd.DataFrame(model.layer_rows(), columns=LAYER_COLUMNS)

    def size_figures(self, model, table: pd.DataFrame) -> dict:
        weights = list(model.parameter_arrays().values())  # every array is trainable
        total = int(sum(a.size for a in weights))
        return {
            Metric.PARAMS_TOTAL: total,
            Metric.PARAMS_TRAINABLE: total,
            Metric.MODEL_BYTES: int(sum(a.nbytes for a in weights)),
            Metric.ACTIVATION_BYTES: int(table["activations"].sum() * weights[0].itemsize),
        }

    def log_weights(self, logger, model, input_shape: tuple[int, int, int]) -> None:
        logger.log_npz(model.parameter_arrays(), Artifact.NUMPY_WEIGHTS)

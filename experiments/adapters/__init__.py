"""One adapter per framework: everything that differs between PyTorch, Keras and numpy models.

An adapter builds a registered model with its learner (the training hooks experiments.train
calls), says which device it runs on and how it scales images, checks the settings it cannot
honour, reports its per-layer table and size figures, and saves its weights to the run.
experiments.run calls these and never branches on the framework. Adding a framework means one module
here, its entry in ADAPTERS and its name in core.settings.FRAMEWORKS; a model is written in one or more
of them (ModelSpec.builders).
"""

import importlib
from typing import Protocol

import numpy as np
import pandas as pd

LAYER_COLUMNS = ["layer", "type", "output_shape", "activations", "params"]
# framework -> its adapter class, imported only when asked for (Keras takes seconds to load)
ADAPTERS = {
    "pytorch": "torch_adapter.TorchAdapter",
    "keras": "keras_adapter.KerasAdapter",
    "numpy": "numpy_adapter.NumpyAdapter",
}


class ModelAdapter(Protocol):
    framework: str

    def check(self, config, spec) -> None:
        """Raise ConfigError for a setting this framework cannot honour."""

    def device(self, config) -> str: ...

    def input_dtype(self, config) -> np.dtype: ...

    def build(self, spec, config, device: str, data=None) -> tuple[object, object]:
        """The model (seeded by config.seed) and its learner; `data` (classes, (C, H, W)) shapes a model of your own."""

    def resolved_params(self, config, model, device: str) -> dict:
        """This framework's logged params, as resolved for the run (e.g. 'auto' precision -> bf16)."""

    def layer_table(self, model, input_shape: tuple[int, int, int]) -> pd.DataFrame:
        """One row per layer for one image of input_shape (channels, height, width)."""

    def size_figures(self, model, table: pd.DataFrame) -> dict:
        """params_total, params_trainable, model_bytes and activation_bytes_per_image (from the layer table)."""

    def log_weights(self, logger, model, input_shape: tuple[int, int, int]) -> None: ...


def adapter_for(framework: str) -> ModelAdapter:
    module, name = ADAPTERS[framework].split(".")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)()

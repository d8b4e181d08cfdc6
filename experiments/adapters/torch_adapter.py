"""PyTorch models: the TorchLearner (data on the device, bf16 autocast, channels_last) and their adapter."""

import copy

import mlflow.pytorch
import numpy as np
import pandas as pd
import torch
import torchinfo

from core.schema import Artifact, Metric, Param
from core.settings import ConfigError
from experiments.adapters import LAYER_COLUMNS
from experiments.layers import dropout_layers, set_dropout

OPTIMIZERS = {  # core.settings.OPTIMIZERS -> torch.optim classes
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adadelta": torch.optim.Adadelta,
}


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def bf16_is_fast(device: str) -> bool:
    """Whether the device has native bf16 math (CUDA with bf16, or a CPU with AVX512-BF16 or AMX)."""
    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    return any(
        getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    )


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

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: str,
        lr: float,
        device: str,
        precision: str = "fp32",
        channels_last: bool = False,
        weight_decay: float = 0.0,
    ):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.optimizer = OPTIMIZERS[optimizer](self.model.parameters(), lr=lr, weight_decay=weight_decay)
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

    def weights(self) -> dict:
        return copy.deepcopy(self.model.state_dict())

    def load_weights(self, weights: dict) -> None:
        self.model.load_state_dict(weights)

    def checkpoint(self) -> dict:
        return {"model": self.weights(), "optimizer": copy.deepcopy(self.optimizer.state_dict())}

    def load_checkpoint(self, checkpoint: dict) -> None:
        self.load_weights(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])


class TorchAdapter:
    framework = "pytorch"

    def check(self, config, spec) -> None:
        if config.dropout is not None and not dropout_layers(spec.build(config.style, self.framework)):
            raise ConfigError(f"--dropout: model {config.model!r} has no dropout layers")

    def device(self, config) -> str:
        return config.device or default_device()

    def input_dtype(self, config) -> np.dtype:
        return np.dtype(np.float32)

    def build(self, spec, config, device: str, data=None) -> tuple[torch.nn.Module, TorchLearner]:
        torch.set_flush_denormal(config.flush_denormal)  # CPU only (a no-op elsewhere); process-wide, so set per run
        torch.manual_seed(config.seed)
        model = spec.build(
            config.style, self.framework, data, **({"width": config.width} if config.width is not None else {})
        )
        if config.dropout is not None:
            set_dropout(model, config.dropout)
        return model, TorchLearner(
            model,
            config.optimizer,
            config.lr,
            device,
            resolve_precision(config.precision, device),
            config.channels_last,
            config.weight_decay or 0.0,
        )

    def resolved_params(self, config, model, device: str) -> dict:
        rates = ",".join(f"{layer.p:g}" for layer in dropout_layers(model))
        return {
            Param.PRECISION: resolve_precision(config.precision, device),
            Param.CHANNELS_LAST: config.channels_last,
            Param.DROPOUT: rates or "none",
        }

    def layer_table(self, model, input_shape: tuple[int, int, int]) -> pd.DataFrame:
        """torchinfo's leaf layers (torchinfo is the maintained successor of torchsummary); it moves the model to
        the CPU, as log_weights does after it."""
        info = torchinfo.summary(model, input_size=(1, *input_shape), verbose=0, device="cpu")
        rows = [
            {
                "layer": layer.var_name,
                "type": layer.class_name,
                "output_shape": "x".join(str(d) for d in layer.output_size[1:]),
                "activations": int(np.prod(layer.output_size[1:])),
                "params": int(layer.num_params),
            }
            for layer in info.summary_list
            if layer.is_leaf_layer
        ]
        return pd.DataFrame(rows, columns=LAYER_COLUMNS)

    def size_figures(self, model, table: pd.DataFrame) -> dict:
        tensors = [*model.parameters(), *model.buffers()]
        return {
            Metric.PARAMS_TOTAL: sum(p.numel() for p in model.parameters()),
            Metric.PARAMS_TRAINABLE: sum(p.numel() for p in model.parameters() if p.requires_grad),
            Metric.MODEL_BYTES: sum(t.numel() * t.element_size() for t in tensors),
            Metric.ACTIVATION_BYTES: int(table["activations"].sum() * tensors[0].element_size()),
        }

    def log_weights(self, logger, model, input_shape: tuple[int, int, int]) -> None:
        """The model through mlflow.pytorch in its default 'pt2' exported-graph format (no pickle to load), its
        weights in the default memory format: the archive treats channels_last weights as slices of a larger tensor
        and warns on every run.

        Requirements are pinned here so MLflow need not infer them in a subprocess.
        """

        mlflow.set_tracking_uri(logger.client.tracking_uri)
        with mlflow.start_run(run_id=logger.run_id, log_system_metrics=False):
            mlflow.pytorch.log_model(
                model.cpu().to(memory_format=torch.contiguous_format).eval(),
                name=Artifact.MODEL,
                input_example=np.zeros((2, *input_shape), dtype=np.float32),
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            )

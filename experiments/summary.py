"""The per-layer model summary (layer, type, output shape, activations, parameters) and size figures.

PyTorch models are summarised by torchinfo, the maintained successor of torchsummary; the numpy
model reports its own rows (see numpy_cnn.TinyNumpyCNN.layer_rows) in the same columns.
"""
import numpy as np
import pandas as pd

from experiments.schema import Metric

LAYER_COLUMNS = ["layer", "type", "output_shape", "activations", "params"]


def torch_layer_rows(model) -> list[dict]:
    import torchinfo

    info = torchinfo.summary(model, input_size=(1, 1, 28, 28), verbose=0, device="cpu")
    return [
        {"layer": layer.var_name, "type": layer.class_name,
         "output_shape": "x".join(str(d) for d in layer.output_size[1:]),
         "activations": int(np.prod(layer.output_size[1:])), "params": int(layer.num_params)}
        for layer in info.summary_list if layer.is_leaf_layer
    ]


def layer_table(model) -> pd.DataFrame:
    rows = model.layer_rows() if hasattr(model, "layer_rows") else torch_layer_rows(model)
    return pd.DataFrame(rows, columns=LAYER_COLUMNS)


def size_figures(model, table: pd.DataFrame) -> dict:
    """Parameter counts, bytes of the weights, and bytes of one image's layer outputs."""
    if hasattr(model, "parameter_arrays"):  # the numpy model: every array is trainable
        weights = list(model.parameter_arrays().values())
        total = trainable = sum(a.size for a in weights)
    else:
        weights = [t.detach().cpu().numpy() for t in [*model.parameters(), *model.buffers()]]
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        Metric.PARAMS_TOTAL: int(total),
        Metric.PARAMS_TRAINABLE: int(trainable),
        Metric.MODEL_BYTES: int(sum(a.nbytes for a in weights)),
        Metric.ACTIVATION_BYTES: int(table["activations"].sum() * weights[0].itemsize),
    }

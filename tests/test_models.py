"""The registry's models: shapes, parameter counts, the two conv-conv builds agreeing, and the Keras twins."""

import numpy as np
import pytest
import torch

from core.schema import Metric
from experiments.adapters import adapter_for
from experiments.models import MODELS, REGISTRY_DATA, ConvConv, conv_conv_sequential


@pytest.mark.parametrize("name", [n for n, s in MODELS.items() if "pytorch" in s.frameworks])
def test_every_torch_model_maps_images_to_ten_logits(name):
    for style in MODELS[name].styles("pytorch"):
        assert MODELS[name].build(style, framework="pytorch")(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.keras
@pytest.mark.parametrize("name", [n for n, s in MODELS.items() if "keras" in s.frameworks])
def test_every_keras_program_matches_its_pytorch_twin_layer_by_layer(name):
    """The tutorials' Keras programs, Sequential and Functional: same parameters, layer by layer, as the PyTorch
    twin, and ten probabilities per image."""

    spec, keras_adapter, torch_adapter = MODELS[name], adapter_for("keras"), adapter_for("pytorch")
    twin = torch_adapter.layer_table(spec.build(framework="pytorch"), REGISTRY_DATA[1])
    twin_params = [p for p in twin["params"] if p]
    for style in ("sequential", "functional"):
        model = spec.build(style, framework="keras")
        table = keras_adapter.layer_table(model, REGISTRY_DATA[1])
        assert [p for p in table["params"] if p] == twin_params, style
        assert keras_adapter.size_figures(model, table)[Metric.PARAMS_TOTAL] == sum(twin_params), style
        probabilities = model.predict_on_batch(np.zeros((3, 28, 28, 1), dtype=np.float32))
        assert probabilities.shape == (3, 10) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_conv_conv_builds_share_parameter_count_and_outputs():
    torch.manual_seed(0)
    sequential, functional = conv_conv_sequential(), ConvConv()
    counts = [sum(p.numel() for p in m.parameters()) for m in (sequential, functional)]
    assert counts == [1_199_882, 1_199_882]
    # Same weights in the same order: copy tensor by tensor, then compare outputs in eval mode.
    with torch.no_grad():
        for source, target in zip(sequential.parameters(), functional.parameters(), strict=True):
            target.copy_(source)
    x = torch.randn(16, 1, 28, 28)
    torch.testing.assert_close(functional.eval()(x), sequential.eval()(x), rtol=0, atol=0)
    assert not torch.equal(ConvConv().eval()(x), sequential(x))  # different weights do differ


def test_sequential_conv_conv_has_relu_after_dense_128():
    layers = list(conv_conv_sequential())
    dense = next(i for i, layer in enumerate(layers) if isinstance(layer, torch.nn.Linear))
    assert isinstance(layers[dense + 1], torch.nn.ReLU)


def test_layer_table_totals_match_parameter_count():
    model, adapter = MODELS["two-block"].build(framework="pytorch"), adapter_for("pytorch")
    table = adapter.layer_table(model, REGISTRY_DATA[1])
    sizes = adapter.size_figures(model, table)
    assert table["params"].sum() == sizes[Metric.PARAMS_TOTAL] == 431_242
    assert table.iloc[0].to_dict() == {
        "layer": "0",
        "type": "Conv2d",
        "output_shape": "32x26x26",
        "activations": 32 * 26 * 26,
        "params": 320,
    }
    assert sizes[Metric.MODEL_BYTES] == 431_242 * 4


def test_unknown_style_is_refused():
    with pytest.raises(ValueError, match="no style 'functional'; choose one of sequential"):
        MODELS["tiny"].build("functional")
    with pytest.raises(ValueError, match="'lenet5' is not written in keras; expected one of pytorch"):
        MODELS["lenet5"].build(framework="keras")

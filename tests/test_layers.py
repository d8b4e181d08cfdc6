"""Our Dropout against nn.Dropout's contract: mask statistics, scaling, gradient, layout, eval mode."""

import pytest
import torch

from experiments.layers import Dropout


@pytest.mark.parametrize("p", [0.25, 0.5, 0.3])
def test_dropout_zeroes_a_fraction_p_and_keeps_the_mean(p):
    torch.manual_seed(0)
    x = torch.ones(400, 1000)
    y = Dropout(p)(x)
    dropped = (y == 0).float().mean().item()
    assert dropped == pytest.approx(p, abs=0.005)
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)
    assert torch.unique(y[y != 0]).numel() == 1  # every kept element has the same scale


def test_dropout_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(1)
    x = torch.randn(64, 50, requires_grad=True)
    y = Dropout(0.25)(x)
    y.sum().backward()
    expected = (y != 0).float() / 0.75
    assert torch.allclose(x.grad, expected)
    assert torch.allclose(y, x.detach() * expected)


def test_dropout_is_identity_in_eval_mode_and_at_p_zero():
    x = torch.randn(8, 16)
    assert Dropout(0.5).eval()(x) is x
    assert Dropout(0.0)(x) is x
    assert torch.equal(Dropout(1.0)(x), torch.zeros_like(x))


def test_dropout_masks_follow_torch_seed_and_differ_between_calls():
    x = torch.ones(32, 32)
    torch.manual_seed(5)
    first, second = Dropout(0.5)(x), Dropout(0.5)(x)
    torch.manual_seed(5)
    assert torch.equal(Dropout(0.5)(x), first)
    assert not torch.equal(first, second)


def test_dropout_keeps_the_channels_last_layout_and_bf16():
    x = torch.randn(4, 8, 6, 6, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
    y = Dropout(0.25)(x)
    assert y.dtype == torch.bfloat16
    assert y.is_contiguous(memory_format=torch.channels_last)
    # mask positions are independent of layout: zeros in y are exactly where y differs from scaled x
    assert torch.equal(y != 0, y == x / 0.75)

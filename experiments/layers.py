"""Layers our models use in place of PyTorch's, where measurement showed PyTorch's to be slow on CPU."""

import torch
from torch import nn

_LEVELS = 1 << 16  # the mask is drawn as 16-bit integers: p is rounded to a multiple of 1/65536


class Dropout(nn.Dropout):
    """Inverted dropout, as nn.Dropout: zero each element with probability p, scale the rest by 1/(1-p).

    nn.Dropout draws one float per element with bernoulli_, which took 17% of a conv-conv bf16
    training step on 2 CPU cores (28 ms for 256 x 9216 elements). Here each 64-bit random word
    gives four 16-bit draws, and an element is kept when its draw is at or above p's threshold:
    3 ms for the same mask (benchmarks/training_speed.py measures the whole step). p is rounded to
    a multiple of 1/65536 (exact for 0.25 and 0.5), and the scale uses the rounded p, so the
    expected output still equals the input. Draws come from torch's global generator, so seeding
    and checkpointed RNG state reproduce the masks as before.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        dropped_levels = round(self.p * _LEVELS)
        if dropped_levels >= _LEVELS:
            return torch.zeros_like(x)
        keep = self.random_draws(x) >= dropped_levels - _LEVELS // 2
        return torch.where(keep, x, 0) * (_LEVELS / (_LEVELS - dropped_levels))

    @staticmethod
    def random_draws(x: torch.Tensor) -> torch.Tensor:
        """Uniform int16 draws in the shape and memory layout of x, four from each 64-bit random word."""
        n = x.numel()
        words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
        layout = torch.empty_like(x, dtype=torch.int16)  # x's strides, so the output keeps x's layout
        return words.view(torch.int16)[:n].as_strided(layout.shape, layout.stride())


def dropout_layers(model: nn.Module) -> list[nn.Dropout]:
    return [m for m in model.modules() if isinstance(m, nn.Dropout)]


def set_dropout(model: nn.Module, p: float) -> None:
    """Give every dropout layer of the model the rate p (a sweep's `dropout` hyperparameter)."""
    for layer in dropout_layers(model):
        layer.p = p

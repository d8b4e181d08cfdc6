"""A model of your own for `python -m experiments train --model examples/my_model.py:small_cnn`.

The runner calls the factory with the arguments it names, from the run's dataset: num_classes, in_channels,
image_size (height, width), input_shape (channels, height, width). It returns logits, one per class.
"""

from torch import nn


def small_cnn(num_classes: int, in_channels: int, width: int = 16) -> nn.Module:
    """Two conv blocks and a global average pool: any image size, grey or colour."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(2 * width, num_classes),
    )

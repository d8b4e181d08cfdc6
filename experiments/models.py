"""The model registry: each CNN with the recipe its source trained it with.

`python -m experiments models` lists them. A recipe is the set of run settings
(core.settings) whose values the source chose differently from the defaults; every one can
be overridden again on the command line or in a spec.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from experiments.layers import Dropout
from experiments.numpy_cnn import TinyNumpyCNN

REGISTRY_DATA = (10, (1, 28, 28))  # every registry model: ten classes of 28x28 grey images


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    source: str
    recipe: dict  # setting -> the source's value, where it differs from the setting's default
    published_test_acc: str
    builders: dict[str, dict[str, Callable[..., object]]] = field(default_factory=dict)  # framework -> style -> factory
    scalable: tuple[str, ...] = ()  # frameworks whose factories take a width multiplier (setting `width`)
    data: tuple[int, tuple[int, int, int]] | None = REGISTRY_DATA  # (classes, (C, H, W)) it takes; None: any
    source_file: Path | None = None  # your own model's file (experiments.user_models), logged with the run

    @property
    def frameworks(self) -> tuple[str, ...]:
        """The frameworks it is written in (experiments.adapters); the first is its own, the default."""
        return tuple(self.builders)

    def framework_of(self, framework: str | None) -> str:
        """The framework asked for, or the model's own; ValueError if the model is not written in it."""
        framework = framework or self.frameworks[0]
        if framework not in self.builders:
            raise ValueError(
                f"model {self.name!r} is not written in {framework}; expected one of {', '.join(self.frameworks)}"
            )
        return framework

    def styles(self, framework: str | None = None) -> tuple[str, ...]:
        return tuple(self.builders[self.framework_of(framework)])

    def build(self, style: str | None = None, framework: str | None = None, data=None, **options):
        """The model in `style` (default: the first) and `framework` (default: its own); options go to the
        factory (the numpy model's filters...), and so does `data` (classes, (C, H, W)) to a model that takes any."""
        styles = self.styles(framework)
        style = style or styles[0]
        if style not in styles:
            raise ValueError(f"model {self.name!r} has no style {style!r}; choose one of {', '.join(styles)}")
        shaped = {"data": data} if self.data is None and data is not None else {}
        return self.builders[self.framework_of(framework)][style](**shaped, **options)

    def data_problem(self, classes: int, input_shape: tuple[int, int, int]) -> str | None:
        """Why this model cannot take a dataset of `classes` classes of `input_shape` images, or None."""
        if self.data is None or self.data == (classes, tuple(input_shape)):
            return None
        wanted_classes, (channels, height, width) = self.data
        got = "x".join(map(str, input_shape))
        return (
            f"model {self.name} takes {height}x{width} images of {channels} channel(s) in {wanted_classes} classes; "
            f"this dataset has {got} (CxHxW) images in {classes} classes: bring your own model "
            "(--model FILE.py:factory), or --image-size for a grey dataset of as many classes"
        )


# ---------------------------------------------------------------- the networks


def softmax_regression() -> nn.Module:
    """Multinomial logistic regression: one linear layer, the high-bias baseline."""
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))


def lenet5() -> nn.Module:
    """LeNet-5 (LeCun et al. 1998) as usually re-implemented: tanh, average pooling, 28x28 padded to 32."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.Tanh(),
        nn.Linear(120, 84),
        nn.Tanh(),
        nn.Linear(84, 10),
    )


def tiny() -> nn.Module:
    """Conv 3x3 x8 (no bias) -> MaxPool 2 -> Dense 10; Glorot-uniform weights as the Keras copy had."""
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, bias=False),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(13 * 13 * 8, 10),
    )
    for layer in model:
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return model


def two_block() -> nn.Module:
    """Two conv-pool-dropout blocks, then Dense 256 -> Dense 10."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        Dropout(0.25),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        Dropout(0.25),
        nn.Flatten(),
        nn.Linear(64 * 5 * 5, 256),
        nn.ReLU(),
        nn.Linear(256, 10),
    )


def conv_conv_sizes(width: float) -> tuple[int, int, int]:
    """conv-conv's two filter counts and hidden units at a width multiplier (1: the published 32, 64, 128)."""
    return tuple(max(1, round(n * width)) for n in (32, 64, 128))


def conv_conv_sequential(width: float = 1.0) -> nn.Module:
    """The classic MNIST example as nn.Sequential (with the ReLU after Dense 128 the tutorial forgot)."""
    first, second, hidden = conv_conv_sizes(width)
    return nn.Sequential(
        nn.Conv2d(1, first, 3),
        nn.ReLU(),
        nn.Conv2d(first, second, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        Dropout(0.25),
        nn.Flatten(),
        nn.Linear(12 * 12 * second, hidden),
        nn.ReLU(),
        Dropout(0.5),
        nn.Linear(hidden, 10),
    )


class ConvConv(nn.Module):
    """The same network as conv_conv_sequential, as an nn.Module subclass with its own forward."""

    def __init__(self, width: float = 1.0):
        super().__init__()
        first, second, hidden = conv_conv_sizes(width)
        self.conv1 = nn.Conv2d(1, first, 3)
        self.conv2 = nn.Conv2d(first, second, 3)
        self.dropout1 = Dropout(0.25)
        self.fc1 = nn.Linear(12 * 12 * second, hidden)
        self.dropout2 = Dropout(0.5)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x):
        x = nn.functional.relu(self.conv1(x))
        x = nn.functional.relu(self.conv2(x))
        x = self.dropout1(nn.functional.max_pool2d(x, 2))
        x = nn.functional.relu(self.fc1(x.flatten(1)))
        return self.fc2(self.dropout2(x))


def keras_builder(name: str) -> Callable[[], object]:
    """A factory of experiments.keras_models; Keras is imported only when a Keras model is built."""

    def build():
        from experiments import keras_models  # noqa: PLC0415 (keras: seconds to load, only for Keras models)

        return getattr(keras_models, name)()

    return build


# ---------------------------------------------------------------- the registry

TINY_RECIPE = dict(
    optimizer="sgd", lr=0.005, batch_size=1, epochs=3, input_scaling="centered", val_split=0.0, val_from_test=0.2
)

MODELS = {
    spec.name: spec
    for spec in [
        ModelSpec(
            name="softmax-regression",
            description="Flatten -> Dense 10: a linear classifier, the high-bias reference",
            source="multinomial logistic regression (textbook baseline)",
            recipe={},
            published_test_acc="~92.5% (linear classifiers in LeCun et al. 1998: 88-92.4%)",
            builders={"pytorch": {"sequential": softmax_regression}},
        ),
        ModelSpec(
            name="lenet5",
            description="Conv6 5x5 tanh -> AvgPool -> Conv16 5x5 tanh -> AvgPool -> Dense 120 -> 84 -> 10",
            source="LeCun, Bottou, Bengio, Haffner 1998, Gradient-based learning applied to document recognition",
            recipe=dict(epochs=10, precision="auto"),
            published_test_acc="99.05% (LeNet-5 in the paper, without distortions)",
            builders={"pytorch": {"sequential": lenet5}},
        ),
        ModelSpec(
            name="tiny",
            description="Conv 3x3 x8 (no bias) -> MaxPool 2 -> Dense 10 softmax",
            source="victorzhou.com 'CNNs, Part 1/2' and its Keras copy 'Keras for Beginners: Implementing a CNN'",
            recipe=TINY_RECIPE,
            published_test_acc="97.4% (the Keras copy, full MNIST)",
            builders={"pytorch": {"sequential": tiny}},
        ),
        ModelSpec(
            name="tiny-numpy",
            description="the tiny net in numpy with hand-written backprop (experiments.numpy_cnn)",
            source="victorzhou.com 'An Introduction to CNNs' (numpy from scratch, first 1k train / 1k test)",
            recipe={**TINY_RECIPE, "train_size": 1000, "test_size": 1000},
            published_test_acc="78% (the tutorial's loop version, 1k/1k)",
            builders={"numpy": {"numpy": TinyNumpyCNN}},
        ),
        ModelSpec(
            name="two-block",
            description="Conv32-Pool-Drop -> Conv64-Pool-Drop -> Dense 256 -> Dense 10",
            source="two-block Keras MNIST CNN tutorial (Adam, batch 250, 25 epochs, validation split 0.2)",
            recipe=dict(batch_size=250, epochs=25, val_split=0.2, precision="auto", channels_last=True),
            published_test_acc="99.26%",
            builders={
                "pytorch": {"sequential": two_block},
                "keras": {
                    "sequential": keras_builder("two_block_sequential"),
                    "functional": keras_builder("two_block_functional"),
                },
            },
        ),
        ModelSpec(
            name="conv-conv",
            description="Conv32 -> Conv64 -> MaxPool -> Drop -> Dense 128 -> Drop -> Dense 10 (1,199,882 params)",
            source="the classic Keras mnist_cnn.py / PyTorch MNIST example (validation carved from test 20/80)",
            recipe=dict(batch_size=256, val_split=0.0, val_from_test=0.2, precision="auto", channels_last=True),
            published_test_acc="98.7-98.8%",
            scalable=("pytorch",),
            builders={
                "pytorch": {"sequential": conv_conv_sequential, "functional": ConvConv},
                "keras": {
                    "sequential": keras_builder("conv_conv_sequential"),
                    "functional": keras_builder("conv_conv_functional"),
                },
            },
        ),
    ]
}


def get_model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name]

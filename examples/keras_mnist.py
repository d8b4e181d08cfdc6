"""Keras's "Simple MNIST convnet" example (Keras 3, here on its PyTorch backend), tracked by this project's
callback: the lines marked `# tracking` are all it adds.

    PYTHONPATH=. .venv/bin/python examples/keras_mnist.py --epochs 3
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402 (after choosing the backend, as Keras asks)
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

from experiments.data import fetched_split  # noqa: E402
from experiments.keras_callback import TrackingCallback  # noqa: E402  # tracking


def mnist(split: str, first: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    subset = fetched_split("mnist", split)
    images = subset.images[first : first + count].astype("float32")[..., None] / 255
    return images, subset.labels[first : first + count]


def main():
    parser = argparse.ArgumentParser(description="Simple MNIST convnet")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-size", type=int, default=54_000)
    parser.add_argument("--val-size", type=int, default=6_000)
    parser.add_argument("--test-size", type=int, default=10_000)
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    x_train, y_train = mnist("train", 0, args.train_size)
    x_val, y_val = mnist("train", 54_000, args.val_size)
    x_test, y_test = mnist("test", 0, args.test_size)
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    track = TrackingCallback(dataset="mnist", train=(x_train, y_train), val=(x_val, y_val), test=(x_test, y_test))  # tracking
    model.fit(x_train, y_train, args.batch_size, args.epochs, validation_data=(x_val, y_val), callbacks=[track])  # tracking

if __name__ == "__main__":
    main()

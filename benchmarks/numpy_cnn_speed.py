"""Training speed of the numpy CNN against the tutorial's per-sample loop, measured side by side.

    .venv/bin/python -m benchmarks.numpy_cnn_speed            # speeds only (~1 minute)
    .venv/bin/python -m benchmarks.numpy_cnn_speed --full     # plus full MNIST, 3 epochs, batch 1, tracked

Prints samples/s of: the loop reference, ours at batch 1, ours at batch 32, and the ratios.
"""

import argparse
import time

import numpy as np

from benchmarks.tutorial_numpy_cnn import TutorialCNN
from core.schema import Metric
from experiments.config import RunConfig
from experiments.data import fetched_split, scale_images
from experiments.numpy_cnn import NumpyLearner, TinyNumpyCNN
from experiments.run import execute


def loop_reference_speed(images, labels) -> float:
    net = TutorialCNN()
    start = time.perf_counter()
    for image, label in zip(images, labels, strict=True):
        net.train(image, label)
    return len(labels) / (time.perf_counter() - start)


def vectorised_speed(images, labels, batch_size: int, dtype=np.float64) -> float:
    learner = NumpyLearner(TinyNumpyCNN(dtype=dtype), lr=0.005)
    x, y = learner.to_inputs(scale_images(images, "centered", dtype)), learner.to_labels(labels)
    start = time.perf_counter()
    for i in range(0, len(y), batch_size):
        learner.train_step(x[i : i + batch_size], y[i : i + batch_size])
    return len(y) / (time.perf_counter() - start)


def full_mnist_run() -> None:

    config = RunConfig.from_recipe(
        "tiny-numpy", train_size=60_000, test_size=10_000, run_name="tiny-numpy-full-mnist", suite="benchmark"
    )
    result = execute(config)
    print(
        f"full MNIST, 3 epochs, batch 1: test acc {result.metrics[Metric.TEST_ACC]:.4f} "
        f"in {result.metrics[Metric.TOTAL_SECONDS]:.0f} s (run {result.run_id})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loop-samples", type=int, default=300)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--full", action="store_true", help="also train on full MNIST and log it")
    args = parser.parse_args()
    train = fetched_split("mnist", "train")
    loop = loop_reference_speed(train.images[: args.loop_samples], train.labels[: args.loop_samples])
    rows = [("tutorial loop, batch 1", loop)]
    for label, batch, dtype in [
        ("ours, batch 1, float64", 1, np.float64),
        ("ours, batch 32, float64", 32, np.float64),
        ("ours, batch 1, float32", 1, np.float32),
        ("ours, batch 32, float32", 32, np.float32),
    ]:
        rows.append((label, vectorised_speed(train.images[: args.samples], train.labels[: args.samples], batch, dtype)))
    print(f"{'implementation':<26} {'samples/s':>10} {'ms/sample':>10} {'x loop':>8}")
    for label, speed in rows:
        print(f"{label:<26} {speed:>10,.0f} {1000 / speed:>10.3f} {speed / loop:>8.1f}")
    if args.full:
        full_mnist_run()


if __name__ == "__main__":
    main()

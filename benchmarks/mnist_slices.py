"""Why a run's validation accuracy can read above its test accuracy: slices of the MNIST files differ in difficulty.

`--train-size N` and `--test-size N` keep the first N images of each file, and validation is carved from the
training images kept (or from the test images kept). One convex model, scikit-learn's multinomial logistic
regression (no seed noise), is fitted on the first 3,200 training images less a carved tenth and scored on that
validation tenth, on other slices of the training file and on slices of the test file.

    .venv/bin/python -m benchmarks.mnist_slices [--dataset mnist] [--train-size 3200]
"""

import argparse

import numpy as np
from sklearn.linear_model import LogisticRegression

from core.stats import accuracy_interval
from experiments.data import fetched_split, stratified_carve

SLICE = 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--train-size", type=int, default=3200)
    args = parser.parse_args()
    train, test = fetched_split(args.dataset, "train"), fetched_split(args.dataset, "test")
    fitted_on, val = stratified_carve(train.first(args.train_size), 0.1, seed=0)
    flat = lambda part: part.images.reshape(len(part), -1) / 255.0  # noqa: E731
    model = LogisticRegression(max_iter=300).fit(flat(fitted_on), fitted_on.labels)
    slices = [("validation carved from the first training images", val)]
    slices += [
        (f"training file, images {a:,}-{a + SLICE:,}", train.take(np.arange(a, a + SLICE)))
        for a in (args.train_size, len(train) // 2, len(train) - SLICE)
    ]
    slices += [
        (f"test file, images {a:,}-{b:,}", test.take(np.arange(a, b)))
        for a, b in ((0, SLICE), (0, len(test) // 2), (len(test) // 2, len(test)))
    ]
    print(f"logistic regression on {args.dataset}'s first {args.train_size:,} training images less a tenth\n")
    print("| scored on | images | accuracy | 95% interval |\n|---|---|---|---|")
    for name, part in slices:
        right = int((model.predict(flat(part)) == part.labels).sum())
        interval = accuracy_interval(right, len(part))
        print(f"| {name} | {len(part):,} | {interval.estimate:.2%} | {interval.bounds_text()} |")


if __name__ == "__main__":
    main()

"""What tracking your own loop costs, side by side in one run: a plain PyTorch loop training conv-conv on real MNIST,
one epoch at a time, without tracking and with experiments.track.

    .venv/bin/python -m benchmarks.track_overhead [--samples 54000] [--tries 3]

The plain loop is the one a user writes: a shuffling DataLoader, Adam, then after the epoch it evaluates its
train-eval subset (10,000 images) and its validation set (6,000) to print their accuracies. The tracked loop is
the same with `run.log_epoch(train=(logits, labels), val=(logits, labels))` on the logits it computed anyway.
Each try builds a fresh model with the same seed and times one epoch of each, in alternating order; the table
gives the median of the tries, and the seconds spent inside log_epoch. A variant with the run open but nothing
logged separates what an open run costs (its heartbeat thread) from what logging costs. Then, for information,
the same epoch with `run.log_epoch(model, train=loader, val=loader)`, where the API evaluates the sets itself
(what costs there is the evaluation the plain loop would otherwise do).
"""

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from experiments import track
from experiments.data import fetched_split
from experiments.models import conv_conv_sequential

TRAIN_EVAL, VAL = 10_000, 6_000
VARIANTS = {
    "plain": "plain loop, no tracking",
    "open": "+ a run open, nothing logged",
    "logits": "+ run.log_epoch(logits you have)",
    "loaders": "+ run.log_epoch(model, loaders)",
}


def tensors(images: np.ndarray, labels: np.ndarray) -> TensorDataset:
    return TensorDataset(torch.tensor(images).float()[:, None] / 255, torch.tensor(labels).long())


@torch.inference_mode()
def logits_of(model: torch.nn.Module, data: TensorDataset) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x) for x, _ in DataLoader(data, batch_size=1000)])


def one_epoch(data: dict, seed: int, how: str) -> tuple[float, float]:
    """(seconds of one epoch with its evaluations and logging, seconds inside log_epoch); how: plain, open (a run
    open, its heartbeat beating, nothing logged), logits or loaders."""
    torch.manual_seed(seed)
    model = conv_conv_sequential()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(data["train"], batch_size=128, shuffle=True)
    run = (
        None if how == "plain" else track.start({"lr": 1e-3, "seed": seed}, model=model, class_names=list("0123456789"))
    )
    start = time.perf_counter()
    model.train()
    for x, y in loader:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    inside = 0.0
    if how == "loaders":
        logging = time.perf_counter()
        run.log_epoch(model, train=DataLoader(data["train_eval"], 1000), val=DataLoader(data["val"], 1000))
        inside = time.perf_counter() - logging
    else:
        on_train, on_val = logits_of(model, data["train_eval"]), logits_of(model, data["val"])
        accuracy = (on_val.argmax(1) == data["val"].tensors[1]).float().mean().item()  # what the loop prints
        if how == "logits":
            logging = time.perf_counter()
            run.log_epoch(train=(on_train, data["train_eval"].tensors[1]), val=(on_val, data["val"].tensors[1]))
            inside = time.perf_counter() - logging
        assert 0 <= accuracy <= 1
    seconds = time.perf_counter() - start
    if run:
        run.finish(model, test=DataLoader(data["val"], 1000))
    return seconds, inside


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=54_000, help="training images per epoch")
    parser.add_argument("--tries", type=int, default=3)
    args = parser.parse_args()
    train = fetched_split("mnist", "train")
    data = {
        "train": tensors(train.images[: args.samples], train.labels[: args.samples]),
        "train_eval": tensors(train.images[:TRAIN_EVAL], train.labels[:TRAIN_EVAL]),
        "val": tensors(train.images[-VAL:], train.labels[-VAL:]),
    }
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"  # this process only, a throwaway store
        seconds = {how: [] for how in VARIANTS}
        inside = {how: [] for how in seconds}
        for attempt in range(args.tries):
            order = list(VARIANTS) if attempt % 2 == 0 else list(VARIANTS)[::-1]
            for how in order:
                took, logged = one_epoch(data, seed=attempt, how=how)
                seconds[how].append(took)
                inside[how].append(logged)
                print(f"try {attempt + 1} {how:<8} {took:7.2f} s (log_epoch {logged:.3f} s)", flush=True)
    plain = statistics.median(seconds["plain"])
    print(f"\nconv-conv, {args.samples:,} training images, {torch.get_num_threads()} threads, median of {args.tries}")
    print(f"{'loop':<34}{'epoch s':>9}{'vs plain':>10}{'log_epoch s':>13}")
    for how, words in VARIANTS.items():
        median = statistics.median(seconds[how])
        print(f"{words:<34}{median:9.2f}{median / plain - 1:+10.1%}{statistics.median(inside[how]):13.3f}")


if __name__ == "__main__":
    main()

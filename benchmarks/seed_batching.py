"""Repeats cheaply? N seeds of a small model trained in one process, batched over the seeds with
torch.func (stack_module_state + vmap), against the same N seeds trained one after another.

Both train each seed exactly as a single run does its steps: its own initial weights, its own
shuffling, the model's recipe optimizer (elementwise, so one optimizer over the stacked weights is N
independent ones), fp32. The check: every seed's final weights and test accuracy agree between
the two ways within float tolerance. Wall time is the training loop only (data already on the device).

    .venv/bin/python -m benchmarks.seed_batching [--seeds 5] [--train-size 12000] [--epochs 1]
"""

import argparse
import copy
import time

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from experiments.adapters.torch_adapter import OPTIMIZERS
from experiments.config import RunConfig
from experiments.data import fetched_split, scale_images
from experiments.models import get_model_spec


def seed_models(model: str, seeds: list[int]) -> list[nn.Module]:
    spec = get_model_spec(model)
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(spec.build())
    return models


def orders(n: int, seeds: list[int], epochs: int) -> list[np.ndarray]:
    """Each seed's shuffled order of the training images, epoch after epoch (as train.fit draws it)."""
    result = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        result.append(np.concatenate([rng.permutation(n) for _ in range(epochs)]))
    return result


def train_sequential(models, x, y, order, config: RunConfig) -> float:
    """Each seed's model trained alone, as one run trains it; returns the seconds."""
    start = time.perf_counter()
    for model, seed_order in zip(models, order, strict=True):
        optimizer = OPTIMIZERS[config.optimizer](model.parameters(), lr=config.lr)
        model.train()
        for i in range(0, len(seed_order), config.batch_size):
            rows = torch.from_numpy(seed_order[i : i + config.batch_size])
            loss = nn.functional.cross_entropy(model(x[rows]), y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start


def train_batched(models, x, y, order, config: RunConfig) -> tuple[float, dict]:
    """All seeds in one vmapped forward and backward per step: the stacked weights get one optimizer."""
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")

    def one(p, b, images):
        return functional_call(base, (p, b), (images,))

    forward = vmap(one)
    optimizer = OPTIMIZERS[config.optimizer](params.values(), lr=config.lr)
    stacked = torch.from_numpy(np.stack(order))
    start = time.perf_counter()
    for i in range(0, stacked.shape[1], config.batch_size):
        rows = stacked[:, i : i + config.batch_size]
        logits = forward(params, buffers, x[rows])
        # each seed's mean loss; their sum has each seed's own gradient in its slice of the stacked weights
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), y[rows].flatten(), reduction="none")
        loss.view(rows.shape).mean(dim=1).sum().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start, {name: value.detach() for name, value in params.items()}


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).float().mean())


def measure(model: str, seeds: list[int], train_size: int, epochs: int, batch_size: int | None = None) -> dict:
    config = RunConfig.from_recipe(model, batch_size=batch_size)
    train, test = fetched_split("mnist", "train"), fetched_split("mnist", "test")
    x = torch.from_numpy(scale_images(train.images[:train_size], config.input_scaling, np.float32))
    y = torch.from_numpy(train.labels[:train_size].astype(np.int64))
    xt = torch.from_numpy(scale_images(test.images, config.input_scaling, np.float32))
    yt = torch.from_numpy(test.labels.astype(np.int64))
    order = orders(train_size, seeds, epochs)
    warm = [seed_order[: 20 * config.batch_size] for seed_order in order]  # first calls pay one-off set-up costs
    train_sequential(seed_models(model, seeds[:1]), x, y, warm[:1], config)
    train_batched(seed_models(model, seeds), x, y, warm, config)
    one = seed_models(model, seeds[:1])
    single_seconds = train_sequential(one, x, y, order[:1], config)
    sequential = seed_models(model, seeds)
    sequential_seconds = train_sequential(sequential, x, y, order, config)
    batched_seconds, params = train_batched(seed_models(model, seeds), x, y, order, config)
    agreement = []
    for i, reference in enumerate(sequential):
        twin = copy.deepcopy(reference)
        twin.load_state_dict({name: params[name][i].detach() for name in params}, strict=False)
        weight_gap = max(
            float((a - b).abs().max()) for a, b in zip(twin.parameters(), reference.parameters(), strict=True)
        )
        agreement.append((weight_gap, accuracy(reference, xt, yt), accuracy(twin, xt, yt)))
    return {
        "model": model,
        "batch": config.batch_size,
        "optimizer": config.optimizer,
        "single": single_seconds,
        "sequential": sequential_seconds,
        "batched": batched_seconds,
        "agreement": agreement,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["lenet5", "tiny"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--train-size", type=int, default=12_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=None, help="override the recipe's (tiny's is 1)")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    seeds = list(range(args.seeds))
    print(
        f"{args.seeds} seeds, {args.train_size:,} MNIST images x {args.epochs} epoch(s), fp32, "
        f"{torch.get_num_threads()} threads\n"
    )
    print(
        "| model | batch, optimizer | 1 seed | 5 seeds one after another | 5 seeds batched (vmap) | "
        "batched / 1 seed | sequential / batched | max weight gap | test acc agree |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for model in args.models:
        found = measure(model, seeds, args.train_size, args.epochs, args.batch_size)
        gap = max(a[0] for a in found["agreement"])
        agree = sum(abs(a[1] - a[2]) < 1e-3 for a in found["agreement"])
        print(
            f"| {model} | {found['batch']}, {found['optimizer']} | {found['single']:.1f} s | "
            f"{found['sequential']:.1f} s | {found['batched']:.1f} s | {found['batched'] / found['single']:.2f}x | "
            f"{found['sequential'] / found['batched']:.2f}x | {gap:.1e} | {agree} of {len(seeds)} |"
        )


if __name__ == "__main__":
    main()

"""PyTorch training speed, side by side in one run: the tutorial's pipeline against our runner.

    .venv/bin/python -m benchmarks.training_speed [--samples 10240] [--run-epochs 5] [--suites quick tutorials]

First, what a user gets: a real `train` run of conv-conv (--run-epochs epochs on --samples images,
logged to a throwaway store), its samples/s in every epoch against the tutorial pipeline measured
just before and after it, and the run's wall time split into training, train-eval, validation,
test and logging; with the default settings, without keeping freed memory, and without flushing
denormals. Each run has a fresh process, as a user's `train` does (keeping freed memory is process-wide).

Same model (conv-conv), same data (real MNIST), same batch size (256), same number of steps:
  - the tutorial-style pipeline: a per-sample Dataset (uint8 -> PIL image -> tensor -> normalise)
    behind a shuffling DataLoader, fp32;
  - our runner (experiments.train) in fp32, and at the recipe's default precision;
with samples/s, the ratio to the tutorial pipeline, and effective GFLOPS against a matmul peak
measured in this run for each precision. Then the cost of tracking (fit with and without the
MLflow RunLogger, best of a few alternating tries) and, with --suites, wall times of whole suites.
"""

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from unittest import mock

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

from core.schema import Metric
from core.store import REPO_ROOT, get_client
from experiments import run as run_module
from experiments import train as train_module
from experiments.adapters.torch_adapter import TorchAdapter
from experiments.config import RunConfig
from experiments.data import fetched_split
from experiments.memory import keep_freed_memory
from experiments.models import conv_conv_sequential
from experiments.run import execute, prepare
from experiments.run_logger import RunLogger
from experiments.train import fit, train_epoch

BATCH = 256


class TutorialMNIST(Dataset):
    """The torchvision-style pipeline: each sample becomes a PIL image, then a normalised tensor."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        image = Image.fromarray(self.images[i], mode="L")
        tensor = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255)[None]  # ToTensor
        return (tensor - 0.1307) / 0.3081, int(self.labels[i])  # Normalize, as the tutorial does


def tutorial_pipeline_speed(images, labels) -> float:
    torch.manual_seed(0)
    model = conv_conv_sequential()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TutorialMNIST(images, labels), batch_size=BATCH, shuffle=True)
    model.train()
    start = time.perf_counter()
    for x, y in loader:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    return len(labels) / (time.perf_counter() - start)


def runner_speed(samples: int, precision: str) -> float:
    config = RunConfig.from_recipe(
        "conv-conv", train_size=samples, test_size=100, val_from_test=0.5, precision=precision, progress=False
    )
    ready = prepare(config)
    labels = ready.learner.to_labels(ready.splits.train.labels)
    warm = ready.inputs["train"][: BATCH * 4], labels[: BATCH * 4]
    train_epoch(ready.learner, *warm, BATCH, np.random.default_rng(0), 50, progress=False)
    stats = train_epoch(
        ready.learner, ready.inputs["train"], labels, BATCH, np.random.default_rng(0), 50, progress=False
    )
    return stats.samples_per_s


def flops_per_sample() -> float:
    """FLOPs of one training sample (forward + backward), counted by PyTorch's FlopCounterMode."""
    model, x, y = conv_conv_sequential(), torch.rand(BATCH, 1, 28, 28), torch.randint(0, 10, (BATCH,))
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / BATCH


def matmul_peak_gflops(dtype) -> float:
    a, b = torch.rand(2048, 2048, dtype=dtype), torch.rand(2048, 2048, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 2048**3 / best / 1e9


def timed(fn, spent: list):
    """fn, adding the seconds of each call to spent[0]."""

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    return wrapper


def tracking_overhead(samples: int, tries: int = 5) -> dict:
    """fit() for 2 epochs without and with MLflow logging (embedded store), best of `tries` each, and the
    seconds spent inside the tracking calls themselves (logging and checkpoint copies)."""
    config = RunConfig.from_recipe(
        "conv-conv", epochs=2, train_size=samples, test_size=1000, val_from_test=0.5, progress=False
    )
    ready = prepare(config)
    train = (ready.inputs["train"], ready.learner.to_labels(ready.splits.train.labels))
    val = (ready.inputs["val"], ready.splits.val.labels)
    evaluated = (ready.inputs["train"][:2000], ready.splits.train.labels[:2000])
    best = {False: float("inf"), True: float("inf")}
    spent = [0.0]
    ready.learner.checkpoint = timed(ready.learner.checkpoint, spent)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"  # this process only, a throwaway store
        for _ in range(tries):
            for tracked in (False, True):
                logger = (
                    RunLogger.start("benchmark", "tracking", {"a": 1}, {}, {}, ready.splits.class_names)
                    if tracked
                    else None
                )
                spent[0] = 0.0
                start = time.perf_counter()
                fit(
                    ready.learner,
                    train,
                    val,
                    evaluated,
                    epochs=2,
                    batch_size=BATCH,
                    seed=0,
                    best_error=0.002,
                    log_every=50,
                    num_classes=10,
                    progress=False,
                    on_epoch=timed(logger.log_epoch, spent) if logger else None,
                )
                seconds = time.perf_counter() - start
                if tracked and seconds < best[True]:
                    best["inside"] = spent[0]
                best[tracked] = min(best[tracked], seconds)
                if logger:
                    logger.finish()
    return {"off": best[False], "on": best[True], "inside": best["inside"]}


@contextmanager
def stopwatch():
    """Seconds spent in each phase of a run, by wrapping the functions that do them; yields {phase: seconds}."""
    spent = defaultdict(float)
    calls = {"evaluate": 0}

    def timed_as(phase_of, fn):
        def wrapper(*args, **kwargs):
            phase = phase_of() if callable(phase_of) else phase_of
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[phase] += time.perf_counter() - start

        return wrapper

    def fit_phase():  # fit evaluates the train-eval subset, then the validation set, every epoch
        calls["evaluate"] += 1
        return "train-eval" if calls["evaluate"] % 2 else "validation"

    logging = ["start", "log_epoch", "log_metrics", "log_table", "log_dict", "set_tags", "finish"]
    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(train_module, "evaluate", timed_as(fit_phase, train_module.evaluate)))
        stack.enter_context(mock.patch.object(run_module, "evaluate", timed_as("test", run_module.evaluate)))
        stack.enter_context(
            mock.patch.object(train_module, "train_epoch", timed_as("training", train_module.train_epoch))
        )
        for name in logging:
            method = getattr(RunLogger, name)
            wrapped = timed_as("logging", method.__func__ if name == "start" else method)
            stack.enter_context(
                mock.patch.object(RunLogger, name, classmethod(wrapped) if name == "start" else wrapped)
            )
        stack.enter_context(
            mock.patch.object(TorchAdapter, "log_weights", timed_as("logging (model)", TorchAdapter.log_weights))
        )
        yield spent


def whole_run(samples: int, epochs: int, **settings) -> dict:
    """A real conv-conv `train` run (its recipe, `samples` training images) in a throwaway store: per-epoch
    samples/s from its logged metrics, its total wall time and the seconds of each phase."""
    config = RunConfig.from_recipe(
        "conv-conv", epochs=epochs, train_size=samples, test_size=2000, progress=False, **settings
    )
    with (
        tempfile.TemporaryDirectory() as tmp,
        mock.patch.dict(os.environ, {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/m.db"}),
    ):
        with stopwatch() as spent:
            start = time.perf_counter()
            result = execute(config)
            total = time.perf_counter() - start
        speeds = [
            m.value
            for m in sorted(get_client().get_metric_history(result.run_id, Metric.SAMPLES_PER_S), key=lambda m: m.step)
        ]
    return {"speeds": speeds, "total": total, "phases": dict(spent)}


def in_fresh_process(fn, *args, **kwargs):
    """fn(*args, **kwargs) in a new Python process, so that no process-wide setting of an earlier call carries over."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def kept_memory_tutorial_speed(images, labels) -> float:
    """The tutorial pipeline in a process that keeps freed memory, as our runs do."""
    keep_freed_memory(True)
    return tutorial_pipeline_speed(images, labels)


def whole_run_table(train, samples: int, epochs: int) -> None:
    """Per-epoch speed of real runs against the tutorial pipeline measured around them, and the wall split."""
    variants = (
        ("default settings", {}),
        ("without keeping freed memory", {"keep_freed_memory": False}),
        ("without flushing denormals", {"flush_denormal": False}),
    )
    for label, settings in variants:
        before = in_fresh_process(tutorial_pipeline_speed, train.images, train.labels)
        measured = in_fresh_process(whole_run, samples, epochs, **settings)
        after = in_fresh_process(tutorial_pipeline_speed, train.images, train.labels)
        base = (before + after) / 2
        speeds = measured["speeds"]
        print(
            f"\nconv-conv `train`, {label}: {epochs} epochs on {samples:,} images; tutorial pipeline "
            f"{before:,.0f} before / {after:,.0f} after"
        )
        print("  samples/s per epoch: " + ", ".join(f"{v:,.0f}" for v in speeds))
        print("  x tutorial per epoch: " + ", ".join(f"{v / base:.2f}" for v in speeds))
        print(
            f"  first {speeds[0]:,.0f}, median {np.median(speeds):,.0f}, last {speeds[-1]:,.0f} "
            f"(last/first {speeds[-1] / speeds[0]:.0%})"
        )
        phases = measured["phases"]
        other = measured["total"] - sum(phases.values())
        split = ", ".join(
            f"{name} {seconds:.1f} s ({seconds / measured['total']:.0%})"
            for name, seconds in [*phases.items(), ("other (data, model build)", other)]
        )
        print(f"  wall {measured['total']:.1f} s: {split}")
    kept = in_fresh_process(kept_memory_tutorial_speed, train.images, train.labels)
    print(f"\nthe tutorial pipeline itself in a process that keeps freed memory: {kept:,.0f} samples/s")


def suite_seconds(name: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "experiments", "suite", name],
            cwd=REPO_ROOT,
            check=True,
            capture_output=True,
            env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/m.db"},
        )
        return time.perf_counter() - start


def speed_table(train, samples: int) -> None:
    flops = flops_per_sample()
    peaks = {"fp32": matmul_peak_gflops(torch.float32), "bf16": matmul_peak_gflops(torch.bfloat16)}
    recipe_precision = RunConfig.from_recipe("conv-conv").precision
    # The tutorial row runs first, in a process that does not keep freed memory yet; runner_speed's prepare
    # turns that on for the rest of this process (experiments.memory), as it does in every run.
    rows = [
        ("tutorial pipeline (PIL Dataset + DataLoader)", "fp32", tutorial_pipeline_speed(train.images, train.labels)),
        ("our runner", "fp32", runner_speed(samples, "fp32")),
        (
            f"our runner, default precision ({recipe_precision})",
            "bf16" if recipe_precision != "fp32" else "fp32",
            runner_speed(samples, recipe_precision),
        ),
    ]
    base = rows[0][2]
    print(
        f"{flops / 1e6:.1f} MFLOP per training sample; matmul peak fp32 {peaks['fp32']:.0f} GFLOPS, "
        f"bf16 {peaks['bf16']:.0f} GFLOPS"
    )
    print(f"{'pipeline':<48} {'precision':>9} {'samples/s':>10} {'x tutorial':>10} {'GFLOPS':>7} {'of peak':>8}")
    for label, precision, speed in rows:
        gflops = speed * flops / 1e9
        print(
            f"{label:<48} {precision:>9} {speed:>10,.0f} {speed / base:>10.2f} {gflops:>7.0f} "
            f"{gflops / peaks[precision]:>8.0%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10_240)
    parser.add_argument("--run-epochs", type=int, default=5, help="epochs of the whole-run measurement (0: skip it)")
    parser.add_argument("--suites", nargs="*", default=[], choices=["quick", "tutorials", "data-size"])
    parser.add_argument("--tries", type=int, default=5, help="fits with and without tracking, best of each")
    parser.add_argument("--only-tracking", action="store_true", help="skip the speed rows")
    args = parser.parse_args()
    train = fetched_split("mnist", "train").first(args.samples)
    print(f"conv-conv, batch {BATCH}, Adam, {args.samples} real MNIST images, {torch.get_num_threads()} threads")
    if args.run_epochs and not args.only_tracking:
        whole_run_table(train, args.samples, args.run_epochs)
        print()
    if not args.only_tracking:
        speed_table(train, args.samples)
    cost = tracking_overhead(args.samples, args.tries)
    print(
        f"fit, 2 epochs, best of {args.tries}: tracking off {cost['off']:.2f} s, on {cost['on']:.2f} s "
        f"({100 * (cost['on'] - cost['off']) / cost['off']:+.1f}%); inside tracking calls "
        f"{cost['inside']:.3f} s ({100 * cost['inside'] / cost['off']:.1f}% of the run)"
    )
    for name in args.suites:
        print(f"suite {name}: {suite_seconds(name):.0f} s wall")


if __name__ == "__main__":
    main()

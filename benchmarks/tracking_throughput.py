"""How much logging one store holds: the embedded SQLite store against an MLflow server on PostgreSQL.

    .venv/bin/python -m benchmarks.tracking_throughput [--runs 6] [--epochs 10] [--concurrency 1 4 8]

Starts its own PostgreSQL and `mlflow server` (experiments.tracking_server) on free loopback ports.
Each of N concurrent runner processes logs `--runs` runs exactly as our runner does (RunLogger: params
and config at the start, per epoch one metrics batch of 9 epoch metrics + 10 step losses and the
validation confusion artifact, then the finish), with synthetic numbers and no training. Prints
runs/s and metric points/s per store and concurrency, all measured in this one run.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from core.schema import Metric
from core.store import REPO_ROOT
from experiments.run_logger import RunLogger
from experiments.tracking_server import free_port, start_mlflow_server, start_postgres

STEP_LOSSES_PER_EPOCH = 10


def epoch_record(epoch: int, rng: np.random.Generator) -> dict:
    return {
        "epoch": epoch,
        **{name: float(rng.random()) for name in Metric.PER_EPOCH},
        "step_losses": [((epoch - 1) * 100 + 10 * i, float(rng.random())) for i in range(STEP_LOSSES_PER_EPOCH)],
        "val_confusion": rng.integers(0, 100, (10, 10)),
    }


def log_runs(runs: int, epochs: int, worker: int) -> dict:
    """The child's work: `runs` complete runs through RunLogger; returns its timing and counts."""
    rng = np.random.default_rng(worker)
    params = {f"param_{i}": i for i in range(30)}
    start = time.time()
    for run in range(runs):
        logger = RunLogger.start(
            "throughput",
            f"w{worker}-r{run}",
            params,
            {"worker": worker},
            {"run": run},
            class_names=tuple(map(str, range(10))),
        )
        for epoch in range(1, epochs + 1):
            logger.log_epoch(epoch_record(epoch, rng), checkpoint={})
        logger.finish()
    points = runs * epochs * (len(Metric.PER_EPOCH) + STEP_LOSSES_PER_EPOCH)
    return {"start": start, "end": time.time(), "runs": runs, "points": points}


def measure(uri: str, concurrency: int, runs: int, epochs: int) -> dict:
    """`concurrency` runner processes logging at once; wall time from the first start to the last end."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.tracking_throughput",
                "--child",
                str(worker),
                "--runs",
                str(runs),
                "--epochs",
                str(epochs),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for worker in range(concurrency)
    ]
    results = []
    for child in children:
        out, _ = child.communicate()
        if child.returncode:
            raise RuntimeError(f"a runner failed logging to {uri}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    return {
        "runs_per_s": sum(r["runs"] for r in results) / wall,
        "points_per_s": sum(r["points"] for r in results) / wall,
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=6, help="runs per runner process")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--server-workers", type=int, default=4)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(log_runs(args.runs, args.epochs, args.child)))
        return

    scratch = Path(tempfile.mkdtemp(prefix="cnn-throughput-"))
    postgres_dir = Path(tempfile.mkdtemp(prefix="cnn-throughput-pg-"))  # its own, for the postgres user
    postgres = start_postgres(postgres_dir, free_port())
    port = free_port()
    server = start_mlflow_server(
        postgres.url("mlflow"),
        scratch / "artifacts",
        port,
        workers=args.server_workers,
        log_path=scratch / "server.log",
    )
    stores = {
        "embedded SQLite (mlruns-style)": f"sqlite:///{scratch / 'embedded' / 'mlflow.db'}",
        f"MLflow server, {args.server_workers} workers, PostgreSQL": f"http://127.0.0.1:{port}",
    }
    per_run = args.epochs * (len(Metric.PER_EPOCH) + STEP_LOSSES_PER_EPOCH)
    print(
        f"{os.cpu_count()} CPUs; each run: 30 params, {args.epochs} epochs x ({len(Metric.PER_EPOCH)} metrics + "
        f"{STEP_LOSSES_PER_EPOCH} step losses) = {per_run} points, {args.epochs} artifact writes; "
        f"{args.runs} runs per runner"
    )
    print(f"{'store':<44} {'runners':>7} {'runs/s':>8} {'points/s':>9} {'wall s':>7}")
    try:
        for name, uri in stores.items():
            measure(uri, 1, 1, 1)  # creates the schema and the experiment: not part of the measurement
            for concurrency in args.concurrency:
                m = measure(uri, concurrency, args.runs, args.epochs)
                print(
                    f"{name:<44} {concurrency:>7} {m['runs_per_s']:>8.2f} {m['points_per_s']:>9,.0f} {m['wall']:>7.1f}",
                    flush=True,
                )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()
        postgres.stop()
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(postgres_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

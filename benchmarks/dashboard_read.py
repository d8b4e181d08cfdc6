"""Read-layer speed of the dashboard on a store of 1,000 runs x 30 epochs, against MLflow's naive path.

    .venv/bin/python -m benchmarks.dashboard_read [--runs 1000] [--epochs 30] [--store DIR]

Builds the store once (runs shaped as the runners log them, synthetic values; reused if present;
a tenth left RUNNING without final metrics, so their best epochs come from their histories), then
prints cold timings, each the best of --repeats fresh clients: the Runs table (with best-epoch columns
computed from every run's validation history) and the curves of 20 and 50 runs (4 metrics each),
next to search_runs + get_metric_history per run and metric, and the ratio.
"""
import argparse
import time
from pathlib import Path

import numpy as np
from mlflow.entities import Metric as MlflowMetric, Param as MlflowParam, RunTag, ViewType
from mlflow.tracking import MlflowClient

from dashboard.reader import fetch_runs, metric_frame
from experiments.schema import Metric, Param, Tag
from experiments.tracking import artifact_root

CURVES = [Metric.TRAIN_LOSS, Metric.VAL_LOSS, Metric.TRAIN_ACC, Metric.VAL_ACC]


def build_store(uri: str, runs: int, epochs: int) -> None:
    client = MlflowClient(uri)
    experiment = client.create_experiment("benchmark", artifact_location=f"{artifact_root(uri)}/benchmark")
    rng = np.random.default_rng(0)
    for i in range(runs):
        run = client.create_run(experiment, run_name=f"run-{i}", tags={Tag.SUITE: "benchmark"})
        params = [MlflowParam(Param.MODEL, ["tiny", "lenet5", "conv-conv"][i % 3]), MlflowParam(Param.DATASET, "mnist"),
                  MlflowParam(Param.LR, str(10 ** -rng.uniform(2, 4))), MlflowParam(Param.EPOCHS, str(epochs)),
                  MlflowParam(Param.BATCH_SIZE, str(2 ** rng.integers(5, 9)))]
        rate = rng.uniform(0.05, 0.3)
        metrics, val_accs = [], []
        for epoch in range(1, epochs + 1):
            train = 1 - 0.5 * np.exp(-rate * epoch)
            val = train - rng.uniform(0, 0.02)
            values = {Metric.TRAIN_ACC: train, Metric.VAL_ACC: val, Metric.TRAIN_LOSS: 1 - train,
                      Metric.VAL_LOSS: 1 - val, Metric.VARIANCE: train - val, Metric.BIAS: 1 - train,
                      Metric.AVOIDABLE_BIAS: 0.998 - train, Metric.EPOCH_SECONDS: 10.0, Metric.SAMPLES_PER_S: 5000.0}
            metrics += [MlflowMetric(k, float(v), 0, epoch) for k, v in values.items()]
            val_accs.append(float(val))
        best = int(np.argmax(val_accs))
        if i % 10 == 0:  # still running: no final metrics yet
            client.log_batch(run.info.run_id, metrics=metrics, params=params)
            continue
        metrics += [MlflowMetric(Metric.TEST_ACC, float(val), 0, epochs),
                    MlflowMetric(Metric.BEST_VAL_ACC, val_accs[best], 0, epochs),
                    MlflowMetric(Metric.BEST_EPOCH, float(best + 1), 0, epochs),
                    MlflowMetric(Metric.EPOCHS_TRAINED, float(epochs), 0, epochs),
                    MlflowMetric(Metric.PARAMS_TOTAL, 1e5, 0, epochs)]
        client.log_batch(run.info.run_id, metrics=metrics, params=params,
                         tags=[RunTag(Tag.DIAGNOSIS, "good fit")])
        client.set_terminated(run.info.run_id)


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def naive_runs_table(client: MlflowClient) -> None:
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    for run in client.search_runs(experiments, max_results=5000):
        client.get_metric_history(run.info.run_id, Metric.VAL_ACC)


def naive_curves(client: MlflowClient, run_ids: list[str]) -> None:
    for run_id in run_ids:
        for name in CURVES:
            client.get_metric_history(run_id, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--store", default=str(Path.home() / ".cache" / "cnn-dashboard" / "benchmark-store"))
    args = parser.parse_args()
    folder = Path(args.store) / f"{args.runs}x{args.epochs}"
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    if not (folder / "mlflow.db").exists():
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        build_store(uri, args.runs, args.epochs)
        print(f"built {args.runs} runs x {args.epochs} epochs in {time.perf_counter() - start:.0f} s at {folder}")
    fresh = lambda: MlflowClient(uri)  # noqa: E731  a new client per timing: nothing cached
    table = fetch_runs(fresh())
    assert len(table) == args.runs and table["best_epoch"].notna().all()
    ids = list(table["run_id"])
    rows = [(f"Runs table, {args.runs:,} runs", lambda: fetch_runs(fresh()), lambda: naive_runs_table(fresh()))]
    for n in (20, 50):
        rows.append((f"compare {n} runs x 4 curves", lambda n=n: metric_frame(fresh(), ids[:n], CURVES),
                     lambda n=n: naive_curves(fresh(), ids[:n])))
    print(f"{'read (cold, best of ' + str(args.repeats) + ')':<34} {'ours s':>8} {'naive s':>8} {'naive/ours':>10}")
    for label, ours, naive in rows:
        a, b = best_of(args.repeats, ours), best_of(args.repeats, naive)
        print(f"{label:<34} {a:>8.3f} {b:>8.3f} {b / a:>10.1f}")


if __name__ == "__main__":
    main()

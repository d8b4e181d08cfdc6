"""Read-layer speed of the dashboard on a store of 10,000 runs x 50 epochs, against MLflow's naive path.

    .venv/bin/python -m benchmarks.dashboard_read [--runs 10000] [--epochs 50] [--browser] [--server]

Builds the store once (runs shaped as the runners log them, synthetic values, written straight into MLflow's
tables; reused if present; a tenth left RUNNING without final metrics, so their verdicts come from their
histories), then prints cold timings, each the best of --repeats fresh clients: the Runs table (with the
best-epoch and diagnosis columns derived from the histories where not logged) and the curves of 20 and 50
runs (4 metrics each), next to search_runs + get_metric_history per run and metric (once), and the ratio.
--browser adds the time until a freshly started dashboard shows the Runs table in headless Chromium;
--server repeats it all through `mlflow server` on PostgreSQL (the team setup, docs/scaling.md).
"""

import argparse
import os
import signal
import tempfile
import time
import uuid
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from mlflow.entities import ViewType
from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag
from mlflow.tracking import MlflowClient
from playwright.sync_api import sync_playwright
from sqlalchemy import insert

from core.schema import Metric, Param, Tag
from core.store import artifact_root
from dashboard.bulk import sql_store
from dashboard.reader import RunsSource, Store, fetch_runs, metric_frame
from experiments.tracking_server import SERVER_WORKERS, free_port, start_mlflow_server, start_postgres
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, start_server

CURVES = [Metric.TRAIN_LOSS, Metric.VAL_LOSS, Metric.TRAIN_ACC, Metric.VAL_ACC]
RUN_SPACING_MS = 60_000  # runs start a minute apart, as a team's do over days (a refresh then reads the new ones)


def run_rows(
    i: int, run_id: str, experiment: str, epochs: int, rng: np.random.Generator, start: int, name: str
) -> dict:
    """One synthetic run's rows in MLflow's tables, shaped as the runner logs it (a tenth still RUNNING, without
    final metrics, so their verdicts are derived from their histories)."""
    running = i % 10 == 0
    params = {
        Param.MODEL: ["tiny", "lenet5", "conv-conv"][i % 3],
        Param.DATASET: "mnist",
        Param.LR: str(10 ** -rng.uniform(2, 4)),
        Param.EPOCHS: str(epochs),
        Param.BATCH_SIZE: str(2 ** rng.integers(5, 9)),
    }
    tags = {"mlflow.runName": name, Tag.SUITE: "benchmark", **({} if running else {Tag.DIAGNOSIS: "good fit"})}
    rate, history, val_accs = rng.uniform(0.05, 0.3), [], []
    for epoch in range(1, epochs + 1):
        train = 1 - 0.5 * np.exp(-rate * epoch)
        val = train - rng.uniform(0, 0.02)
        values = {
            Metric.TRAIN_ACC: train,
            Metric.VAL_ACC: val,
            Metric.TRAIN_LOSS: 1 - train,
            Metric.VAL_LOSS: 1 - val,
            Metric.VARIANCE: train - val,
            Metric.BIAS: 1 - train,
            Metric.AVOIDABLE_BIAS: 0.998 - train,
            Metric.EPOCH_SECONDS: 10.0,
            Metric.SAMPLES_PER_S: 5000.0,
        }
        history += [(key, float(value), epoch) for key, value in values.items()]
        val_accs.append(float(val))
    best = int(np.argmax(val_accs))
    if not running:
        history += [
            (Metric.TEST_ACC, val_accs[-1], epochs),
            (Metric.BEST_VAL_ACC, val_accs[best], epochs),
            (Metric.BEST_EPOCH, float(best + 1), epochs),
            (Metric.EPOCHS_TRAINED, float(epochs), epochs),
            (Metric.PARAMS_TOTAL, 1e5, epochs),
        ]
    metrics = [
        dict(run_uuid=run_id, key=key, value=value, step=step, timestamp=start + 10_000 * step, is_nan=False)
        for key, value, step in history
    ]
    return {
        SqlRun: [
            dict(
                run_uuid=run_id,
                name=name,
                source_type="LOCAL",
                source_name="",
                entry_point_name="",
                user_id="benchmark",
                status="RUNNING" if running else "FINISHED",
                start_time=start,
                end_time=None if running else start + 10_000 * (epochs + 1),
                source_version="",
                lifecycle_stage="active",
                artifact_uri=f"{experiment}/{run_id}/artifacts",
                experiment_id=int(experiment),
            )
        ],
        SqlParam: [dict(run_uuid=run_id, key=k, value=v) for k, v in params.items()],
        SqlTag: [dict(run_uuid=run_id, key=k, value=v) for k, v in tags.items()],
        SqlMetric: metrics,
        SqlLatestMetric: list({m["key"]: m for m in metrics}.values()),
    }


def build_store(uri: str, runs: int, epochs: int, experiments: tuple[str, ...] = ("benchmark",)) -> None:
    """Writes the runs straight into MLflow's tables through its own models, a thousand runs a transaction:
    logging 10,000 runs x 50 epochs through the client takes about an hour here, this about a minute. Run i goes to
    the i-th experiment in turn; with several, its name says which (EXPERIMENT-run-i)."""
    client = MlflowClient(uri)
    ids = [client.create_experiment(name, artifact_location=f"{artifact_root(uri)}/{name}") for name in experiments]
    store, rng, start = sql_store(client), np.random.default_rng(0), int(time.time() * 1000) - 10**9
    for first in range(0, runs, 1000):
        batch = defaultdict(list)
        for i in range(first, min(first + 1000, runs)):
            which = i % len(ids)
            name = f"{experiments[which]}-run-{i}" if len(ids) > 1 else f"run-{i}"
            started = start + i * RUN_SPACING_MS
            for model, rows in run_rows(i, uuid.uuid4().hex, ids[which], epochs, rng, started, name).items():
                batch[model] += rows
        with store.ManagedSessionMaker() as session:
            for model in (SqlRun, SqlParam, SqlTag, SqlMetric, SqlLatestMetric):
                session.execute(insert(model.__table__), batch[model])


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def naive_runs_table(client: MlflowClient) -> None:
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    runs, token = [], None
    while True:
        page = client.search_runs(experiments, max_results=5000, page_token=token)
        runs += page
        token = page.token
        if not token:
            break
    for run in runs:
        client.get_metric_history(run.info.run_id, Metric.VAL_ACC)


def naive_curves(client: MlflowClient, run_ids: list[str]) -> None:
    for run_id in run_ids:
        for name in CURVES:
            client.get_metric_history(run_id, name)


def read_times(uri: str, runs: int, repeats: int, naive: bool) -> list[tuple[str, float, float | None]]:
    """Cold timings of the Runs table and of 20- and 50-run comparisons (ours best of `repeats`, MLflow's naive
    path once: it takes minutes at 10,000 runs), each with a new client."""
    fresh = lambda: MlflowClient(uri)  # noqa: E731  a new client per timing: nothing cached
    table = fetch_runs(fresh())
    table = table[table["experiment"] == "benchmark"]  # not the runs refresh_times adds
    assert len(table) == runs and table["best_epoch"].notna().all()
    ids = list(table["run_id"])
    reads = [(f"Runs table, {runs:,} runs", lambda: fetch_runs(fresh()), lambda: naive_runs_table(fresh()))]
    for n in (20, 50):
        reads.append(
            (
                f"compare {n} runs x 4 curves",
                lambda n=n: metric_frame(fresh(), ids[:n], CURVES),
                lambda n=n: naive_curves(fresh(), ids[:n]),
            )
        )
    return [(label, best_of(repeats, ours), best_of(1, slow) if naive else None) for label, ours, slow in reads]


def refresh_times(uri: str, repeats: int) -> list[tuple[str, float]]:
    """The Runs table as the dashboard keeps it (reader.RunsSource, shared by its sessions): its first read (a new
    source each time: a freshly started dashboard), then each refresh after a new run has finished (reading what
    changed); the median of `repeats` each, and each first read in turn (the first one on a cold database; a
    server's workers share the searches by chance)."""
    store, client = Store(uri, None), MlflowClient(uri)
    firsts = []
    for _ in range(repeats):
        source = RunsSource()
        start = time.perf_counter()
        source.read(store)
        firsts.append(time.perf_counter() - start)
    experiment = client.get_experiment_by_name("refresh") or client.get_experiment(client.create_experiment("refresh"))
    times = []
    for _ in range(repeats):
        run_id = client.create_run(experiment.experiment_id, run_name="refresh").info.run_id
        client.log_metric(run_id, Metric.VAL_ACC, 0.9, step=1)
        client.set_terminated(run_id)
        start = time.perf_counter()
        table = source.read(store)
        times.append(time.perf_counter() - start)
        assert run_id in set(table["run_id"])
    return [
        (
            f"first read of a new dashboard (median of {repeats}, each: {', '.join(f'{t:.2f}' for t in firsts)} s)",
            float(np.median(firsts)),
        ),
        (f"refresh after a run ends (median of {repeats})", float(np.median(times))),
    ]


def browser_seconds(uri: str) -> float:
    """End to end: a freshly started dashboard on the store (nothing cached), opened in headless Chromium, until
    the Runs page shows its table."""

    with start_server(uri) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        start = time.perf_counter()
        page.goto(url)
        page.get_by_text("runs shown").wait_for(timeout=300_000)
        page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=300_000)
        seconds = time.perf_counter() - start
        browser.close()
    return seconds


def print_reads(title: str, rows: list[tuple[str, float, float | None]]) -> None:
    print(f"{title:<34} {'ours s':>8} {'naive s':>8} {'naive/ours':>10}")
    for label, ours, naive in rows:
        slow = f"{naive:>8.3f} {naive / ours:>10.1f}" if naive is not None else f"{'-':>8} {'-':>10}"
        print(f"{label:<34} {ours:>8.3f} {slow}")


@contextmanager
def postgres_server(folder: Path, runs: int, epochs: int, workers: int = SERVER_WORKERS):
    """A PostgreSQL cluster in `folder` holding the same kind of store (built once), behind a real `mlflow
    server` with `workers` worker processes (as many as `scripts/server` starts); yields the server's URL."""
    server = start_postgres(folder / "pg", free_port())
    built = folder / "built"
    if not built.exists():
        build_store(server.url("mlflow"), runs, epochs)
        built.touch()
    port = free_port()
    process = start_mlflow_server(
        server.url("mlflow"), folder / "artifacts", port, workers=workers, log_path=folder / "server.log"
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        server.stop()


def embedded_reads(folder: Path, args: argparse.Namespace) -> None:
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    if not (folder / "mlflow.db").exists():
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        build_store(uri, args.runs, args.epochs)
        print(f"built {args.runs} runs x {args.epochs} epochs in {time.perf_counter() - start:.0f} s at {folder}")
    print_reads(
        f"embedded SQLite (cold, best of {args.repeats})", read_times(uri, args.runs, args.repeats, not args.no_naive)
    )
    if args.browser:
        print(f"Runs page in Chromium, embedded SQLite: {browser_seconds(uri):.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-naive", action="store_true", help="skip MLflow's naive path (minutes at 10,000 runs)")
    parser.add_argument("--browser", action="store_true", help="also time the Runs page in headless Chromium")
    parser.add_argument(
        "--server", action="store_true", help="also read the same kind of store through `mlflow server` on PostgreSQL"
    )
    parser.add_argument(
        "--refresh-only", action="store_true", help="only the server's Runs table: its first read and refreshes"
    )
    parser.add_argument("--server-workers", type=int, default=SERVER_WORKERS, help="the MLflow server's workers")
    parser.add_argument("--store", default=str(Path.home() / ".cache" / "cnn-dashboard" / "benchmark-store"))
    args = parser.parse_args()
    folder = Path(args.store) / f"{args.runs}x{args.epochs}"
    if not args.refresh_only:
        embedded_reads(folder, args)
    if args.server or args.refresh_only:
        # Under the temporary folder: PostgreSQL runs as its own user, who may not reach a home folder.
        pg_folder = Path(tempfile.gettempdir()) / f"cnn-benchmark-postgres-{folder.name}"
        with postgres_server(pg_folder, args.runs, args.epochs, args.server_workers) as url:
            for label, seconds in refresh_times(url, args.repeats):
                print(f"mlflow server + PostgreSQL, Runs table: {label}: {seconds:.2f} s")
            if args.refresh_only:
                return
            print_reads(
                f"mlflow server + PostgreSQL (best of {args.repeats})",
                read_times(url, args.runs, args.repeats, not args.no_naive),
            )
            if args.browser:
                print(f"Runs page in Chromium, mlflow server + PostgreSQL: {browser_seconds(url):.1f} s")


if __name__ == "__main__":
    main()

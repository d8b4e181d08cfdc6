"""A tracking server that goes away mid-run: the runner waits for it a bounded time, then stops with its
last epoch and checkpoint spooled on this machine and the command that continues; once the server is back,
`train --resume` logs the missed epoch and finishes the run. No completed epoch is lost."""

import os
import signal
import time

import pytest
from mlflow.tracking import MlflowClient

from experiments.tracking_server import free_port, start_mlflow_server
from tests.helpers import cli, cli_process

EPOCHS = 4


def stop(server) -> None:
    os.killpg(server.pid, signal.SIGTERM)  # mlflow server and its workers
    server.wait(timeout=30)


@pytest.mark.long
def test_a_server_that_goes_away_mid_run_loses_no_epoch(tmp_path, mnist_dir):
    port, backend = free_port(), f"sqlite:///{tmp_path / 'server.db'}"
    start = lambda: start_mlflow_server(backend, tmp_path / "artifacts", port)  # noqa: E731 (twice, the same)
    server = start()
    uri = f"http://127.0.0.1:{port}"
    # MLflow's own retries off: each call fails at once, so the runner's bounded wait (--store-retry) is all it waits
    env = {"MLFLOW_TRACKING_URI": uri, "CNN_SPOOL_DIR": str(tmp_path / "spool"), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    runner = cli_process(
        "train",
        "--model",
        "tiny",
        "--train-size",
        "4000",
        "--test-size",
        "500",
        "--epochs",
        str(EPOCHS),
        "--store-retry",
        "4",
        "--no-progress",
        env=env,
    )
    client = MlflowClient(uri)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # until the first epoch is logged
            runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
            if runs and client.get_metric_history(runs[0].info.run_id, "val_acc"):
                break
            time.sleep(0.2)
        run_id = runs[0].info.run_id
        stop(server)
        out, err = runner.communicate(timeout=180)
    finally:
        runner.kill()
    assert runner.returncode == 75, err
    assert err.strip().splitlines()[-1].endswith(f"`python -m experiments train --resume {run_id}`"), err
    assert (tmp_path / "spool" / run_id / "epoch.pt").exists()
    server = start()
    try:
        resumed = cli("train", "--resume", run_id, "--no-progress", env=env)
        assert resumed.returncode == 0, resumed.stderr
        run = client.get_run(run_id)
        steps = [m.step for m in client.get_metric_history(run_id, "val_acc")]
        assert run.info.status == "FINISHED" and sorted(set(steps)) == list(range(1, EPOCHS + 1))
        assert not (tmp_path / "spool" / run_id).exists()
    finally:
        stop(server)

"""Runs on a real local Ray cluster started by the test (`ray start --head` on loopback, 2 CPUs): two sweep workers
as Ray tasks train every grid point once, and a worker killed with SIGKILL mid-trial is started again by Ray while the
sweep still trains every point; a suite on Ray trains its runs with the metrics they have without Ray, and Ctrl-C
ends the runs in progress KILLED with their checkpoints; without --ray, Ray is never imported."""

import os
import signal
import subprocess
import sys
import time
import uuid

import optuna
import pytest

from core.schema import Artifact, Metric, Tag
from core.store import REPO_ROOT, search_all
from experiments.cli import reported
from experiments.ray_engine import Stopped
from experiments.sweeps import sweep_trials
from experiments.tracking_server import free_port
from tests.helpers import cli, cli_in_process, cli_process, small_config
from tests.scaling.test_sweeps import TINY, trial_runs, write_spec

RAY = os.path.join(os.path.dirname(sys.executable), "ray")


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A one-node Ray cluster on loopback with 2 CPUs; yields its address, stopped after the module's tests."""
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    started = subprocess.run(
        [RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2", "--num-gpus=0",
         "--include-dashboard=false", "--disable-usage-stats"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr[-2000:]
    yield f"127.0.0.1:{port}"
    subprocess.run([RAY, "stop", "--force"], capture_output=True, env=env, timeout=120)


def ray_sweep(spec_path: str, storage: str, address: str) -> list:
    return ["sweep", spec_path, "--storage", storage, "--heartbeat", "1", "--ray", address, "--workers", "2"]


def grid(lrs: str, epochs: int, train_size: int) -> str:
    fixed = f"{{ {TINY}, epochs = {epochs}, train_size = {train_size} }}"
    return f'method = "grid"\nfixed = {fixed}\nspace = {{ lr = {lrs} }}\n'


def test_two_ray_workers_train_every_grid_point_once(tmp_path, postgres, server_store, tracking_server, ray_cluster):
    path, name = write_spec(tmp_path, grid("[0.005, 0.01, 0.02, 0.04]", 1, 1000))
    done = cli(
        *ray_sweep(path, postgres.url("optuna"), ray_cluster), timeout=600, env={"MLFLOW_TRACKING_URI": tracking_server}
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"2 workers on the Ray cluster at {ray_cluster} are done" in done.stdout
    trials = sweep_trials(optuna.load_study(study_name=name, storage=postgres.url("optuna")))
    assert sorted(t.params["lr"] for t in trials if t.state == optuna.trial.TrialState.COMPLETE) == [
        0.005, 0.01, 0.02, 0.04
    ]  # fmt: skip
    runs = trial_runs(server_store, name)
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 4


def test_a_ray_worker_killed_mid_trial_is_started_again_and_the_sweep_finishes(
    tmp_path, postgres, server_store, tracking_server, ray_cluster
):
    path, name = write_spec(tmp_path, grid("[0.005, 0.01, 0.02]", 3, 3000))
    driver = cli_process(
        *ray_sweep(path, postgres.url("optuna"), ray_cluster),
        env={"MLFLOW_TRACKING_URI": tracking_server},
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 180
    while len([r for r in trial_runs(server_store, name) if r.info.status == "RUNNING"]) < 2:  # both mid-trial
        assert time.monotonic() < deadline and driver.poll() is None, "the two workers never trained at once"
        time.sleep(0.2)
    workers = subprocess.run(["pgrep", "-f", "ray::sweep_worker"], capture_output=True, text=True).stdout.split()
    assert len(workers) == 2, workers
    os.kill(int(workers[0]), signal.SIGKILL)  # no handler runs: its trial and run stay RUNNING until noticed
    output = driver.communicate(timeout=600)[0]
    assert driver.returncode == 0, output[-3000:]
    assert "task will be retried" in output  # Ray 2.60's words: it started the lost worker again
    assert ": 3 complete, 0 pruned, 1 failed;" in output  # the sweep's summary once every worker has ended
    trials = sweep_trials(optuna.load_study(study_name=name, storage=postgres.url("optuna")))
    complete = sorted(t.params["lr"] for t in trials if t.state == optuna.trial.TrialState.COMPLETE)
    assert complete == [0.005, 0.01, 0.02]  # every point trained once, the killed one again
    assert [t.state for t in trials].count(optuna.trial.TrialState.FAIL) == 1  # the killed worker's


def suite_spec(folder, name: str, epochs: int, train_size: int) -> str:
    """A list suite `name` of two tiny runs (two learning rates)."""
    path = folder / f"{name}.toml"
    fixed = f"{{ {TINY}, epochs = {epochs}, train_size = {train_size} }}"
    path.write_text(
        f'method = "list"\nfixed = {fixed}\nrun_name = "tiny-lr{{lr}}"\nruns = [{{ lr = 0.01 }}, {{ lr = 0.04 }}]\n'
    )
    return str(path)


def suite_runs(client, name: str) -> list:
    return search_all(client, f"tags.{Tag.SUITE} = '{name}'")


def finished_metrics(client, name: str) -> dict[str, tuple]:
    """Each run's status and final test accuracy, test loss and best validation accuracy, by run name."""
    runs = suite_runs(client, name)
    wanted = (Metric.TEST_ACC, Metric.TEST_LOSS, Metric.BEST_VAL_ACC)
    return {r.info.run_name: (r.info.status, *(r.data.metrics.get(m) for m in wanted)) for r in runs}


def test_a_suite_on_ray_trains_every_run_with_the_metrics_it_has_without_ray(
    tmp_path, capsys, server_store, tracking_server, ray_cluster
):
    tag = uuid.uuid4().hex[:8]
    on_ray, here = f"ray-suite-{tag}", f"plain-suite-{tag}"
    env = {"MLFLOW_TRACKING_URI": tracking_server}
    done = cli("suite", suite_spec(tmp_path, on_ray, 1, 1000), "--ray", ray_cluster, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"2 runs on the Ray cluster at {ray_cluster}, logged to {tracking_server}" in done.stdout
    plain = cli_in_process(capsys, "suite", suite_spec(tmp_path, here, 1, 1000))
    assert plain.returncode == 0, plain.stderr[-3000:]
    ray_runs, plain_runs = finished_metrics(server_store, on_ray), finished_metrics(server_store, here)
    assert sorted(ray_runs) == ["tiny-lr0.01", "tiny-lr0.04"]
    assert all(status == "FINISHED" for status, *_ in ray_runs.values())
    # The same seeds, the same numbers: equal accuracies, losses equal to float rounding (a Ray task gets one thread,
    # so its sums run in another order)
    assert ray_runs.keys() == plain_runs.keys()
    for name, (status, test_acc, test_loss, best_val_acc) in ray_runs.items():
        assert (status, test_acc, best_val_acc) == (plain_runs[name][0], plain_runs[name][1], plain_runs[name][3])
        assert test_loss == pytest.approx(plain_runs[name][2], rel=1e-6), name


def test_ctrl_c_on_a_ray_suite_ends_its_runs_killed_with_their_checkpoints(
    tmp_path, server_store, tracking_server, ray_cluster
):
    name = f"ray-stop-{uuid.uuid4().hex[:8]}"
    driver = cli_process(
        "suite", suite_spec(tmp_path, name, 400, 3000), "--ray", ray_cluster,
        env={"MLFLOW_TRACKING_URI": tracking_server}, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    # Both runs on the cluster, each past its first epoch (a checkpoint to keep). 400 epochs, of which Ctrl-C cuts
    # all but a few: with 20, the run whose Ray worker started first once finished before the other had trained an
    # epoch (a fresh clone's CI, 2026-12-04), and a run that ends before Ctrl-C is rightly FINISHED, not KILLED.
    while True:
        runs = suite_runs(server_store, name)
        if len(runs) == 2 and all(Metric.VAL_ACC in r.data.metrics for r in runs):
            break
        assert time.monotonic() < deadline and driver.poll() is None, "the two runs never trained at once"
        time.sleep(0.2)
    driver.send_signal(signal.SIGINT)
    output = driver.communicate(timeout=120)[0]
    assert driver.returncode == 130, output[-3000:]
    assert "the runs in progress on the Ray cluster are marked KILLED" in output.strip().splitlines()[-1]
    for run in suite_runs(server_store, name):
        assert run.info.status == "KILLED", run.info.run_name
        assert Artifact.CHECKPOINT in [f.path for f in server_store.list_artifacts(run.info.run_id)]


def test_a_bad_setting_or_resume_with_ray_is_one_line_before_any_cluster_is_joined(store, capsys):
    nowhere = f"127.0.0.1:{free_port()}"
    refused = cli_in_process(capsys, "train", "--model", "tiny", "--repeats", "2", "--lr", "-1", "--ray", nowhere)
    assert refused.returncode == 2 and "--lr" in refused.stderr.strip().splitlines()[-1]
    refused = cli_in_process(capsys, "train", "--resume", "0123abcd", "--ray", nowhere)
    assert refused.returncode == 2 and "--ray: not with --resume" in refused.stderr.strip().splitlines()[-1]


def test_a_sweep_without_ray_never_imports_it():
    code = "import sys, experiments.cli; sys.exit('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT).returncode == 0


def test_a_ray_address_where_no_cluster_answers_is_one_line(store, capsys):
    refused = cli_in_process(capsys, "sweep", "smoke", "--ray", f"127.0.0.1:{free_port()}")
    assert refused.returncode == 2
    assert "no Ray cluster answers there" in refused.stderr.strip().splitlines()[-1]


def test_ctrl_c_while_a_summary_prints_reaches_the_engine_that_trains_the_runs(monkeypatch):
    """Ctrl-C lands where it lands: while a finished run's summary prints, the tasks still running on Ray must be
    cancelled and the command say so (Stopped), as when it comes while the driver waits (ray_engine.outcomes)."""
    cancelled = []

    def engine():  # what outcomes() does on Ctrl-C at its yield: cancel what runs, raise Stopped
        try:
            yield 0, object()
            yield 1, object()
        except KeyboardInterrupt:
            cancelled.append(True)
            raise Stopped from None

    def summary(config, result):
        raise KeyboardInterrupt

    monkeypatch.setattr("experiments.cli.print_summary", summary)
    configs = [small_config("tiny", run_name=f"run-{i}") for i in range(2)]
    with pytest.raises(Stopped):
        reported(configs, engine())
    assert cancelled == [True]

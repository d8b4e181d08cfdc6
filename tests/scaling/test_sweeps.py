"""Sweeps on real Optuna storage: specs, pruning, the Sweeps page, and workers in separate processes
sharing one sweep on PostgreSQL, one of them killed mid-trial."""

import signal
import subprocess
import time
import uuid

import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from core.schema import Metric, Tag, Value
from dashboard.state import Key, rows_key
from dashboard.widgets import md
from experiments.specs import Spec, SpecError
from experiments.sweeps import run_worker, sweep_trials
from tests.helpers import CHART, cli_process, needs_chromium, open_app, shoot, start_server

TINY = 'model = "tiny", batch_size = 32, test_size = 300'


def write_spec(folder, body: str) -> tuple[str, str]:
    """A spec file with a unique sweep name (the PostgreSQL storage is shared by the session)."""
    name = f"sweep-{uuid.uuid4().hex[:8]}"
    path = folder / f"{name}.toml"
    path.write_text(body if body.startswith("name =") else f'name = "{name}"\n{body}')
    return str(path), name


def sweep_runs(client: MlflowClient, name: str) -> list:
    experiment = client.get_experiment_by_name("cnn-sweeps")
    return client.search_runs([experiment.experiment_id], f"tags.{Tag.SWEEP} = '{name}'") if experiment else []


def trial_runs(client: MlflowClient, name: str) -> list:
    return [r for r in sweep_runs(client, name) if r.data.tags.get(Tag.RUN_KIND) != Value.RUN_KIND_SWEEP]


def parent_run(client: MlflowClient, name: str):
    return next(r for r in sweep_runs(client, name) if r.data.tags.get(Tag.RUN_KIND) == Value.RUN_KIND_SWEEP)


def worker(spec_path: str, storage: str, uri: str):

    return cli_process(
        "sweep",
        spec_path,
        "--storage",
        storage,
        "--heartbeat",
        "1",
        env={"MLFLOW_TRACKING_URI": uri},
        stderr=subprocess.STDOUT,
    )


@pytest.mark.parametrize(
    "body, message",
    [
        ('method = "grid"\nspace = { lr = [0.1] }', "model: give it in fixed, space or every run"),
        ('method = "bayes"\nfixed = { model = "tiny" }\nspace = { lr = [0.1] }', "method 'bayes'"),
        ('method = "tpe"\nfixed = { model = "tiny" }\nspace = { lr = { low = 0.1, high = 1.0 } }', "needs trials > 0"),
        (
            'method = "grid"\nfixed = { model = "tiny" }\nspace = { lr = { low = 0.1, high = 1.0 } }',
            "lr: expected a non-empty list",
        ),
        (
            'method = "grid"\nfixed = { model = "tiny" }\nspace = { learning_rate = [0.1] }',
            "unknown run setting learning_rate",
        ),
        ('method = "grid"\nfixed = { model = "tiny" }\nspace = { lr = [0.1] }\nworkers = 3', "unknown keys workers"),
        ('method = "grid"\nfixed = { model = "tiny", lr = 0.1 }\nspace = { lr = [0.1] }', "both in space and fixed"),
        ('method = "grid" = 1', "not valid TOML"),
        ('name = "it\'s"\nmethod = "grid"\nfixed = { model = "tiny" }\nspace = { lr = [0.1] }', "name: use letters"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_problem(tmp_path, body, message):
    path, _ = write_spec(tmp_path, body)
    with pytest.raises(SpecError, match=message):
        Spec.load(path)


def test_bundled_specs_load_and_a_grid_lists_every_combination():
    smoke = Spec.load("smoke")
    assert smoke.size == len(smoke.grid()) == 4
    assert {tuple(sorted(p.items())) for p in smoke.grid()} == {
        (("lr", lr), ("optimizer", opt)) for lr in smoke.space["lr"] for opt in smoke.space["optimizer"]
    }
    assert Spec.load("conv-conv-search").method == "tpe"
    assert [p["train_size"] for p in Spec.load("data-size").points()] == [1000, 5000, 20000, 60000]


# The tests share the module fixture `pruned_sweep`, which trains: one worker builds it once and runs them all.
pytestmark = pytest.mark.xdist_group("sweeps-module")


@pytest.fixture(scope="module")
def pruned_sweep(tmp_path_factory, mnist_dir):
    """A grid of a good and a hopeless learning rate with the median pruner, run in this process on an
    embedded store and SQLite storage: the hopeless trial is pruned after its first epoch."""
    folder = tmp_path_factory.mktemp("pruned-sweep")
    path, name = write_spec(
        folder,
        f'method = "grid"\npruner = "median"\npruner_startup_trials = 1\n'
        f'fixed = {{ {TINY}, epochs = 3, train_size = 1500, optimizer = "adam" }}\n'
        f"space = {{ lr = [0.01, 1e-7] }}\n",
    )
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        summary = run_worker(Spec.load(path), f"sqlite:///{folder / 'optuna.db'}", log=lambda *a, **k: None)
        yield MlflowClient(uri), name, summary


def test_a_pruned_trial_stops_early_and_its_run_says_so(pruned_sweep):
    client, name, summary = pruned_sweep
    assert summary[Metric.SWEEP_COMPLETE] == 1 and summary[Metric.SWEEP_PRUNED] == 1
    runs = {r.data.tags[Tag.TRIAL]: r for r in trial_runs(client, name)}
    good, hopeless = runs["0"], runs["1"]
    assert good.data.tags[Tag.TRIAL_STATE] == "complete" and Tag.STOPPED_AT_EPOCH not in good.data.tags
    assert hopeless.data.tags[Tag.TRIAL_STATE] == "pruned"
    assert hopeless.data.tags[Tag.STOPPED_AT_EPOCH] == "1" and hopeless.data.metrics[Metric.EPOCHS_TRAINED] == 1
    assert hopeless.info.status == "FINISHED" and Metric.TEST_ACC in hopeless.data.metrics
    assert len(client.get_metric_history(hopeless.info.run_id, Metric.VAL_ACC)) == 1
    assert len(client.get_metric_history(good.info.run_id, Metric.VAL_ACC)) == 3
    parent = parent_run(client, name)
    assert parent.info.status == "FINISHED"
    assert {r.data.tags[Tag.PARENT_RUN] for r in runs.values()} == {parent.info.run_id}
    assert parent.data.metrics[Metric.SWEEP_BEST] == good.data.metrics[Metric.BEST_VAL_ACC]


def test_the_sweeps_page_shows_trials_best_and_opens_a_trial_run(pruned_sweep):
    client, name, _ = pruned_sweep
    at = open_app(**{Key.RUNS_COLUMNS: ["epochs"]})
    runs_table = at.dataframe[0].value.set_index(pd.Index(at.session_state[rows_key(Key.RUNS_TABLE)]))
    hopeless = next(r for r in trial_runs(client, name) if r.data.tags[Tag.TRIAL] == "1")
    assert runs_table.loc[hopeless.info.run_id, "epochs"] == 1  # the stopped epoch, not the 3 planned
    at.switch_page("views/sweeps.py").run()
    assert not at.exception
    trials = at.dataframe[0].value
    assert list(trials["state"]) == ["complete", "pruned"] and list(trials["lr"]) == [0.01, 1e-7]
    best = next(r for r in trial_runs(client, name) if r.data.tags[Tag.TRIAL] == "0")
    assert trials["best_val_acc"].iloc[0] == pytest.approx(100 * best.data.metrics[Metric.BEST_VAL_ACC])  # percent
    # the best trial is named (and highlighted in the table)
    assert f"Best trial (green): {md(best.info.run_name)}" in " ".join(c.value for c in at.caption)
    assert at.session_state[Key.TRIAL_PICK] == best.info.run_id
    assert at.get("echarts_chart"), "parallel coordinates"
    at.button(key=Key.OPEN_TRIAL).click().run()
    assert not at.exception
    assert at.title[0].value == "Run detail" and at.session_state[Key.DETAIL_RUN] == best.info.run_id


def test_a_trial_with_repeats_trains_every_seed_and_scores_their_mean(tmp_path, mnist_dir, monkeypatch):
    path, name = write_spec(
        tmp_path,
        f'method = "grid"\nfixed = {{ {TINY}, epochs = 1, train_size = 1000, '
        "repeats = 2 }\nspace = { lr = [0.01] }\n",
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    summary = run_worker(Spec.load(path), f"sqlite:///{tmp_path / 'optuna.db'}", log=lambda *a, **k: None)
    client = MlflowClient(uri)
    runs = trial_runs(client, name)
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1"] and summary[Metric.SWEEP_COMPLETE] == 1
    assert {r.data.tags[Tag.TRIAL] for r in runs} == {"0"} and len({r.data.tags[Tag.CONFIG_GROUP] for r in runs}) == 1
    mean = sum(r.data.metrics[Metric.BEST_VAL_ACC] for r in runs) / 2
    assert parent_run(client, name).data.metrics[Metric.SWEEP_BEST] == pytest.approx(mean)


def test_the_default_study_lives_beside_its_store_so_another_store_runs_the_sweep_afresh(
    tmp_path, mnist_dir, monkeypatch
):
    path, name = write_spec(
        tmp_path, f'method = "grid"\nfixed = {{ {TINY}, epochs = 1, train_size = 500 }}\nspace = {{ lr = [0.01] }}\n'
    )
    for store in ("first", "second"):
        uri = f"sqlite:///{tmp_path / store / 'mlflow.db'}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        summary = run_worker(Spec.load(path), log=lambda *a, **k: None)  # the default Optuna storage
        assert summary[Metric.SWEEP_COMPLETE] == 1 and len(trial_runs(MlflowClient(uri), name)) == 1, store
        assert (tmp_path / store / "optuna.db").exists()


@needs_chromium
def test_the_sweeps_page_renders_in_a_browser(pruned_sweep, page):
    client, name, _ = pruned_sweep
    with start_server(client.tracking_uri) as url:
        page.goto(f"{url}/sweeps")
        page.get_by_role("heading", name="Sweeps").wait_for(timeout=60_000)
        page.get_by_text("Parallel coordinates").wait_for(timeout=60_000)
        page.locator(CHART).first.wait_for(timeout=30_000)
        page.get_by_text(f"Best trial (green): {name}-000").wait_for(timeout=30_000)
        assert page.locator('[data-testid="stException"]').count() == 0
        shoot(page, "sweeps")


def test_two_workers_share_one_grid_sweep_on_postgres(tmp_path, postgres, server_store, tracking_server, mnist_dir):
    path, name = write_spec(
        tmp_path,
        f'method = "grid"\nfixed = {{ {TINY}, epochs = 1, train_size = 1000 }}\n'
        'space = { lr = [0.005, 0.01, 0.02], optimizer = ["sgd", "adam"] }\n',
    )
    workers = [worker(path, postgres.url("optuna"), tracking_server) for _ in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert all(" complete " in out for out in outputs), f"each worker ran trials:\n{outputs}"

    study = optuna.load_study(study_name=name, storage=postgres.url("optuna"))
    trials = sweep_trials(study)  # a worker that asked for one more after the grid ran out opened a surplus trial
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 6
    grid = {tuple(sorted(p.items())) for p in Spec.load(path).grid()}
    assert sorted(tuple(sorted(t.params.items())) for t in trials) == sorted(grid)  # each point once, none lost
    runs = trial_runs(server_store, name)
    assert len(runs) == 6 and {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(int(r.data.tags[Tag.TRIAL]) for r in runs) == [t.number for t in trials]
    assert parent_run(server_store, name).data.metrics[Metric.SWEEP_COMPLETE] == 6


def test_a_killed_worker_leaves_its_trial_failed_and_the_sweep_finishes(
    tmp_path, postgres, server_store, tracking_server, mnist_dir
):
    path, name = write_spec(
        tmp_path,
        f'method = "grid"\nfixed = {{ {TINY}, epochs = 3, train_size = 3000 }}\n'
        "space = { lr = [0.005, 0.01, 0.02] }\n",
    )
    doomed = worker(path, postgres.url("optuna"), tracking_server)
    deadline = time.monotonic() + 120
    while not [r for r in trial_runs(server_store, name) if r.info.status == "RUNNING"]:
        assert time.monotonic() < deadline and doomed.poll() is None, "the first worker never started a trial"
        time.sleep(0.2)
    doomed.send_signal(signal.SIGKILL)  # no handler runs: its trial and run stay RUNNING until noticed
    doomed.wait()
    killed_run = trial_runs(server_store, name)[0]

    survivor = worker(path, postgres.url("optuna"), tracking_server)
    output = survivor.communicate(timeout=600)[0]
    assert survivor.returncode == 0, output

    states = [t.state for t in sweep_trials(optuna.load_study(study_name=name, storage=postgres.url("optuna")))]
    assert states.count(optuna.trial.TrialState.FAIL) == 1
    assert states.count(optuna.trial.TrialState.COMPLETE) == 3  # the killed trial's point ran again
    killed = server_store.get_run(killed_run.info.run_id)
    assert killed.info.status == "FAILED" and killed.data.tags[Tag.TRIAL_STATE] == Value.TRIAL_FAILED
    assert "heartbeats" in killed.data.tags[Tag.ERROR]
    parent = parent_run(server_store, name)
    assert parent.info.status == "FINISHED" and parent.data.metrics[Metric.SWEEP_FAILED] == 1


def test_a_worker_stopped_with_sigterm_hands_its_trial_back(tmp_path, store, mnist_dir):
    """SIGTERM mid-trial: the run ends KILLED, the trial FAIL, and its grid point is queued again. The trial is
    long (it never ends: the signal comes within its first epoch or two), so that it is still running then."""
    path, name = write_spec(
        tmp_path, f'method = "grid"\nfixed = {{ {TINY}, epochs = 30, train_size = 3000 }}\nspace = {{ lr = [0.005] }}\n'
    )
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    stopping = worker(path, storage, store.tracking_uri)
    deadline = time.monotonic() + 120
    while not [r for r in trial_runs(store, name) if r.info.status == "RUNNING"]:
        assert time.monotonic() < deadline and stopping.poll() is None, "the worker never started a trial"
        time.sleep(0.2)
    stopping.send_signal(signal.SIGTERM)
    assert stopping.wait(timeout=120) == 130
    assert trial_runs(store, name)[0].info.status == "KILLED"
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.WAITING]
    assert trials[1].user_attrs["grid_point"] == 0

"""Runs logged through a real MLflow server on PostgreSQL are complete and identical to embedded ones,
and the dashboard reads them through the server."""

import dataclasses
import filecmp
import math
import tempfile

import mlflow
import numpy as np
from mlflow.entities import DatasetInput, ViewType
from mlflow.entities import Metric as MlflowMetric
from mlflow.tracking import MlflowClient

from core.schema import Artifact, Metric, Param, Tag
from dashboard import bulk
from dashboard.state import Key
from experiments.run import execute
from tests.helpers import incremental_and_full_reads, open_app, small_config

TIMINGS = {Metric.EPOCH_SECONDS, Metric.SAMPLES_PER_S, Metric.TOTAL_SECONDS}


def artifact_files(client: MlflowClient, run_id: str, path: str = "") -> list[str]:
    files = []
    for item in client.list_artifacts(run_id, path):
        files += artifact_files(client, run_id, item.path) if item.is_dir else [item.path]
    return sorted(files)


def run_content(client: MlflowClient, run_id: str) -> dict:
    """Everything a run holds that does not depend on when or where it was logged."""
    run = client.get_run(run_id)
    return {
        "status": run.info.status,
        "params": dict(run.data.params),
        "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.") and k != Tag.HEARTBEAT},
        "heartbeat": Tag.HEARTBEAT in run.data.tags,  # a time stamp: present, not equal
        "metrics": {
            name: [(m.step, m.value) for m in client.get_metric_history(run_id, name)]
            for name in sorted(run.data.metrics)
            if name not in TIMINGS
        },
        "timings": sorted(name for name in run.data.metrics if name in TIMINGS),
        "artifacts": artifact_files(client, run_id),
        "model": [
            (
                client.get_logged_model(m.model_id).status,
                sorted(a.path for a in client.list_logged_model_artifacts(m.model_id)),
            )
            for m in run.outputs.model_outputs
        ],  # MLflow 3 keeps a logged model beside the run's artifacts
    }


def test_a_run_through_the_server_is_identical_to_the_embedded_one(server_store, tmp_path, monkeypatch):
    config = small_config("lenet5", run_name="server-vs-embedded")
    through_server = execute(config).run_id
    embedded_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", embedded_uri)
    embedded = execute(config).run_id
    server_client, embedded_client = server_store, MlflowClient(embedded_uri)

    served, local = run_content(server_client, through_server), run_content(embedded_client, embedded)
    assert served["status"] == "FINISHED"
    assert set(Metric.PER_EPOCH) | set(Metric.FINAL) <= set(served["metrics"]) | set(served["timings"])
    assert {Artifact.CONFUSION_TEST, Artifact.LAYERS, Artifact.PER_CLASS, Artifact.CONFIG} <= set(served["artifacts"])
    assert {"MLmodel", "data", "requirements.txt"} <= set(served["model"][0][1])
    assert served == local
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        for path in served["artifacts"]:
            left = server_client.download_artifacts(through_server, path, a)
            right = embedded_client.download_artifacts(embedded, path, b)
            assert filecmp.cmp(left, right, shallow=False), f"{path} differs between the stores"


def test_the_dashboard_reads_runs_and_artifacts_through_the_server(server_store, mnist_dir):
    run_id = execute(small_config("softmax-regression", run_name="served-run")).run_id
    at = open_app()
    assert not at.exception
    table = at.dataframe[0].value
    assert "served-run" in set(table["run"] if "run" in table else table["run_name"])
    at.session_state[Key.SELECTION] = [run_id]
    at.switch_page("views/detail.py").run()
    assert not at.exception
    assert at.get("echarts_chart"), "the confusion matrix, read through the server's artifact proxy"
    assert server_store.get_run(run_id).data.params[Param.MODEL] == "softmax-regression"


def test_histories_come_from_the_server_in_bulk_exactly_as_run_by_run(server_store, monkeypatch):

    experiment = server_store.create_experiment(f"bulk-{tempfile.mktemp(dir='')}")
    ids = []
    for i in range(5):
        run_id = server_store.create_run(experiment).info.run_id
        points = [MlflowMetric(Metric.VAL_ACC, 0.1 * step + i, 1_000 + step, step) for step in range(1, 4)]
        server_store.log_batch(run_id, metrics=points + [MlflowMetric(Metric.VAL_ACC, 0.99, 5_000, 2)])
        ids.append(run_id)
    names = [Metric.VAL_ACC, Metric.TRAIN_ACC]  # train_acc: never logged

    def by_run(rows) -> list:  # each run's points in the order logged; runs in any order
        return sorted(map(list, rows), key=lambda row: (row[1], row[0]))

    one_by_one = by_run(
        row for name in names for run_id in ids for row in bulk.history_points(server_store, run_id, name)
    )
    assert len(one_by_one) == 20 and all(row[3] == 0.99 for row in one_by_one[3::4])  # step 2 again, last
    assert by_run(bulk.metric_points(server_store, ids, names).values.tolist()) == one_by_one
    monkeypatch.setattr(bulk, "SERVER_POINTS", 4)  # every answer "full": halved down to single runs
    assert by_run(bulk.metric_points(server_store, ids, names).values.tolist()) == one_by_one


def test_a_read_of_what_changed_through_the_server_equals_a_full_read(server_store):
    incremental, full = incremental_and_full_reads(server_store)
    assert incremental == full and {"a", "b", "c", "d", "new", "elsewhere"} <= {run.name for run in full}


def test_a_server_read_in_spans_of_start_time_equals_mlflows_own_client(server_store, monkeypatch):
    """The first read splits the search over start times and parses the server's JSON itself: it must find every
    run exactly as MLflow's client reads it (NaN, dataset inputs, deleted and running runs, runs started in one
    millisecond), here with pages of two runs so that every span splits."""
    experiment = server_store.create_experiment(f"spans-{tempfile.mktemp(dir='')}")
    ids = [server_store.create_run(experiment, start_time=1_700_000_000_000).info.run_id for _ in range(5)]
    ids += [server_store.create_run(experiment, run_name=f"later-{i}").info.run_id for i in range(3)]
    server_store.log_metric(ids[0], Metric.VAL_ACC, math.nan, step=1)
    server_store.log_param(ids[1], Param.LR, "0.01")
    digits = mlflow.data.from_numpy(np.zeros((2, 2)), name="digits")
    server_store.log_inputs(ids[2], datasets=[DatasetInput(digits._to_mlflow_entity())])
    server_store.set_terminated(ids[3])
    server_store.delete_run(ids[4])
    monkeypatch.setattr(bulk, "SERVER_PAGE", 2)

    def comparable(runs):
        spelled = (dataclasses.replace(r, metrics={k: repr(v) for k, v in r.metrics.items()}) for r in runs)
        return sorted(spelled, key=lambda run: run.run_id)

    experiments = list(bulk.experiment_names(server_store))
    searched = server_store.search_runs(experiments, run_view_type=ViewType.ALL, max_results=10_000)
    mlflows = [bulk.StoredRun.of(run) for run in searched]
    spans = comparable(bulk.stored_runs(server_store))
    assert spans == comparable(mlflows) and set(ids) <= {run.run_id for run in spans}

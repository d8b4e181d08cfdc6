"""dashboard.bulk: the SQL store's column queries give exactly what MLflow's public client gives, on a real store."""

import dataclasses
import math
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
from mlflow.entities import DatasetInput, RunTag
from mlflow.entities import Metric as MlflowMetric
from mlflow.entities import Param as MlflowParam
from mlflow.store.entities.paged_list import PagedList
from mlflow.tracking import MlflowClient

from dashboard import bulk
from tests.helpers import incremental_and_full_reads


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Runs in two experiments: params, tags, a NaN metric, a step logged twice, a dataset input, a deleted run,
    a run without metrics."""
    folder = tmp_path_factory.mktemp("bulk")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(uri)
    first = client.create_experiment("first", artifact_location=str(folder / "artifacts"))
    second = client.create_experiment("second", artifact_location=str(folder / "artifacts"))
    ids = []
    for i, experiment in enumerate([first, first, second, second]):
        run_id = client.create_run(experiment, run_name=f"run-{i}").info.run_id
        points = [MlflowMetric("val_acc", 0.5 + i / 10, 1_000 + step, step) for step in (1, 2, 3)]
        points += [
            MlflowMetric("val_acc", 0.99, 2_000, 2),  # step 2 again, later: the value that counts
            MlflowMetric("train_acc", math.nan if i == 1 else 0.6, 1_000, 1),
        ]
        client.log_batch(
            run_id, metrics=points, params=[MlflowParam("lr", str(0.1 * (i + 1)))], tags=[RunTag("suite", "quick")]
        )
        ids.append(run_id)
    digits = mlflow.data.from_numpy(np.zeros((2, 2)), name="digits")  # the client: no process-wide tracking URI
    client.log_inputs(ids[0], datasets=[DatasetInput(digits._to_mlflow_entity())])
    client.set_terminated(ids[1])
    client.delete_run(ids[2])
    ids.append(client.create_run(first, run_name="empty").info.run_id)
    return client, ids


def test_sql_store_is_read_directly(store):
    client, _ = store
    assert bulk.sql_store(client) is not None


def comparable(run: bulk.StoredRun) -> bulk.StoredRun:
    """The run with NaN metrics spelled out (two NaN objects are not equal in a dict)."""
    return dataclasses.replace(run, metrics={k: "nan" if math.isnan(v) else v for k, v in run.metrics.items()})


def read_everything(client, ids):
    runs = sorted(map(comparable, bulk.stored_runs(client)), key=lambda run: run.run_id)
    points = bulk.metric_points(client, ids, ["val_acc", "train_acc"])
    return (
        runs,
        points.sort_values(["run_id", "metric", "step"], kind="stable").reset_index(drop=True),
        bulk.metric_names(client, ids),
    )


def test_the_sql_path_reads_what_mlflows_client_reads(store, monkeypatch):
    client, ids = store
    fast = read_everything(client, ids)
    monkeypatch.setattr(bulk, "sql_store", lambda client: None)  # as a server or file store is read
    slow = read_everything(client, ids)
    assert len(fast[0]) == 5 and fast[0] == slow[0]
    assert fast[1].equals(slow[1]) and fast[2] == {run_id: names for run_id, names in slow[2].items() if names}


def test_runs_carry_status_stage_nan_and_inputs(store):
    client, ids = store
    runs = {run.run_id: run for run in bulk.stored_runs(client)}
    assert runs[ids[0]].inputs == ("digits",) and runs[ids[0]].params == {"lr": "0.1"}
    assert math.isnan(runs[ids[1]].metrics["train_acc"]) and runs[ids[1]].status == "FINISHED"
    assert runs[ids[2]].lifecycle_stage == "deleted" and runs[ids[4]].metrics == {}


def test_a_step_logged_twice_keeps_both_points_in_logging_order(store):
    client, ids = store
    points = bulk.metric_points(client, ids[:1], ["val_acc"])
    assert list(points["step"]) == [1, 2, 3, 2] and points["value"].iloc[-1] == 0.99


def test_a_read_of_what_changed_equals_a_full_read(tmp_path):
    incremental, full = incremental_and_full_reads(MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}"))
    assert len(full) == 6 and incremental == full


def test_experiment_names_reads_every_page_of_experiments():
    """MLflow answers 1,000 experiments per page at most; a store with more must not lose the rest (read_changes
    drops the runs of experiments it does not see)."""
    pages = {
        None: PagedList([SimpleNamespace(experiment_id="0", name="a")], "page-2"),
        "page-2": PagedList([SimpleNamespace(experiment_id="1", name="b")], None),
    }
    client = SimpleNamespace(search_experiments=lambda view_type, max_results, page_token: pages[page_token])
    assert bulk.experiment_names(client) == {"0": "a", "1": "b"}


def pages_of(starts: list[int], size: int):
    """A server's search over runs with these start times, as MLflow pages it: newest first, then by run id,
    `size` runs a page, the next page token an offset; with the spans it was asked."""
    runs = [bulk.StoredRun(f"run-{i:03d}", "0", "", "FINISHED", "active", t, None) for i, t in enumerate(starts)]
    asked = []

    def read(span: bulk.Span):
        asked.append(span)
        found = sorted(
            (run for run in runs if span.first <= run.start_time <= span.last),
            key=lambda run: (-run.start_time, run.run_id),
        )
        offset = int(span.token or 0)
        return found[offset : offset + size], str(offset + size) if offset + size < len(found) else None

    return runs, read, asked


@pytest.mark.parametrize(
    "starts",
    [
        list(range(100)),  # evenly spread
        [0, *range(10_000, 10_090), 10**9],  # a sweep's afternoon between two lone runs
        [-5, *range(-3, 2)],  # start times before 1970 (MLflow takes any integer)
        [5] * 23 + [6] * 3 + [7],  # many runs in one millisecond: read on by the page token
        [42],
    ],
    ids=["even", "one-burst", "same-millisecond", "one-run", "negative"],
)
def test_spans_read_every_run_once_however_the_runs_are_spread_in_time(starts):
    runs, read, asked = pages_of(starts, size=4)
    found = bulk.read_in_spans(read, at_once=3)
    assert sorted(found, key=lambda run: run.run_id) == runs
    assert len(asked) <= 2 * math.ceil(len(runs) / 4) + 4  # mostly full pages: splits that find nothing are few
    assert (len(asked) == 1) == (len(runs) <= 4)  # a store of one page is one request, as before

"""The read layer and every page on a store of hostile runs: odd names, NaN and infinite values, huge steps,
long params, tags and metric names of any text, and artifacts that are missing, empty or garbage."""

import math
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import streamlit as st
from hypothesis import assume, given, settings
from hypothesis import strategies as hst
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from core.diagnosis import history_of, verdict
from core.schema import Artifact, Metric, Param
from dashboard import reader
from tests.fuzz import examples
from tests.helpers import PAGES, go, open_app, sqlite_uri

names = hst.text(
    alphabet=hst.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), min_size=1, max_size=60
)
keys = hst.text(alphabet="abcxyzAZ019_-./ ", min_size=1, max_size=40)  # what MLflow allows in a key
# No subnormal floats: a PyTorch run earlier in the process flushes them to zero (the flush_denormal setting).
numbers = hst.one_of(
    hst.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False), hst.integers(-(10**6), 10**6)
)
metric_names = hst.one_of(
    hst.sampled_from(
        [*map(str, Metric.PER_EPOCH), *map(str, Metric.FINAL), "accuracy", "val_accuracy", "loss", "epoch", "eval_loss"]
    ),
    keys,
)
ARTIFACTS = [
    Artifact.CONFUSION_TEST,
    Artifact.CONFUSION_VAL_EPOCHS,
    Artifact.PER_CLASS,
    Artifact.MISCLASSIFIED,
    Artifact.LAYERS,
    Artifact.TEST_PREDICTIONS,
    Artifact.MISCLASSIFIED_IMAGES,
]

# The page tests read the runs the property logs into the module's store: one worker runs both, in order.
pytestmark = pytest.mark.xdist_group("hostile-store")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    client = MlflowClient(sqlite_uri(folder))  # artifacts in the test's folder, not ./mlruns
    return client, client.create_experiment("hostile <b>experiment</b>", (folder / "artifacts").as_uri()), []


@settings(max_examples=examples(15))
@given(
    run_name=names,
    params=hst.dictionaries(
        hst.one_of(
            hst.sampled_from(
                [
                    *map(
                        str,
                        (
                            Param.MODEL,
                            Param.DATASET,
                            Param.TRAIN_SIZE,
                            Param.VAL_SIZE,
                            Param.TEST_SIZE,
                            Param.BEST_ERROR,
                            Param.EPOCHS,
                        ),
                    )
                ]
            ),
            keys,
        ),
        hst.one_of(names, hst.just("x" * 6000), hst.just("nan"), hst.just("-1")),
        max_size=5,
    ),
    points=hst.lists(hst.tuples(metric_names, numbers, hst.integers(-(2**40), 2**62)), max_size=12),
    artifacts=hst.dictionaries(hst.sampled_from(ARTIFACTS), hst.binary(max_size=200), max_size=4),
    status=hst.sampled_from(["FINISHED", "FAILED", "KILLED", "RUNNING"]),
)
def test_the_read_layer_answers_for_any_run(hostile, run_name, params, points, artifacts, status):
    client, experiment, run_ids = hostile
    run_id = client.create_run(experiment, run_name=run_name).info.run_id
    try:
        for key, value in params.items():
            client.log_param(run_id, key, value)
        for key, value, step in points:
            client.log_metric(run_id, key, value, step=step)
    except MlflowException:  # MLflow itself refused it (a name it does not allow): nothing to read
        client.delete_run(run_id)
        assume(False)
    folder = Path(unquote(urlsplit(client.get_run(run_id).info.artifact_uri).path))
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in artifacts.items():
        (folder / name).write_bytes(body)
    client.set_terminated(run_id, status)
    run_ids.append(run_id)
    runs = reader.fetch_runs(client)
    row = runs.set_index("run_id").loc[run_id]
    metrics = reader.metric_frame(client, [run_id], list(map(str, Metric.PER_EPOCH)))
    verdict(history_of(metrics, run_id), row["yardstick"], row["diverged"])
    for name in ARTIFACTS:
        read = reader.fetch_artifact(client, run_id, name)
        assert read.problem is None or ("\n" not in read.problem and name in read.problem)
        if name in artifacts and artifacts[name] and read.value is None:
            assert read.problem  # there and unreadable: named, not "absent"
    assert math.isnan(row["test_acc"]) or isinstance(row["test_acc"], float)


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_shows_the_hostile_runs_without_an_exception(hostile, page, monkeypatch):
    client, _, run_ids = hostile
    assert run_ids, "the property above logged runs"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)
    st.cache_data.clear()
    at = go(open_app(selection=run_ids[:50]), page)
    assert not at.exception, page

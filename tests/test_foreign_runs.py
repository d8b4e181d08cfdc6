"""Stores the dashboard did not write: real Keras autolog runs (one overfitting on purpose), Lightning- and
Hugging Face-style runs, and a user's own convention, read, drawn and diagnosed beside a native run."""

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from mlflow.tracking import MlflowClient

from dashboard.state import Key, rows_key
from dashboard.widgets import COMPARE_SECTIONS
from experiments.run import execute
from tests.foreign import history_of_keras_run, hugging_face_style_run, keras_autolog_run, lightning_style_run
from tests.helpers import chart_series, charts, drawn_ids, go, on_tab, open_app, small_config, sqlite_uri, texts, ys

pytestmark = pytest.mark.keras


@pytest.fixture(scope="module")
def foreign_store(tmp_path_factory, mnist_dir):
    folder = tmp_path_factory.mktemp("foreign")
    uri = sqlite_uri(folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        client = MlflowClient(uri)
        experiment = client.create_experiment("theirs", (folder / "artifacts").as_uri())  # not ./mlruns
        ids = {
            "keras": keras_autolog_run(
                uri, experiment, "mlp", train_size=2000, epochs=4, hidden=64, validation_split=0.2
            ),
            "overfit": keras_autolog_run(
                uri, experiment, "overfit", train_size=300, epochs=40, hidden=512, validation_split=0.5
            ),
        }
        recorded = history_of_keras_run(client, ids["keras"])
        ids["lightning"] = lightning_style_run(client, experiment, [tuple(row) for row in recorded])
        ids["hf"] = hugging_face_style_run(client, experiment, [(row[0], row[2], row[3]) for row in recorded])
        ids["user"] = user_convention_run(client, experiment, folder, recorded)

        ids["native"] = execute(small_config("softmax-regression", run_name="native")).run_id
        st.cache_data.clear()
        yield client, ids, recorded


def user_convention_run(client, experiment: str, folder, recorded) -> str:
    """A run under a lab's own names, and the conventions.toml beside the store that maps them."""
    (folder / "conventions.toml").write_text(
        '[[convention]]\nname = "our lab"\ndetect = ["acc_va"]\n'
        'train_acc = "acc_tr"\nval_acc = "acc_va"\nfirst_epoch_step = 0\n'
    )
    run_id = client.create_run(experiment, run_name="lab-style").info.run_id
    for step, row in enumerate(recorded):
        client.log_metric(run_id, "acc_tr", row[1], step=step)
        client.log_metric(run_id, "acc_va", row[3], step=step)
    client.set_terminated(run_id)
    return run_id


def runs_table(at):
    return at.dataframe[0].value.set_index(pd.Index(at.session_state[rows_key(Key.RUNS_TABLE)]))


def test_the_runs_table_fills_best_epoch_gap_and_diagnosis_of_foreign_runs(foreign_store):
    client, ids, recorded = foreign_store
    at = open_app(**{Key.RUNS_COLUMNS: ["best_val_acc", "best_epoch", "epochs", "diagnosis", "convention"]})
    assert not at.exception
    table = runs_table(at)
    val = recorded[:, 3] * 100  # the table shows percentages
    for role in ("keras", "lightning", "user"):
        row = table.loc[ids[role]]
        assert row["best_val_acc"] == pytest.approx(val.max()), role
        assert row["best_epoch"] == int(np.argmax(val)) + 1 and row["epochs"] == len(val), role
        assert row["gap"] == pytest.approx(100 * (recorded[-1, 1] - recorded[-1, 3])), role
        assert row["diagnosis"], role
    assert list(table.loc[[ids[r] for r in ("keras", "lightning", "hf", "user", "native")], "convention"]) == [
        "Keras autolog",
        "PyTorch Lightning",
        "Hugging Face Trainer",
        "our lab",
        "this project's runner",
    ]
    assert table.loc[ids["keras"], "model"] == "mlp (Keras)" and table.loc[ids["lightning"], "model"] == "LitConvNet"
    assert table.loc[ids["hf"], "model"] == "google/vit-mnist-small" and table.loc[ids["keras"], "dataset"] == "unknown"
    assert table.loc[ids["lightning"], "test_acc"] == pytest.approx(val[-1] - 0.2)
    assert pd.isna(table.loc[ids["keras"], "test_acc"])  # autolog logs no test accuracy: left empty, not made up
    hf = table.loc[ids["hf"]]  # no train accuracy logged: best epoch yes, gap and diagnosis no
    assert hf["best_val_acc"] == pytest.approx(val.max()) and hf["best_epoch"] == int(np.argmax(val)) + 1
    assert not hf["diagnosis"]


def test_the_inspector_diagnoses_the_keras_run_that_overfits(foreign_store):
    client, ids, _ = foreign_store
    train = client.get_metric_history(ids["overfit"], "accuracy")[-1].value
    val = client.get_metric_history(ids["overfit"], "val_accuracy")[-1].value
    assert train - val > 0.05  # it did overfit
    at = go(open_app(selection=[ids["overfit"]]), "overfitting")
    assert not at.exception
    assert "**High variance** at epoch" in texts(at) and "point estimates judged" in texts(at)
    assert len(charts(at)) >= 2  # the gap and the bias / variance charts


def test_compare_overlays_a_foreign_run_with_a_native_one_and_detail_says_what_is_missing(foreign_store):
    _, ids, recorded = foreign_store
    at = on_tab("compare", [ids["keras"], ids["native"]], COMPARE_SECTIONS[2])  # the step losses' tab
    assert not at.exception
    assert drawn_ids(charts(at)[0]) == {ids["keras"], ids["native"]}
    keras_val = next(s for s in chart_series(charts(at)[0]) if s["id"] == f"{ids['keras']}/val_acc")
    assert [point[0] for point in keras_val["data"]] == [1, 2, 3, 4]  # autolog's steps 0-3 are epochs 1-4
    steps = next(c.value for c in at.caption if c.value.startswith("Not drawn"))  # autolog logs no step losses
    assert "mlp" in steps and "train\\_loss\\_step" in steps
    assert drawn_ids(charts(at)[1]) == {ids["native"]}
    at.selectbox(key=Key.COMPARE_CURVES).set_value("bias and variance").run()  # derived from autolog's accuracies
    keras = {s["id"]: s for s in chart_series(charts(at)[0]) if s["id"].startswith(ids["keras"])}
    bias, variance = keras[f"{ids['keras']}/bias"], keras[f"{ids['keras']}/variance"]
    assert [p[0] for p in bias["data"]] == [p[0] for p in variance["data"]] == [1, 2, 3, 4]
    assert (bias["yAxisIndex"], variance["yAxisIndex"]) == (0, 1)  # each in its own panel
    assert ys(bias) == pytest.approx(
        list(100 * (1 - recorded[:, 1])), abs=0.006
    )  # in percent, to the tables' 2 decimals
    assert ys(variance) == pytest.approx(list(100 * (recorded[:, 1] - recorded[:, 3])), abs=0.006)
    at.selectbox(key=Key.COMPARE_CURVES).set_value("speed").run()  # autolog logs no epoch timing
    assert "mlp" in next(c.value for c in at.caption if c.value.startswith("Not drawn"))
    assert drawn_ids(charts(at)[0]) == {ids["native"]}
    detail = go(open_app(selection=[ids["keras"]]), "detail")
    assert not detail.exception
    body = texts(detail)
    assert "Keras autolog" in body and "accuracy as train\\_acc" in body and "confusion_test.json" in body

"""Every dashboard page driven by streamlit.testing.v1.AppTest against a real store of real runs."""

import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from mlflow.tracking import MlflowClient
from sklearn.metrics import confusion_matrix
from streamlit.testing.v1 import AppTest

from core.comparison import read_predictions
from core.diagnosis import VERDICT, early_stop
from core.schema import Artifact
from dashboard import figures, formats, reader
from dashboard.state import URL_RUNS, Key, rows_key
from dashboard.widgets import COMPARE_SECTIONS, DETAIL_SECTIONS, EACH_RUN, INSPECTOR_SECTIONS
from experiments.run import execute
from tests.helpers import (
    APP,
    PAGES,
    chart_option,
    chart_series,
    charts,
    drawn_ids,
    go,
    on_tab,
    open_app,
    small_config,
    sqlite_uri,
    texts,
    ys,
)


@pytest.fixture(scope="module")
def store(dashboard_store):
    return dashboard_store


def test_runs_page_lists_every_run_with_best_epoch_columns(store):
    client, ids = store
    at = open_app(**{Key.RUNS_COLUMNS: ["best_val_acc", "best_epoch", "diagnosis", "params_total", "status"]})
    assert not at.exception
    table = at.dataframe[0].value
    assert set(ids.values()) - {ids["deleted"]} <= set(at.session_state[rows_key(Key.RUNS_TABLE)]) | {ids["deleted"]}
    assert {"best_val_acc", "best_epoch", "gap", "diagnosis", "params_total", "test_acc"} <= set(table.columns)
    assert json.loads(at.dataframe[0].proto.columns)["run_name"]["pinned"]  # the name stays in view
    conv = table[table["run_name"] == "conv-conv-small"].iloc[0]
    history = [m.value for m in client.get_metric_history(ids["conv"], "val_acc")]
    assert conv["best_val_acc"] == pytest.approx(100 * max(history))  # the table shows percentages
    assert conv["best_epoch"] == history.index(max(history)) + 1
    percents = pd.concat([table["test_acc"], table["best_val_acc"]]).dropna()
    assert percents.between(0, 100).all() and (percents > 1).any()  # no raw fractions
    assert set(table["status"]) >= {"FINISHED", "FAILED", "RUNNING", "DELETED"}


def test_the_runs_table_opens_best_first_and_orders_by_one_click(store):
    client, ids = store
    at = open_app()
    table = at.dataframe[0].value
    assert list(table.columns[:7]) == [
        "run_name",
        "rank",
        "test_acc",
        "test_acc_margin",
        "verdict",
        "avoidable_bias",
        "gap",
    ]
    assert "params_total" not in table and "start" not in table  # behind the column choice
    ranked = table[table["rank"].str.contains(" of ")]
    assert ranked["rank"].iloc[0].startswith("★ 1 of ") and ranked["test_acc"].is_monotonic_decreasing
    rows = table.set_index(pd.Index(at.session_state[rows_key(Key.RUNS_TABLE)]))
    assert rows.loc[ids["running"], "rank"] == "running 2/3" and rows.loc[ids["failed"], "rank"] == "failed"
    conv = client.get_run(ids["conv"])
    assert rows.loc[ids["conv"], "verdict"] == VERDICT[conv.data.tags["diagnosis"]]  # the words, then the figures
    assert rows.loc[ids["conv"], ["avoidable_bias", "gap"]].tolist() == pytest.approx(
        [100 * conv.data.metrics["avoidable_bias"], 100 * conv.data.metrics["variance"]]
    )
    at.segmented_control(key=Key.RUNS_ORDER).set_value("newest first").run()
    at.multiselect(key=Key.RUNS_COLUMNS).set_value(["start", "gap"]).run()
    table = at.dataframe[0].value
    assert table["start"].is_monotonic_decreasing and "gap" in table
    at.segmented_control(key=Key.RUNS_ORDER).set_value("overfit first").run()
    assert at.dataframe[0].value["gap"].dropna().is_monotonic_decreasing


def percent_columns(at) -> dict[str, pd.Series]:
    """The values drawn in every table column the page formats as a percentage."""
    found = {}
    for table in at.dataframe:
        for name, column in json.loads(table.proto.columns or "{}").items():
            if column.get("type_config", {}).get("format") == formats.PERCENT_FORMAT and name in table.value:
                found[f"{column['label']} ({len(found)})"] = table.value[name].dropna()
    return found


def test_every_pages_tables_draw_accuracies_as_percentages_not_fractions(seeded_store):
    _, groups = seeded_store
    chosen = [*groups["softmax"], *groups["tiny"]]
    checked = {}
    for page in ("runs", "compare", "overfitting", "detail"):
        at = go(open_app(selection=chosen), page)
        checked.update({f"{page}: {name}": values for name, values in percent_columns(at).items()})
    at = open_app(selection=chosen)
    at.toggle(key=Key.GROUP_RUNS).set_value(True).run()
    checked.update({f"grouped: {name}": values for name, values in percent_columns(at).items()})
    accuracies = {name: values for name, values in checked.items() if " acc" in name}
    assert len(accuracies) >= 6 and all(len(values) for values in accuracies.values())
    # every run here is above 10% accuracy: a column of fractions would be at most 1
    assert {name: values.min() for name, values in accuracies.items() if values.min() <= 1} == {}


def test_runs_table_and_inspector_agree_on_every_run(store):
    """Finished, pruned, killed, running, failed, foreign, empty and deleted runs: the Runs table (logged or
    derived numbers) and the Overfitting inspector (derived from the history) say the same."""
    client, ids = store
    at = open_app(
        **{Key.RUNS_COLUMNS: ["status", "best_val_acc", "best_epoch", "after_best", "diagnosis", "epochs", "progress"]}
    )
    table = at.dataframe[0].value.set_index(pd.Index(at.session_state[rows_key(Key.RUNS_TABLE)]))
    assert {"pruned", "killed", "running", "foreign", "conv", "failed"} <= set(ids)
    for role, run_id in ids.items():
        row = table.loc[run_id]
        inspector = go(open_app(selection=[run_id]), "overfitting")
        assert not inspector.exception, role
        shown = {m.label: m.value for m in inspector.metric}
        if pd.isna(row["best_epoch"]):
            assert not shown and "no epoch with train and validation accuracy" in texts(inspector), role
            continue
        assert shown["Best epoch"] == str(int(row["best_epoch"])), role
        assert shown["Best val acc"] == f"{row['best_val_acc']:.2f}%", role
        assert f"**{row['diagnosis'].capitalize()}** at epoch" in texts(inspector), role
        val_acc = pd.Series({m.step: m.value for m in client.get_metric_history(run_id, "val_acc")})
        assert row["after_best"] == early_stop(val_acc, val_acc * 0).epochs_saved, role  # what stopping would save
    assert table.loc[ids["pruned"], "epochs"] == 1 and table.loc[ids["pruned"], "status"] == "FINISHED"
    assert table.loc[ids["killed"], "epochs"] == 2 and table.loc[ids["running"], "status"] == "RUNNING"
    assert table.loc[ids["running"], "diagnosis"] and table.loc[ids["foreign"], "diagnosis"]  # derived, not blank
    assert pd.isna(table.loc[ids["conv"], "progress"]) and table.loc[ids["running"], "progress"] == pytest.approx(2 / 3)


def test_runs_filters_narrow_the_table(store):
    at = open_app()
    at.multiselect(key=Key.FILTER_MODEL).set_value(["lenet5"]).run()
    assert list(at.dataframe[0].value["model"]) == ["lenet5"]
    at.text_input(key=Key.FILTER_TEXT).input("TRAIN_SIZE=400").run()  # 500 less the 20% validation
    assert list(at.dataframe[0].value["run_name"]) == []
    assert (
        'No run matches the search: train_size=400 matches no run; train_size is one of "800", typed as written, '
        "e.g. train_size=800."
    ) in texts(at).replace("\\", "")
    at.multiselect(key=Key.FILTER_MODEL).set_value([]).run()
    assert list(at.dataframe[0].value["run_name"]) == ["sr-500"]
    at.text_input(key=Key.FILTER_TEXT).input("train_size<1000 model=softmax-regression epochs>=2").run()
    found = set(at.dataframe[0].value["run_name"])
    assert found >= {"sr-500", "pruned"} and not found & {"sr-2000", "lenet5-small"}  # 1,600 images; lenet5
    at.text_input(key=Key.FILTER_TEXT).input("train_size<1000 model=").run()  # still typing: said, not matched
    assert set(at.dataframe[0].value["run_name"]) >= {"sr-500", "lenet5-small"}
    assert "Left out of the search, as it has no value yet: model=" in texts(at).replace("\\", "")


def ticked_runs(at, table_key: str = Key.RUNS_TABLE) -> set:
    """What the ticked rows of a Runs table stand for: run ids, or tuples of a group's run ids."""
    rows = at.session_state[rows_key(table_key)]
    return {
        tuple(rows[i]) if isinstance(rows[i], list) else rows[i]
        for i in at.session_state[table_key]["selection"]["rows"]
    }


def test_the_runs_tables_ticks_show_the_selection_wherever_it_was_made(store):
    _, ids = store
    at = open_app(selection=[ids["conv"], ids["lenet5"]])
    assert ticked_runs(at) == {ids["conv"], ids["lenet5"]}
    at.multiselect(key=Key.SELECTION).set_value([ids["conv"], ids["lenet5"], ids["numpy"]]).run()  # the sidebar
    assert ticked_runs(at) == {ids["conv"], ids["lenet5"], ids["numpy"]}
    at = go(go(at, "compare"), "runs")
    assert not at.exception and ticked_runs(at) == {ids["conv"], ids["lenet5"], ids["numpy"]}
    at.toggle(key=Key.GROUP_RUNS).set_value(True).run()  # a group row is ticked when all its runs are selected
    assert ticked_runs(at, Key.RUNS_GROUPED) == {(ids["conv"],), (ids["lenet5"],), (ids["numpy"],)}


def test_a_group_row_is_ticked_only_when_all_its_runs_are_selected(seeded_store):
    _, groups = seeded_store
    at = open_app(selection=groups["softmax"][:1] + groups["tiny"])
    at.toggle(key=Key.GROUP_RUNS).set_value(True).run()
    assert {frozenset(row) for row in ticked_runs(at, Key.RUNS_GROUPED)} == {frozenset(groups["tiny"])}
    told = json.loads(at.dataframe[0].proto.selection_state)["selection"]["rows"]  # what the browser is sent
    assert told == at.session_state[Key.RUNS_GROUPED]["selection"]["rows"]


def test_selection_carries_across_pages_into_compare(store):
    _, ids = store
    chosen = [ids["lenet5"], ids["conv"], ids["numpy"]]
    at = open_app(selection=chosen)
    at = go(at, "compare")
    assert not at.exception
    assert at.multiselect(key=Key.SELECTION).value == chosen
    names = {s["name"] for s in chart_series(charts(at)[0])}
    assert any("tiny-numpy-small" in n for n in names) and any("conv-conv-small" in n for n in names)
    assert len(charts(at)) == 1  # the curves: the tabs below draw only the open one's
    params = on_tab("compare", chosen, COMPARE_SECTIONS[1])
    varying = " ".join(map(str, params.dataframe[-1].value.index))  # the params table, one row per run
    assert "conv-conv-small" in varying and "tiny-numpy-small" in varying
    assert [c.proto.id.endswith(Key.PARALLEL_CHART) for c in charts(params)] == [False, True]
    steps = on_tab("compare", chosen, COMPARE_SECTIONS[2])
    assert drawn_ids(charts(steps)[1]) == set(chosen)


def test_the_runs_page_opens_compare_on_the_selection(store):
    _, ids = store
    at = open_app(selection=[ids["lenet5"], ids["conv"]])
    at.button(key=Key.COMPARE_SELECTED).click().run()
    assert not at.exception and "Compare runs" in [t.value for t in at.title]
    assert at.multiselect(key=Key.SELECTION).value == [ids["lenet5"], ids["conv"]]


def test_compare_draws_curves_against_training_time_and_measures_runs_against_a_baseline(store):
    client, ids = store
    chosen = [ids["lenet5"], ids["conv"]]
    at = go(open_app(selection=chosen), "compare")
    final = next(frame.value for frame in at.dataframe if "best at" in frame.value)
    assert final["best at"].str.contains("test acc").sum() >= 1  # the better run says so
    at.selectbox(key=Key.COMPARE_X).set_value("training time").run()
    at.toggle(key=Key.COMPARE_LOG_LOSS).set_value(True).run()
    at.selectbox(key=Key.COMPARE_BASELINE).set_value(ids["lenet5"]).run()
    assert not at.exception
    option = chart_option(charts(at)[0])
    assert option["xAxis"][0]["name"] == "training time (s)" and option["yAxis"][0]["type"] == "log"
    seconds = np.cumsum([m.value for m in client.get_metric_history(ids["conv"], "epoch_seconds")])
    val_acc = next(s for s in option["series"] if s.get("id") == f"{ids['conv']}/val_acc")
    assert [point[0] for point in val_acc["data"]] == pytest.approx(list(seconds))
    final = next(frame.value for frame in at.dataframe if "test acc vs baseline" in frame.value)
    runs = {ids[k]: client.get_run(ids[k]).data.metrics["test_acc"] for k in ("lenet5", "conv")}
    assert list(final["test acc vs baseline"]) == pytest.approx([0.0, 100 * (runs[ids["conv"]] - runs[ids["lenet5"]])])
    at.session_state[Key.COMPARE_SECTION] = COMPARE_SECTIONS[1]  # the params tab: the baseline there too
    at.run()
    parallel = chart_series(next(c for c in charts(at) if c.proto.id.endswith(Key.PARALLEL_CHART)))
    assert parallel[-1]["name"] == "baseline" and parallel[-1]["lineStyle"]["color"] == figures.BASELINE_COLOR
    assert parallel[-1]["z"] > parallel[0].get("z", 2)  # on top
    assert 100 * runs[ids["lenet5"]] == pytest.approx(parallel[-1]["data"][0][-1])  # its test accuracy, in percent
    at.selectbox(key=Key.COMPARE_X).set_value("epoch").run()
    at.selectbox(key=Key.COMPARE_CURVES).set_value("calibration").run()  # the user picks the metric
    ece = next(s for s in chart_series(charts(at)[0]) if s.get("id") == f"{ids['conv']}/val_ece")
    assert "val ece" in ece["tooltip"]["valueFormatter"] and ece["yAxisIndex"] == 1
    expected = [100 * m.value for m in client.get_metric_history(ids["conv"], "val_ece")]
    assert ys(ece) == pytest.approx(expected, abs=0.006)  # in percent, to the tables' 2 decimals


def test_compare_opened_with_nothing_selected_compares_the_configurations_trained_over_seeds(seeded_store):
    _, groups = seeded_store
    at = go(open_app(), "compare")
    assert not at.exception and "Nothing is selected" in texts(at) and "Select 2 to" not in texts(at)
    assert len(drawn_ids(charts(at)[0])) == 2  # two bands, one per configuration
    assert {at.selectbox(key=Key.BETTER_A).value, at.selectbox(key=Key.BETTER_B).value} == {
        option for option in at.selectbox(key=Key.BETTER_A).options if "runs over seeds" in option
    }
    assert at.session_state[Key.SELECTION] == []  # shown, not selected
    at.multiselect(key=Key.SELECTION).set_value(groups["softmax"][:2]).run()  # the user's own runs: one line each
    assert at.selectbox(key=Key.COMPARE_GROUP_BY).value == EACH_RUN and "Nothing is selected" not in texts(at)


def test_compare_asks_for_two_runs(store):
    _, ids = store
    at = go(open_app(selection=[ids["conv"]]), "compare")
    assert not at.exception and "Select 2 to 50 runs" in texts(at)


def test_overfitting_inspector_shows_gap_bias_variance_diagnosis_and_data_size(store):
    _, ids = store
    charted = INSPECTOR_SECTIONS[:4]  # Next experiments: tests/test_advice.py
    sections = {section: on_tab("overfitting", [ids["conv"], ids["foreign"]], section) for section in charted}
    assert not any(at.exception for at in sections.values())
    body = texts(sections[INSPECTOR_SECTIONS[0]])
    assert "Rule: avoidable bias" in body
    assert re.search(r"\d+ runs of seed \d+: error against training-set size", texts(sections[INSPECTOR_SECTIONS[3]]))
    # Each tab draws its own charts only. conv: gap and bias/variance, calibration and reliability, the two
    # per-class heatmaps; the foreign run (bias/variance derived from its accuracies, no loss or artifacts): gap and
    # bias/variance; the store's data-size curve.
    assert [len(charts(at)) for at in sections.values()] == [2 + 2, 2, 2, 1]
    client, _ = store
    val = pd.Series({m.step: m.value for m in client.get_metric_history(ids["conv"], "val_acc")})
    seconds = pd.Series({m.step: m.value for m in client.get_metric_history(ids["conv"], "epoch_seconds")})
    best = int(val.idxmax())
    after = seconds[seconds.index > best].sum()
    said = body.replace("\\", "")
    if best < len(val):
        assert f"Stopping at the best epoch ({best}) would have saved {len(val) - best} epoch" in said
        assert formats.duration(after) + " of training" in said
    else:
        assert f"The best epoch ({best}) is the last one trained: stopping earlier would have saved nothing" in said


def test_run_detail_shows_confusion_layers_per_class_and_download(store):
    _, ids = store
    parts = {part: on_tab("detail", [ids["conv"], ids["lenet5"]], part) for part in DETAIL_SECTIONS}
    assert not any(at.exception for at in parts.values())
    assert "Layers" in texts(parts["Per class and layers"]) and "Per-class test accuracy" in texts(
        parts["Per class and layers"]
    )
    # Each tab draws its own charts only: the curves and the confusion matrix; the difference between the first and
    # last epoch; the difference with the other run; the per-class accuracy.
    assert [len(charts(at)) for at in parts.values()] == [2, 1, 1, 1]
    at = parts["Curves and confusion"]
    assert at.select_slider(key=Key.CONFUSION_SOURCE).options[-1] == "test" and at.get("download_button")
    at.select_slider(key=Key.CONFUSION_SOURCE).set_value(1).run()
    assert not at.exception and "Validation set after epoch 1" in texts(at)


def test_run_detail_opens_with_the_runs_summary_and_its_own_curves(store):
    client, ids = store
    at = go(open_app(selection=[ids["conv"]]), "detail")
    run = client.get_run(ids["conv"])
    tiles = {m.label: m.value for m in at.metric}
    assert tiles["Status"] == "FINISHED" and tiles["Test accuracy"] == f"{run.data.metrics['test_acc']:.2%}"
    assert tiles["Parameters"] == f"{int(run.data.metrics['params_total']):,}"
    assert f"**Diagnosis:** {run.data.tags['diagnosis']}" in texts(at).replace("\\", "")
    curves = chart_series(charts(at)[0])
    val_acc = [100 * m.value for m in client.get_metric_history(ids["conv"], "val_acc")]
    assert any(ys(line) == pytest.approx(val_acc, abs=0.006) for line in curves)  # every logged epoch, as logged


def test_a_cell_of_the_difference_between_two_epochs_shows_the_validation_images_that_moved(store, tmp_path):
    client, ids = store
    run_id = ids["conv"]
    load = lambda name: json.loads(Path(client.download_artifacts(run_id, name, str(tmp_path))).read_text())  # noqa: E731
    val, predictions = load("val_images.json"), load("val_predictions_epochs.json")
    labels, first, last = (
        np.array(a) for a in (val["labels"], predictions["predicted"][0], predictions["predicted"][-1])
    )
    matrices = load("confusion_val_epochs.json")["matrices"]
    for epoch, predicted in zip(predictions["epochs"], predictions["predicted"], strict=True):  # one record, two views
        assert (confusion_matrix(labels, predicted, labels=range(10)) == matrices[epoch - 1]).all()
    true = int(np.argmax(np.bincount(labels[first != last], minlength=10)))  # the class whose predictions moved most
    pred = true  # the diagonal: images that became right, and images that became wrong
    at = open_app(
        selection=[run_id], **{Key.MOVED_CELL: (run_id, true, pred), Key.DETAIL_SECTION: "Between two epochs"}
    )
    at = go(at, "detail")
    assert not at.exception
    into = int(((labels == true) & (last == true) & (first != true)).sum())
    out_of = int(((labels == true) & (first == true) & (last != true)).sum())
    assert into + out_of > 0
    assert f"{into} moved in, {out_of} moved out between epoch 1 and epoch {predictions['epochs'][-1]}" in texts(at)
    shown = [image for image in at.get("image") if any(" was " in c or " now " in c for c in image.captions)]
    assert sum(len(image.captions) for image in shown) == min(into, 40) + min(out_of, 40)


def test_a_running_runs_growing_artifacts_are_read_again(store, tmp_path, monkeypatch):
    """The inspector of a RUNNING run sees the epoch its runner logs next, once the cache's interval has passed."""

    client, ids = store
    run_id = ids["running"]
    at = on_tab("overfitting", [run_id], "Calibration")
    slider = at.select_slider(key=Key.per_run("reliability_epoch", run_id))
    assert slider.options == ["1", "2"]
    path = client.download_artifacts(run_id, Artifact.RELIABILITY_VAL_EPOCHS, str(tmp_path))
    logged = json.loads(Path(path).read_text())
    grown = {**logged, **{key: [*logged[key], logged[key][-1]] for key in logged if key != "class_names"}}
    client.log_text(run_id, json.dumps({**grown, "epochs": [1, 2, 3]}), Artifact.RELIABILITY_VAL_EPOCHS)
    try:
        monkeypatch.setattr(reader, "CACHE_SECONDS", 1e-6)  # the interval has passed at every read
        at.run()
        assert not at.exception
        assert at.select_slider(key=Key.per_run("reliability_epoch", run_id)).options == ["1", "2", "3"]
    finally:
        client.log_text(run_id, json.dumps(logged), Artifact.RELIABILITY_VAL_EPOCHS)


def test_clicked_confusion_cell_shows_its_misclassified_images(store, tmp_path):
    client, ids = store
    at = go(open_app(selection=[ids["conv"]]), "detail")
    true, pred = at.session_state[rows_key(Key.CELLS_TABLE)][0]  # the most frequent confusion
    matrix = json.loads(Path(client.download_artifacts(ids["conv"], "confusion_test.json", str(tmp_path))).read_text())[
        "matrix"
    ]
    at.session_state[Key.GALLERY_CELL] = (ids["conv"], true, pred)
    at.run()
    assert not at.exception
    assert f"Test images of true {true}, predicted {pred}" in texts(at)
    gallery = at.get("image")[0]
    assert len(gallery.captions) == min(matrix[true][pred], 40)
    assert all(f"→{pred}" in caption for caption in gallery.captions)


def test_the_chosen_cell_belongs_to_its_run_and_the_gallery_shows_the_split_and_epoch_of_the_matrix(store, tmp_path):
    client, ids = store
    at = go(open_app(selection=[ids["conv"], ids["lenet5"]]), "detail")  # shows the first selected run
    at.session_state[Key.GALLERY_CELL] = (ids["lenet5"], 4, 9)  # chosen while another run was shown
    at.run()
    assert not at.exception and not at.get("image") and "Click a cell of the matrix" in texts(at)
    per_epoch = json.loads(
        Path(client.download_artifacts(ids["conv"], Artifact.CONFUSION_VAL_EPOCHS, str(tmp_path))).read_text()
    )
    matrix = np.array(per_epoch["matrices"][0]) * (1 - np.eye(10, dtype=int))  # epoch 1's confusions
    true, pred = np.unravel_index(matrix.argmax(), matrix.shape)
    at.session_state[Key.GALLERY_CELL] = (ids["conv"], int(true), int(pred))
    at.select_slider(key=Key.CONFUSION_SOURCE).set_value(1).run()
    assert not at.exception
    assert f"Validation images of true {true}, predicted {pred} after epoch 1" in texts(at)
    assert f"{matrix[true, pred]} images" in texts(at)  # as many as the validation matrix counts in the cell
    assert len(at.get("image")[0].captions) == min(matrix[true, pred], 40)


@pytest.mark.parametrize(
    "role, message",
    [
        ("failed", "This run ended FAILED: diverged"),
        ("foreign", "This run has no confusion matrix artifacts"),
        ("empty", "This run has no metrics yet"),
        ("deleted", "This run is deleted"),
    ],
)
def test_broken_runs_show_messages_not_tracebacks(store, role, message):
    _, ids = store
    at = go(open_app(selection=[ids[role]]), "detail")
    assert not at.exception
    assert message in texts(at)


def test_empty_store_is_a_message_on_every_page(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    at = open_app()
    for page in PAGES:
        at = go(at, page)
        assert not at.exception
        assert "No runs in the tracking store" in texts(at)


@pytest.mark.parametrize("kind", ["unreachable server", "corrupt SQLite file"])
def test_a_store_that_cannot_be_read_is_an_error_box_on_every_page(tmp_path, monkeypatch, kind):
    """MLflow's own client would retry an unreachable server for minutes: the read layer probes it first."""
    corrupt = tmp_path / "mlflow.db"
    corrupt.write_text("not a database")
    uri = "http://127.0.0.1:9" if kind == "unreachable server" else f"sqlite:///{corrupt}"  # 9: discard port
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    at = open_app()
    for page in PAGES:
        at = go(at, page)
        assert not at.exception, page
        assert f"cannot read the tracking store at {uri}" in " ".join(e.value for e in at.error), page


def test_the_gallery_shows_images_of_a_run_on_your_own_data_after_its_folder_is_gone(mnist_dir, tmp_path, monkeypatch):
    """The trainer's folder is another machine's path on a shared server: such a run keeps its own thumbnails."""

    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_uri(tmp_path / "store"))
    client = MlflowClient(sqlite_uri(tmp_path / "store"))
    own = tmp_path / "my-mnist"
    shutil.copytree(mnist_dir, own)
    run_id = execute(small_config("softmax-regression", epochs=1, data_dir=str(own), run_name="own-data")).run_id
    shutil.rmtree(own)
    wrong = json.loads(Path(client.download_artifacts(run_id, "confusion_test.json", str(tmp_path))).read_text())[
        "matrix"
    ]
    true, pred = max((wrong[t][p], t, p) for t in range(10) for p in range(10) if t != p)[1:]
    at = go(open_app(selection=[run_id]), "detail")
    at.session_state[Key.GALLERY_CELL] = (run_id, true, pred)
    at.run()
    assert not at.exception
    gallery = at.get("image")[0]
    assert len(gallery.captions) == min(wrong[true][pred], 40) and not at.warning


def test_grouped_runs_show_one_row_per_config_group_with_mean_and_interval(seeded_store):
    client, groups = seeded_store
    at = open_app()
    at.toggle(key=Key.GROUP_RUNS).set_value(True).run()
    assert not at.exception
    table = at.dataframe[0].value.set_index("group")
    softmax = client.get_run(groups["softmax"][0]).data.tags["config_group"]
    accs = [client.get_run(r).data.metrics["test_acc"] for r in groups["softmax"]]
    row = table.loc[softmax]
    assert row["seeds"] == 3 and row["test_acc_mean"] == pytest.approx(100 * sum(accs) / 3)
    assert row["test_acc_std"] == pytest.approx(100 * pd.Series(accs).std())  # percentage points
    assert "%" in row["test_acc_ci"] and (table["seeds"] <= table["runs"]).all()


def test_compare_draws_bands_over_seeds_and_says_which_group_is_better(seeded_store):
    _, groups = seeded_store
    at = go(open_app(selection=groups["softmax"] + groups["tiny"]), "compare")
    at.selectbox(key=Key.COMPARE_GROUP_BY).set_value("configuration").run()
    at.toggle(key=Key.COMPARE_MEMBERS).set_value(True).run()
    assert not at.exception
    curves = chart_series(charts(at)[0])
    legend = {s["name"] for s in curves}
    assert any("softmax-regression" in n and "N=3" in n for n in legend) and any("N=2" in n for n in legend)
    assert any("areaStyle" in s for s in curves)  # the 95% bands
    options = at.selectbox(key=Key.BETTER_A).options
    assert options[0].startswith("softmax-regression [") and "3 runs over seeds" in options[0]
    assert options[1].startswith("tiny [") and "2 runs over seeds" in options[1]
    sentence = texts(at)
    assert "Welch's t test over seeds" in sentence and ("beats" in sentence or "no detectable difference" in sentence)


def test_which_is_better_starts_on_two_groups_of_seeds_or_on_two_runs_of_different_configurations(seeded_store):
    _, groups = seeded_store
    softmax, tiny = groups["softmax"], groups["tiny"]
    at = go(open_app(selection=softmax[:2] + tiny), "compare")
    sides = at.selectbox(key=Key.BETTER_A), at.selectbox(key=Key.BETTER_B)
    assert [side.value.split(" [")[0] for side in sides] == ["softmax-regression", "tiny"]  # two groups of seeds
    assert all("runs over seeds" in side.value for side in sides)
    at.multiselect(key=Key.SELECTION).set_value(softmax[:2] + tiny[:1]).run()  # one tiny seed: runs, not groups
    a, b = at.selectbox(key=Key.BETTER_A).value, at.selectbox(key=Key.BETTER_B).value
    assert softmax[0][:8] in a and tiny[0][:8] in b  # not softmax's second seed, nor the groups chosen before
    assert not at.exception and "Pick two different" not in texts(at)


def test_two_runs_are_compared_image_by_image_with_their_flipped_examples(seeded_store):
    client, groups = seeded_store
    a, b = groups["softmax"][0], groups["tiny"][0]
    at = go(open_app(selection=[a, b]), "compare")  # one seed of each group: the two runs, not their groups
    assert a[:8] in at.selectbox(key=Key.BETTER_A).value and b[:8] in at.selectbox(key=Key.BETTER_B).value
    assert not at.exception
    body = texts(at)
    assert "exact McNemar test" in body and "on the same 500 test images" in body

    pa, pb = read_predictions(client, a), read_predictions(client, b)
    only_a = int(((pa["predicted"] == pa["label"]) & (pb["predicted"] != pb["label"])).sum())
    assert f"{only_a} images right only in" in body
    shown = sum(len(image.captions) for image in at.get("image"))
    only_b = int(((pb["predicted"] == pb["label"]) & (pa["predicted"] != pa["label"])).sum())
    assert shown == min(only_a, 24) + min(only_b, 24) and shown > 0
    at.selectbox(key=Key.COMPARE_GROUP_BY).set_value("configuration").run()
    assert "draws 1 of its 3 runs" in texts(at) and "draws 1 of its 2 runs" in texts(at)


def test_the_runs_page_opens_the_configurations_trained_over_seeds_in_compare(seeded_store):
    _, groups = seeded_store
    at = open_app()
    at.button(key=Key.STORY_COMPARE).click().run()
    assert not at.exception and at.title[0].value == "Compare runs"
    assert set(at.session_state[Key.SELECTION]) == set(groups["softmax"] + groups["tiny"])
    assert at.selectbox(key=Key.COMPARE_GROUP_BY).value == "configuration"


def test_compare_over_seeds_draws_bands_after_an_earlier_visit_to_compare(seeded_store):
    """Compare opened with nothing selected draws its story as bands; the Runs page's button must still give bands
    afterwards (it drew one line per run: the story's grouping was taken back as the button's)."""
    at = go(open_app(), "compare")
    assert at.selectbox(key=Key.COMPARE_GROUP_BY).value == "configuration"  # the story, as bands
    at = go(at, "runs")
    at.button(key=Key.STORY_COMPARE).click().run()
    assert at.title[0].value == "Compare runs" and at.selectbox(key=Key.COMPARE_GROUP_BY).value == "configuration"
    assert "seed" not in at.selectbox(key=Key.COMPARE_GROUP_BY).options  # a band per seed mixes configurations


def test_the_address_keeps_the_selection_on_a_page_that_cannot_read_the_store(monkeypatch):
    """A page switch from the sidebar drops the query: the selection goes back into the address before the page
    reads the store, so a reload after an outage (or during a slow read) opens the same runs."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # 9: discard port, nothing answers
    at = open_app(selection=["a" * 32, "b" * 32])
    assert at.error and not at.multiselect  # the page stopped before it drew the selection
    assert at.query_params[URL_RUNS] == "aaaaaaaa,bbbbbbbb"


def test_the_inspector_shows_the_validation_images_a_class_lost_on_the_set_it_judges_classes_on(store, tmp_path):
    client, ids = store
    run_id = ids["conv"]
    val, predictions = (
        json.loads(Path(client.download_artifacts(run_id, name, str(tmp_path))).read_text())
        for name in (Artifact.VAL_IMAGES, Artifact.VAL_PREDICTIONS_EPOCHS)
    )
    last = predictions["predicted"][-1]
    wrong = [t for t, p in zip(val["labels"], last, strict=True) if t != p]
    label = max(set(wrong), key=wrong.count)  # the class with the most validation mistakes
    at = on_tab("overfitting", [run_id], "Per class")
    choice = at.selectbox(key=Key.per_run("class_images", run_id))
    assert choice.label.startswith("Misclassified validation images after the last epoch")
    choice.set_value(label).run()
    assert not at.exception
    captions = at.get("image")[0].captions
    assert len(captions) == min(wrong.count(label), 24) and all(f" {label}→" in c for c in captions)


def test_a_data_size_series_of_another_model_says_it_is_not_the_inspected_ones(tmp_path, monkeypatch, mnist_dir):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_uri(tmp_path))
    sizes = [execute(small_config("softmax-regression", epochs=1, train_size=n)).run_id for n in (300, 600)]
    other = execute(small_config("tiny", epochs=1, train_size=300)).run_id
    shown = texts(on_tab("overfitting", [other], "More data and capacity")).replace("\\", "")
    assert "Another model than the one inspected (tiny on mnist)" in shown
    same = texts(on_tab("overfitting", [sizes[0]], "More data and capacity")).replace("\\", "")
    assert "**softmax-regression** on mnist, 2 runs" in same and "Another model than the one inspected" not in same


def test_a_link_to_runs_the_store_does_not_have_says_so(store):
    _, ids = store
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params[URL_RUNS] = f"garbage,{ids['conv'][:8]}"
    at.run()
    warned = " ".join(w.value for w in at.warning).replace("\\", "")
    assert "The link names 1 run this store does not have" in warned and "garbage" in warned
    assert at.session_state[Key.SELECTION] == [ids["conv"]]  # the run it did find stays selected


def test_live_refresh_paces_itself_by_how_long_the_store_takes_to_read(store, monkeypatch):
    """With a run RUNNING, the Runs page refreshes every 5 s; a store that takes 3 s to read (a team server with
    10,000 runs takes about 20 s) is re-read no sooner than three times that."""

    def refresh_seconds(at) -> int:
        said = next(c.value for c in at.caption if c.value.startswith("Live: refreshing every"))
        return int(re.search(r"every (\d+) s", said).group(1))

    st.cache_data.clear()
    quick = refresh_seconds(open_app())  # 5, unless this small store took over 1.7 s to read on a loaded machine
    read = reader.read_snapshot

    def slow_read(client, before, experiments):
        time.sleep(3)
        return read(client, before, experiments)

    monkeypatch.setattr(reader, "read_snapshot", slow_read)
    st.cache_data.clear()
    slow = refresh_seconds(open_app())
    assert quick < slow and slow >= 9
    st.cache_data.clear()


def test_a_dashboard_without_the_dataset_says_how_to_fetch_it_then_shows_the_images(
    dashboard_store, tmp_path, monkeypatch
):
    """A machine that only serves the dashboard has no dataset cache until `python -m experiments data` runs there:
    the gallery says so (not "another copy of the dataset"), and shows the images once the cache is there."""
    client, ids = dashboard_store
    run_id = ids["lenet5"]
    wrong = json.loads(Path(client.download_artifacts(run_id, "confusion_test.json", str(tmp_path))).read_text())
    true, pred = max((wrong["matrix"][t][p], t, p) for t in range(10) for p in range(10) if t != p)[1:]
    monkeypatch.setenv("CNN_DATA_CACHE", str(tmp_path / "empty-cache"))
    st.cache_data.clear()
    at = go(open_app(selection=[run_id]), "detail")
    at.session_state[Key.GALLERY_CELL] = (run_id, true, pred)
    at.run()
    assert not at.exception and not at.get("image")
    assert "`python -m experiments data` fetches it" in at.warning[0].value
    monkeypatch.undo()  # the machine's own cache again
    at.run()
    assert not at.warning and at.get("image")

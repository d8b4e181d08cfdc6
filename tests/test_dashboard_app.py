"""Every dashboard page driven by streamlit.testing.v1.AppTest against a real store of real runs."""
import json

import pytest
from streamlit.testing.v1 import AppTest

from experiments.tracking import REPO_ROOT

APP = str(REPO_ROOT / "dashboard" / "app.py")
PAGES = {"runs": "views/runs.py", "compare": "views/compare.py", "overfitting": "views/overfitting.py",
         "detail": "views/detail.py"}


def open_app(selection=(), **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["selection"] = list(selection)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def go(at: AppTest, page: str) -> AppTest:
    return at.switch_page(PAGES[page]).run()


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "error", "title", "subheader")
             for e in getattr(at, kind)]
    return "\n".join(map(str, parts))


def plotly_charts(at: AppTest) -> list:
    return at.get("plotly_chart")


@pytest.fixture(scope="module")
def store(dashboard_store):
    return dashboard_store


def test_runs_page_lists_every_run_with_best_epoch_columns(store):
    client, ids = store
    at = open_app()
    assert not at.exception
    table = at.dataframe[0].value
    assert set(ids.values()) - {ids["deleted"]} <= set(at.session_state["shown_run_ids"]) | {ids["deleted"]}
    assert {"best_val_acc", "best_epoch", "gap", "diagnosis", "params_total", "test_acc"} <= set(table.columns)
    conv = table[table["run_name"] == "conv-conv-small"].iloc[0]
    history = [m.value for m in client.get_metric_history(ids["conv"], "val_acc")]
    assert conv["best_val_acc"] == max(history) and conv["best_epoch"] == history.index(max(history)) + 1
    assert set(table["status"]) >= {"FINISHED", "FAILED", "RUNNING", "DELETED"}


def test_runs_filters_narrow_the_table(store):
    at = open_app()
    at.multiselect(key="filter_model").set_value(["lenet5"]).run()
    assert list(at.dataframe[0].value["model"]) == ["lenet5"]
    at.text_input(key="filter_text").input("TRAIN_SIZE=400").run()  # 500 less the 20% validation
    assert list(at.dataframe[0].value["run_name"]) == []
    at.multiselect(key="filter_model").set_value([]).run()
    assert list(at.dataframe[0].value["run_name"]) == ["sr-500"]


def test_selection_carries_across_pages_into_compare(store):
    _, ids = store
    chosen = [ids["lenet5"], ids["conv"], ids["numpy"]]
    at = open_app(selection=chosen)
    at = go(at, "compare")
    assert not at.exception
    assert at.multiselect(key="selection").value == chosen
    curves = plotly_charts(at)[0]
    assert curves is not None
    names = {t["name"] for t in json.loads(curves.proto.spec)["data"]}
    assert any("tiny-numpy-small" in n for n in names) and any("conv-conv-small" in n for n in names)
    assert "Params that differ" in texts(at)
    assert len(plotly_charts(at)) == 2  # curves and parallel coordinates


def test_compare_asks_for_two_runs(store):
    _, ids = store
    at = go(open_app(selection=[ids["conv"]]), "compare")
    assert not at.exception and "Select 2 to 50 runs" in texts(at)


def test_overfitting_inspector_shows_gap_bias_variance_diagnosis_and_data_size(store):
    _, ids = store
    at = go(open_app(selection=[ids["conv"], ids["foreign"]]), "overfitting")
    assert not at.exception
    body = texts(at)
    assert "Rule: avoidable bias" in body and "error against training-set size" in body
    # conv and the foreign run (bias/variance derived from its accuracies): gap + bias/variance; data-size curve
    assert len(plotly_charts(at)) == 2 + 2 + 1


def test_run_detail_shows_confusion_layers_per_class_and_download(store):
    _, ids = store
    at = go(open_app(selection=[ids["conv"], ids["lenet5"]]), "detail")
    assert not at.exception
    assert at.select_slider(key="confusion_source").options[-1] == "test"
    assert "Layers" in texts(at) and "Per-class test accuracy" in texts(at)
    assert len(plotly_charts(at)) == 3  # confusion, difference with the other run, per-class accuracy
    assert at.get("download_button")
    at.select_slider(key="confusion_source").set_value(1).run()
    assert not at.exception and "Validation set after epoch 1" in texts(at)


def test_clicked_confusion_cell_shows_its_misclassified_images(store):
    client, ids = store
    at = go(open_app(selection=[ids["conv"]]), "detail")
    cells = at.session_state["cells_frame"]
    true, pred = int(cells.iloc[0]["true"]), int(cells.iloc[0]["predicted"])
    at.session_state["gallery_cell"] = (true, pred)
    at.run()
    assert not at.exception
    assert f"Test images of true {true}, predicted {pred}" in texts(at)
    gallery = at.get("image")[0]
    assert len(gallery.captions) == min(int(cells.iloc[0]["count"]), 40)
    assert all(f"→{pred}" in caption for caption in gallery.captions)


@pytest.mark.parametrize("role, message", [
    ("failed", "This run ended FAILED: diverged"),
    ("foreign", "This run has no confusion matrix artifacts"),
    ("empty", "This run has no metrics yet"),
    ("deleted", "This run is deleted"),
])
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


def test_unreachable_store_is_a_message(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    at = open_app()
    assert not at.exception
    assert "cannot read the tracking store at http://127.0.0.1:9" in texts(at)

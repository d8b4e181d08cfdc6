"""Runs written by other tools, with gaps, NaN, huge steps, unicode and HTML: every page shows what it can,
no traceback, and nothing from run data is rendered as HTML or markdown (AppTest and headless Chromium)."""

import math
import shutil

import pytest
import streamlit as st
from mlflow.entities import Metric as MlflowMetric
from mlflow.entities import Param as MlflowParam
from mlflow.tracking import MlflowClient

from experiments.config import RunConfig
from experiments.run import execute
from tests.helpers import go, needs_chromium, open_app, start_server, texts

HOSTILE_NAME = '<img src=x onerror="window.__xss=1"> ünïcødé 🚀 **bold** [link](javascript:alert(1))'


# The tests share the module fixture `hostile_store`, which trains: one worker builds it once and runs them all.
pytestmark = pytest.mark.xdist_group("dashboard_hostile-module")


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory, mnist_dir):

    folder = tmp_path_factory.mktemp("hostile")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        ours = execute(
            RunConfig.from_recipe(
                "softmax-regression",
                epochs=2,
                train_size=500,
                test_size=200,
                val_split=0.2,
                progress=False,
                run_name="ours",
            )
        ).run_id
        client = MlflowClient(uri)
        experiment = client.create_experiment("other tool <b>exp</b>")
        foreign = client.create_run(experiment, run_name=HOSTILE_NAME).info.run_id
        points = [
            ("val_acc", 0.5, 1),
            ("val_acc", math.nan, 3),
            ("val_acc", 0.7, 7),
            ("train_acc", 0.6, 1),
            ("train_acc", 0.9, 10**12),
            ("train_loss", math.inf, 2),
            ("val_loss", -math.inf, 2),
        ]
        client.log_batch(
            foreign,
            metrics=[MlflowMetric(k, v, 0, s) for k, v, s in points],
            params=[MlflowParam("lr", "<script>alert(1)</script>"), MlflowParam("optimizer", "ädam")],
        )
        client.set_terminated(foreign)
        yield uri, {"ours": ours, "foreign": foreign}


@pytest.mark.parametrize("page", ["runs", "compare", "overfitting", "detail"])
def test_every_page_copes_with_foreign_runs(hostile_store, monkeypatch, page):
    uri, ids = hostile_store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    at = go(open_app(selection=[ids["foreign"], ids["ours"]]), page)
    assert not at.exception
    rendered = texts(at)
    assert "<img" not in rendered.replace("\\<img", "")  # any '<' from run data reaches markdown escaped
    assert "](javascript" not in rendered


@needs_chromium
def test_no_html_from_run_data_runs_in_the_browser(hostile_store, page):
    uri, ids = hostile_store
    with start_server(uri) as url:
        page.goto(url)
        page.get_by_text("runs shown").wait_for(timeout=60_000)
        box = page.locator('[data-testid="stSidebar"] [data-testid="stMultiSelect"] input')
        box.click()
        page.keyboard.type("ünïcødé")
        page.keyboard.press("Enter")
        page.keyboard.press("Escape")
        page.get_by_text("1 selected").wait_for(timeout=30_000)
        for link in ("Overfitting inspector", "Run detail", "Compare"):
            page.locator('[data-testid="stSidebarNav"]').get_by_text(link, exact=True).click()
            page.get_by_role("heading", name=link.split()[0], exact=False).first.wait_for(timeout=60_000)
            page.wait_for_timeout(1500)
            assert page.evaluate("window.__xss") is None
            assert page.locator('img[src="x"]').count() == 0
            assert page.locator('a[href^="javascript"]').count() == 0
            assert page.locator('[data-testid="stException"]').count() == 0


def test_a_moved_store_a_deleted_artifacts_folder_and_a_corrupt_artifact_are_each_named(
    mnist_dir, tmp_path, monkeypatch
):
    """The database keeps absolute artifact locations: a copied or moved mlruns/ must not show artifacts as
    silently missing, and a corrupt file is not 'no artifact (yet)'."""

    def detail_page(folder):
        st.cache_data.clear()
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        at = go(open_app(selection=[run_id]), "detail")
        assert not at.exception
        return at, " ".join(w.value for w in at.warning)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'here' / 'mlflow.db'}")
    run_id = execute(
        RunConfig.from_recipe(
            "softmax-regression", epochs=1, train_size=500, test_size=200, val_split=0.2, progress=False
        )
    ).run_id
    shutil.move(tmp_path / "here", tmp_path / "there")
    at, warned = detail_page(tmp_path / "there")
    assert f"recorded at {tmp_path / 'here'}" in warned and f"they are read from {tmp_path / 'there'}" in warned
    assert at.get("echarts_chart"), "the confusion matrix, read from where the store is now"

    confusion = next((tmp_path / "there" / "artifacts").rglob("confusion_test.json"))
    confusion.write_text('{"class_names": [0, 1], "matr')
    at, warned = detail_page(tmp_path / "there")
    assert "confusion_test.json of this run is corrupt or unreadable (JSONDecodeError" in warned

    shutil.rmtree(tmp_path / "there" / "artifacts")
    at, warned = detail_page(tmp_path / "there")
    assert "which no longer exists: the store was moved or its artifacts folder deleted" in warned

"""Shared fixtures: the real MNIST cache, throwaway MLflow stores, real tracked runs, a headless browser."""

import os
import shutil
import sys

import numpy as np
import pytest
import streamlit as st
import torch
from _pytest.nodeid import NodeId
from mlflow.tracking import MlflowClient
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from core.launches import LAUNCH_DIR_ENV
from experiments.config import RunConfig
from experiments.data import ensure_dataset
from experiments.run import execute
from experiments.run_logger import RunLogger
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, shoot, small_config, sqlite_uri

if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers on two cores: one thread each, for the runs they start too
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# Session fixtures that train or start servers: the tests that share one run on one pytest-xdist worker
# (`--dist loadgroup`), so each is built once per session, not once per worker.
SHARED_FIXTURES = {
    "dashboard_store": "trained-store",
    "seeded_store": "trained-store",
    "conv_conv_run": "trained-store",
    "advised": "advised-store",
    "postgres": "postgres",
    "tracking_server": "postgres",
}
# What makes a test slow (`-m "not slow"` leaves it out): real training, a browser, a server.
SLOW_FIXTURES = {"mnist_dir", "browser", "page", *SHARED_FIXTURES}


def pytest_collection_modifyitems(config, items):
    """Tests marked `long` run first, tests that load Keras last. Once Keras is imported, Streamlit's script
    runner calls keras.backend.clear_session() (a full gc.collect) before every AppTest run: the dashboard tests after
    the first Keras test took 4-8 times longer (measured). The dashboard itself never imports Keras. Under
    pytest-xdist each worker runs its share in this order, so no unmarked test runs after a Keras one there either.

    Also marks the slow tests and groups those that share an expensive session fixture (SHARED_FIXTURES)."""
    items.sort(key=lambda item: (item.get_closest_marker("keras") is not None, not item.get_closest_marker("long")))
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        keras = item.get_closest_marker("keras") is not None
        shared = sorted(SHARED_FIXTURES[name] for name in used & SHARED_FIXTURES.keys())
        if keras or used & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)
        if keras or shared:  # Keras tests on one worker, last: they share Keras runs, and Keras slows what follows
            item.add_marker(pytest.mark.xdist_group("keras" if keras else shared[0]))
        if config.getoption("loadgroup", default=False):  # set on the workers of `--dist loadgroup`
            name_the_group(item)


def name_the_group(item) -> None:
    """What pytest-xdist's loadgroup does, for pytest 9: the test's id ends in @GROUP, which sends every test of
    a group to one worker. xdist 3.8 writes the suffix to item._nodeid, which pytest 9.2 no longer reads, so the
    groups were silently ignored: each worker built the shared fixtures again."""
    names = sorted({str(mark.args[0]) for mark in item.iter_markers("xdist_group") if mark.args})
    if names and "@" not in item.nodeid:
        item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(names)}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A browser test that fails leaves a screenshot and puts the page's text into its report, so that a failure
    on CI, where nobody watched the browser, says what the page showed."""
    report = yield
    page = getattr(item, "funcargs", {}).get("page") if report.when == "call" and report.failed else None
    if hasattr(page, "is_closed") and not page.is_closed():  # a Playwright page, not a parameter named page
        try:
            shoot(page, f"failed-{item.name}")
            shown = page.locator("body").inner_text(timeout=10_000)
        except PlaywrightError as err:  # a crashed page: the test's own error says enough
            shown = f"(unreadable: {err})"
        report.sections.append(("the page when the test failed", f"{page.url}\n{shown}"))
    return report


@pytest.fixture(autouse=True)
def keras_only_where_marked(request):
    """Fails an unmarked test that finds Keras loaded: it, or a fixture it uses, imported Keras without the
    `keras` mark (marked tests run last, so no unmarked test runs after one)."""
    yield
    if "keras" in sys.modules and not request.node.get_closest_marker("keras"):
        pytest.fail("this test imports Keras: mark it @pytest.mark.keras so that it runs after the dashboard tests")


@pytest.fixture(scope="session")
def mnist_dir():
    return ensure_dataset("mnist")


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory):
    """An empty store's database, its schema made once: MLflow spends a second migrating each new SQLite store."""
    folder = tmp_path_factory.mktemp("migrated")
    MlflowClient(sqlite_uri(folder)).search_experiments()
    return folder / "mlflow.db"


@pytest.fixture
def store(tmp_path, monkeypatch, migrated_database):
    """An empty embedded MLflow store for one test, also seen by subprocesses through the environment;
    returns a client on it."""
    (tmp_path / "store").mkdir()
    shutil.copy(migrated_database, tmp_path / "store" / "mlflow.db")
    uri = sqlite_uri(tmp_path / "store")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv(LAUNCH_DIR_ENV, str(tmp_path / "launches"))  # advice launched here, not in ~/.cache
    return MlflowClient(uri)


@pytest.fixture(scope="session")
def session_store(tmp_path_factory):
    """An MLflow store shared by the session's fixtures that train for real."""
    folder = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", sqlite_uri(folder))
        yield MlflowClient(sqlite_uri(folder)), patch


@pytest.fixture(scope="session")
def conv_conv_run(session_store, mnist_dir):
    """conv-conv, 2 epochs at batch 64 on the first 10k train images (10% carved for validation),
    tested on the first 2k test images: real MNIST, logged to a real store."""
    client, _ = session_store
    config = RunConfig.from_recipe(
        "conv-conv",
        epochs=2,
        batch_size=64,
        train_size=10_000,
        test_size=2_000,
        val_split=0.1,
        progress=False,
        run_name="conv-conv-test",
    )
    result = execute(config)
    return client, client.get_run(result.run_id), result


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def dashboard_store(session_store, mnist_dir):
    """A real store for the dashboard: short real runs of several models, a data-size pair, a diverged
    (FAILED) run, a run stopped early as a pruner stops it, a run killed after two epochs, a run left
    RUNNING after two epochs (its runner gone, as after SIGKILL), a foreign run with metrics but no schema
    or artifacts, a run with nothing logged, and a deleted run. Returns (client, {role: run_id})."""
    client, _ = session_store
    ids = {}
    for role, config in {
        "lenet5": small_config("lenet5", run_name="lenet5-small"),
        "conv": small_config("conv-conv", epochs=3, batch_size=64, run_name="conv-conv-small"),
        "numpy": small_config("tiny-numpy", batch_size=4, lr=0.02, run_name="tiny-numpy-small"),
        "size_small": small_config("softmax-regression", train_size=500, suite="data-size", run_name="sr-500"),
        "size_large": small_config("softmax-regression", train_size=2000, suite="data-size", run_name="sr-2000"),
    }.items():
        ids[role] = execute(config).run_id
    with pytest.raises(FloatingPointError), np.errstate(all="ignore"):  # it overflows on purpose
        execute(small_config("tiny-numpy", lr=1e9, batch_size=50, run_name="diverged"))
    experiment = client.get_experiment_by_name("cnn-experiments").experiment_id
    ids["failed"] = client.search_runs([experiment], "attributes.run_name = 'diverged'")[0].info.run_id
    foreign = client.create_run(experiment, run_name="<b>foreign</b> run")
    for step, (train, val) in enumerate([(0.5, 0.45), (0.7, 0.6)], start=1):
        client.log_metric(foreign.info.run_id, "train_acc", train, step=step)
        client.log_metric(foreign.info.run_id, "val_acc", val, step=step)
    client.set_terminated(foreign.info.run_id)
    ids["foreign"] = foreign.info.run_id
    ids["empty"] = client.create_run(experiment, run_name="nothing-yet").info.run_id
    deleted = client.create_run(experiment, run_name="deleted-run").info.run_id
    client.set_terminated(deleted)
    client.delete_run(deleted)
    ids["deleted"] = deleted
    ids.update(stopped_runs(client, experiment))
    return client, ids


@pytest.fixture(scope="session")
def seeded_store(dashboard_store):
    """dashboard_store plus two config groups trained over seeds (`repeats`): softmax-regression over 3 seeds and
    tiny over 2, on the same test images. Returns (client, {group name: [run ids]})."""
    client, _ = dashboard_store
    groups = {}
    for name, config in (
        ("softmax", small_config("softmax-regression", repeats=3, run_name="sr-seeds")),
        ("tiny", small_config("tiny", repeats=2, run_name="tiny-seeds")),
    ):
        groups[name] = [execute(replica).run_id for replica in config.replicas()]

    st.cache_data.clear()  # AppTest's pages share this process's cache, which may hold the store's runs without these
    return client, groups


def stopped_runs(client, experiment: str) -> dict:
    """Real runs of 3 planned epochs that stop after the first (pruned) or second (killed, left running)."""

    ids = {
        "pruned": execute(
            small_config("softmax-regression", epochs=3, run_name="pruned"),
            should_stop=lambda record: record.epoch == 1,
        ).run_id
    }

    def interrupt_after_two(record):
        if record.epoch == 2:
            raise KeyboardInterrupt("stopped by the test")
        return False

    for role, keep_running in (("killed", False), ("running", True)):
        with pytest.MonkeyPatch.context() as patch:
            if keep_running:  # nothing ends the run but its heartbeat stops: what SIGKILL leaves behind
                patch.setattr(RunLogger, "finish", lambda self, *args, **kwargs: self.heartbeat.stop())
            with pytest.raises(KeyboardInterrupt):  # an hour's heartbeat: RUNNING, not LOST, for the session
                execute(
                    small_config("softmax-regression", epochs=3, run_name=role, heartbeat=3600),
                    should_stop=interrupt_after_two,
                )
        ids[role] = client.search_runs([experiment], f"attributes.run_name = '{role}'")[0].info.run_id
    return ids


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium driven by Playwright."""

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    page = context.new_page()
    yield page
    context.close()

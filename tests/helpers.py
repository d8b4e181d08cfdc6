"""Helpers shared by the tests (fixtures live in tests/conftest.py): the command line in a subprocess,
small real run configurations, the dashboard under AppTest, and the real dashboard server."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError
from streamlit.testing.v1 import AppTest

from core.store import REPO_ROOT
from dashboard import bulk, figures
from dashboard.state import Key
from experiments import cli as command_line
from experiments.config import RunConfig
from experiments.tracking_server import free_port

APP = str(REPO_ROOT / "dashboard" / "app.py")
PAGES = {
    "runs": "views/runs.py",
    "compare": "views/compare.py",
    "overfitting": "views/overfitting.py",
    "detail": "views/detail.py",
    "sweeps": "views/sweeps.py",
    "advice": "views/advice.py",
}
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SHOTS = REPO_ROOT / "test-output" / "screenshots"
needs_chromium = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="Debian chromium not installed (scripts/setup)"
)


def sqlite_uri(folder) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


def cli(*args, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m experiments ARGS` in a subprocess, to its end; the environment's store unless env says."""
    return subprocess.run(
        [sys.executable, "-m", "experiments", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def cli_in_process(capsys, *args) -> subprocess.CompletedProcess:
    """The command line called in this process, without the seconds a new interpreter takes to import torch and
    MLflow: its exit code and output, as `cli` gives them (for commands that end quickly, e.g. refusals)."""

    try:
        code = command_line.dispatch(list(args))
    except SystemExit as exit:
        code = exit.code
    out = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out.out, out.err)


def cli_process(*args, env: dict | None = None, **options) -> subprocess.Popen:
    """`python -m experiments ARGS` started in the background (to be signalled, or run beside others)."""
    defaults = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.Popen(
        [sys.executable, "-m", "experiments", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        **{**defaults, **options},
    )


def small_config(model: str = "lenet5", **overrides) -> RunConfig:
    """A run of a few seconds on real data."""
    settings = dict(epochs=2, train_size=1000, test_size=500, val_split=0.2, progress=False)
    return RunConfig.from_recipe(model, **{**settings, **overrides})


def all_runs(client) -> list:
    return [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]


def open_app(selection=(), **state) -> AppTest:
    """The dashboard under AppTest on the environment's store, with the given selection and session state."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state[Key.SELECTION] = list(selection)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def go(at: AppTest, page: str) -> AppTest:
    return at.switch_page(PAGES[page]).run()


TAB_KEYS = {"compare": Key.COMPARE_SECTION, "overfitting": Key.INSPECTOR_SECTION, "detail": Key.DETAIL_SECTION}


def on_tab(page: str, selection, section: str) -> AppTest:
    """A page with tabs (Compare, the inspector, Run detail) on the selection, `section` its open tab."""
    return go(open_app(selection=selection, **{TAB_KEYS[page]: section}), page)


def texts(at: AppTest) -> str:
    parts = [
        e.value
        for kind in ("markdown", "caption", "info", "success", "warning", "error", "title", "subheader")
        for e in getattr(at, kind)
    ]
    return "\n".join(map(str, parts))


CHART = '[data-testid="stEChartsChart"]'  # a drawn chart in the browser


def charts(at: AppTest) -> list:
    """The charts a script run drew (st.echarts_chart), in page order."""
    return at.get("echarts_chart")


def chart_option(chart) -> dict:
    return json.loads(chart.proto.spec)


def chart_series(chart) -> list[dict]:
    return chart_option(chart)["series"]


def drawn_ids(chart) -> set[str]:
    """The runs (or groups) a chart draws lines of: its series' ids up to the metric ("run_id/val_acc": run_id)."""
    return {s["id"].rsplit("/", 1)[0] for s in chart_series(chart) if s.get("id")}


def ys(series: dict) -> list:
    return [point[1] for point in series["data"]]


def answers_health(url: str, seconds: float) -> bool:
    """Whether the Streamlit server at url answers its health check within `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return True
        except OSError:
            time.sleep(0.5)
    return False


def listening_addresses(port: int) -> set[str]:
    """Local addresses in LISTEN state on `port`, from /proc/net/tcp and tcp6 (127.0.0.1 is 0100007F)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


@contextmanager
def start_server(uri: str, *extra: str, app: str = APP, log: Path | None = None):
    """The real dashboard (or another Streamlit script) on a free localhost port over the store at `uri`; yields its
    URL. What it prints goes to `log` if given."""
    port = free_port()
    output = open(log, "w") if log else subprocess.PIPE  # noqa: SIM115 (closed with the process, below)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            app,
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
            *extra,
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        if not answers_health(url, 60):
            process.kill()
            printed = log.read_text() if log else process.stdout.read().decode()
            pytest.fail(f"streamlit did not start: {printed[-2000:]}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        if log:
            output.close()


def wait_idle(page, timeout=60_000):
    """Until Streamlit has finished running the script: the app says its script is not running, once a run just
    asked for has had time to start (Streamlit's own end-to-end tests wait the same way), and no 'Running...'
    status widget (which shows only after a run's first 500 ms)."""
    page.wait_for_timeout(250)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=timeout)


def shoot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def click_cell(page, chart_key: str, true: int, predicted: int, classes: int) -> None:
    """Click one cell of a class grid (figures.cell_grid) as a user does: the pointer comes to rest on it, then a
    plain click. The cell's place follows from the chart's size and the grid's margins (figures.MATRIX_GRID)."""
    canvas = page.locator(f".st-key-{chart_key} canvas").first
    for attempt in range(3):  # a rerun that redraws the chart detaches the canvas found a moment before
        try:
            wait_idle(page)
            canvas.scroll_into_view_if_needed(timeout=10_000)
            box = canvas.bounding_box(timeout=10_000)
            break
        except PlaywrightError:
            if attempt == 2:
                raise
            page.wait_for_timeout(1000)
    grid = figures.MATRIX_GRID
    width = (box["width"] - grid["left"] - grid["right"]) / classes
    height = (box["height"] - grid["top"] - grid["bottom"]) / classes
    x = box["x"] + grid["left"] + (predicted + 0.5) * width
    y = box["y"] + grid["top"] + (true + 0.5) * height
    page.mouse.move(x - 4, y - 4)
    page.mouse.move(x, y, steps=4)
    page.wait_for_timeout(300)
    page.mouse.down()
    page.mouse.up()


def incremental_and_full_reads(client) -> tuple[list, list]:
    """On a store (any kind): every run read, then runs added (in a new experiment too), a RUNNING one ended with a
    new metric, one deleted, one restored; the runs read incrementally since the first read and read in full,
    each sorted by run id with NaN metrics spelled out."""
    experiment = client.create_experiment(f"incremental-{time.time_ns()}")
    running, done, to_delete, deleted = (client.create_run(experiment, run_name=n).info.run_id for n in "abcd")
    for run_id in (done, to_delete, deleted):
        client.set_terminated(run_id)
    client.delete_run(deleted)
    before = bulk.Snapshot.of(bulk.stored_runs(client))
    client.log_metric(running, "val_acc", 0.7, step=1)
    client.set_tag(running, "heartbeat", "1")
    client.set_terminated(running, "KILLED")
    client.delete_run(to_delete)
    client.restore_run(deleted)
    client.log_param(client.create_run(experiment, run_name="new").info.run_id, "lr", "0.1")
    client.create_run(client.create_experiment(f"later-{time.time_ns()}"), run_name="elsewhere")

    def comparable(runs):
        nan_spelled = (dataclasses.replace(r, metrics={k: repr(v) for k, v in r.metrics.items()}) for r in runs)
        return sorted(nan_spelled, key=lambda run: run.run_id)

    return comparable(bulk.read_changes(client, before).runs.values()), comparable(bulk.stored_runs(client))

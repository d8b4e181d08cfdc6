"""How long each dashboard page makes its user wait, in headless Chromium, on the demo store and a 1,000-run store.

    .venv/bin/python -m benchmarks.page_times [--stores demo 1000] [--repeats 3] [--profile] [--server-option N=V]

The demo store is what `scripts/start` trains (`suite demo`, `sweep demo-sweep`; about 3 minutes the first time);
the 1,000-run store is a copy of it with synthetic runs added (benchmarks/dashboard_read.py's, straight into
MLflow's tables), so that every page still has real runs, artifacts and a sweep to show. Both are kept under
--folder and reused.

A page's time is from the start of navigation (or the click, for a widget change) until the app is idle: the
server has said its last script run finished, no run is in progress, and the page has not changed for half a
second; the time reported is that of the page's last change (the charts drawn), not the half second after. Changes
inside a <canvas> (fallback content, never drawn) are not counted.
- cold: the page's first load in a dashboard server just started (its imports and every read uncached);
- warm: the median of --repeats loads of the same page in new browser sessions of that server (nothing cached:
  a user's first visit in this browser);
- again: the median of --repeats loads in new tabs of one browser session that has opened the page once (its HTTP
  cache and compiled scripts kept: a user who comes back to the dashboard);
- from the sidebar: the median of --repeats clicks on the page's link in the sidebar, from the page a user comes
  from (Runs; Compare for Runs itself): what moving between pages costs once the dashboard is open, without
  loading Streamlit's and ECharts' bundles again;
- widget changes: the median of --repeats changes of one widget (each a rerun of the page).
--profile prints, for each page, where a warm script run spends its time (cProfile, in this process: the page run
under Streamlit's AppTest, which runs the same script without a browser).
"""

import argparse
import cProfile
import dataclasses
import io
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mlflow.tracking import MlflowClient
from playwright.sync_api import Page, sync_playwright
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.runtime.scriptrunner.script_runner import ScriptRunner
from streamlit.testing.v1 import AppTest

from benchmarks.dashboard_read import build_store
from core.store import REPO_ROOT
from dashboard.reader import fetch_runs
from dashboard.state import Key
from tests.helpers import APP, CHROMIUM, CHROMIUM_ARGS, PAGES, start_server

QUIET_SECONDS = 0.5  # the page has not changed for this long: idle
VIEWPORT = {"width": 1400, "height": 900}
# A change inside a <canvas> is not counted: a canvas's children are fallback content, never drawn. The table grid
# rewrites the accessibility table it keeps there about 0.3 s after it has drawn the table, so counting it measured
# that timer, not what the user sees (docs/benchmarks.md, 2026-12-04).
RECORD_CHANGES = """
window.__lastChange = 0;
const drawn = record => {
  const node = record.target.nodeType === 1 ? record.target : record.target.parentElement;
  return !node?.closest('canvas');
};
new MutationObserver(records => { if (records.some(drawn)) window.__lastChange = performance.now(); })
  .observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
"""
SCRIPT_STATE = '[data-testid="stApp"]'
PAGE_STATE = f"""() => [document.querySelector('{SCRIPT_STATE}')?.dataset.testScriptState !== 'notRunning'
                        || !!document.querySelector('[data-testid="stStatusWidget"]'),
                        window.__lastChange, performance.now()]"""  # running?, last change, now (ms)


@dataclasses.dataclass
class Loads:
    """One page's load seconds: cold (a server just started), the median and worst of new browser sessions, the
    median loaded again in the same browser session, and from the sidebar (None for a floor page)."""

    cold: float
    warm: float
    worst: float
    again: float
    sidebar: float | None = None


@dataclasses.dataclass
class Watch:
    """Counts the server's 'script finished' messages on a page's websocket."""

    finished: int = 0

    def attach(self, page: Page) -> None:
        page.on("websocket", lambda socket: socket.on("framereceived", self.received))

    def received(self, payload) -> None:
        if isinstance(payload, bytes | bytearray):
            message = ForwardMsg()
            message.ParseFromString(bytes(payload))
            self.finished += message.WhichOneof("type") == "script_finished"


def idle_after(page: Page, watch: Watch, finished_before: int, started: float, timeout: float = 120) -> float:
    """Seconds from `started` (the page's clock, ms) until the page's last change once the app is idle."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page.wait_for_timeout(50)
        if watch.finished <= finished_before:
            continue
        running, last, now = page.evaluate(PAGE_STATE)
        if not running and now - last >= QUIET_SECONDS * 1000:
            return (last - started) / 1000
    raise TimeoutError(f"the page did not settle within {timeout} s")


def load_seconds(page: Page, watch: Watch, url: str) -> float:
    """A page load, from navigation start until idle (the page's own clock starts at navigation)."""
    before = watch.finished
    page.goto(url)
    return idle_after(page, watch, before, 0.0)


def change_seconds(page: Page, watch: Watch, change: Callable[[Page], None]) -> float:
    before = watch.finished
    started = page.evaluate("performance.now()")
    change(page)
    return idle_after(page, watch, before, started)


SIDEBAR_LINKS = {
    "runs": "Runs",
    "compare": "Compare",
    "overfitting": "Overfitting inspector",
    "detail": "Run detail",
    "sweeps": "Sweeps",
    "advice": "Advice record",
}


def again_seconds(browser, url: str, repeats: int) -> list[float]:
    """Loads of `url` in new tabs of one browser session that has opened it once: its HTTP cache and compiled
    scripts kept, as for a user who comes back to the dashboard in the same browser."""
    context = browser.new_context(viewport=VIEWPORT)
    times = []
    for _ in range(repeats + 1):
        page, watch = new_page(browser, context)
        times.append(load_seconds(page, watch, url))
        page.close()
    context.close()
    return times[1:]


def load_times(browser, url: str, repeats: int) -> Loads:
    """Loads of `url` in new browser sessions (the first is the server's cold start, then --repeats warm ones), and
    again in one session that keeps its cache; no sidebar time."""
    fresh = []
    for _ in range(repeats + 1):
        page, watch = new_page(browser)
        fresh.append(load_seconds(page, watch, url))
        page.close()
    again = again_seconds(browser, url, repeats)
    return Loads(fresh[0], statistics.median(fresh[1:]), max(fresh[1:]), statistics.median(again))


def switch_seconds(browser, url: str, name: str) -> float:
    """From the page a user comes from, loaded and idle, a click on `name`'s sidebar link until idle."""
    page, watch = new_page(browser)
    load_seconds(page, watch, f"{url}/{'compare' if name == 'runs' else 'runs'}")
    link = page.locator('[data-testid="stSidebarNav"]').get_by_text(SIDEBAR_LINKS[name], exact=True)
    seconds = change_seconds(page, watch, lambda _: link.click())
    page.close()
    return seconds


def new_page(browser, context=None) -> tuple[Page, Watch]:
    """A page in a new browser session, or a new tab of `context` (a session whose cache is kept)."""
    page = context.new_page() if context else browser.new_page(viewport=VIEWPORT)
    page.add_init_script(RECORD_CHANGES)
    watch = Watch()
    watch.attach(page)
    return page, watch


def toggle(key: str) -> Callable[[Page], None]:
    return lambda page: page.locator(f".st-key-{key} label").first.click()


def choose(key: str, options: tuple[str, str]) -> Callable[[Page], None]:
    """A selectbox set to whichever of `options` it does not show now (the same value again would not rerun)."""

    def change(page: Page) -> None:
        box = page.locator(f".st-key-{key} input").first
        other = options[1] if box.input_value() == options[0] else options[0]
        box.click()
        page.get_by_role("option", name=other, exact=True).first.click()

    return change


def search(texts: tuple[str, str]) -> Callable[[Page], None]:
    def change(page: Page) -> None:
        box = page.locator(f".st-key-{Key.FILTER_TEXT} input").first
        box.fill(texts[1] if box.input_value() == texts[0] else texts[0])
        box.press("Enter")

    return change


WIDGET_CHANGES = {
    "runs: group by configuration": ("runs", toggle(Key.GROUP_RUNS)),
    "runs: search": ("runs", search(("lenet5", "conv"))),
    "compare: curves of": ("compare", choose(Key.COMPARE_CURVES, ("bias and variance", "loss and accuracy"))),
    "detail: row-normalised": ("detail", toggle(Key.CONFUSION_NORMALIZE)),
}


def one_chart(last: str, key: str) -> str:
    """The source line of an ECharts line of three points, drawn as the dashboard draws its charts."""
    return (
        "st.echarts_chart({'animation': False, 'xAxis': {}, 'yAxis': {}, "
        f"'series': [{{'type': 'line', 'data': [[1, 3], [2, 1], [3, {last}]]}}]}}, key={key})\n"
    )


FLOOR_PAGES = {  # what any Streamlit page costs here, side by side with the dashboard's
    "floor: a title only": "import streamlit as st\nst.title('floor')\n",
    "floor: a title and one chart": "import streamlit as st\nst.title('floor')\n" + one_chart("2", "'chart'"),
    "floor: a title and one Vega-Lite chart": "import pandas as pd\nimport streamlit as st\n"
    "st.title('floor')\nst.line_chart(pd.DataFrame({'y': [3, 1, 2]}))\n",
    "floor: a title and one table": "import pandas as pd\nimport streamlit as st\n"
    "st.title('floor')\nst.dataframe(pd.DataFrame({'a': [1, 2, 3]}))\n",
    "floor: Compare's first screen, no data": "import pandas as pd\nimport streamlit as st\n"
    "st.title('floor')\nst.selectbox('curves', ['x', 'y'])\nst.selectbox('per', ['x', 'y'])\nst.toggle('each')\n"
    + one_chart("2", "'chart'")
    + "a, b = st.columns(2)\na.selectbox('A', ['x', 'y'])\nb.selectbox('B', ['x', 'y'])\n"
    "st.dataframe(pd.DataFrame({'a': [1.0, 2.0], 'b': ['x', 'y']}), key='sides')\nst.success('B beats A')\n"
    "st.selectbox('baseline', ['x', 'y'])\ntab = st.tabs(['one', 'two', 'three'])[0]\n"
    "tab.dataframe(pd.DataFrame({'a': [1.0, 2.0, 3.0], 'b': ['x', 'y', 'z']}), key='final')\n",
    "floor: four widgets, three charts, three tables": "import pandas as pd\nimport streamlit as st\n"
    "st.title('floor')\nst.selectbox('a', ['x', 'y'])\nst.selectbox('b', ['x', 'y'])\n"
    "st.checkbox('c')\nst.slider('d', 0, 10)\nfor i in range(3):\n"
    "    "
    + one_chart("i", "f'chart{i}'")
    + "    st.dataframe(pd.DataFrame({'a': [1.0, 2.0, 3.0], 'b': ['x', 'y', 'z']}), key=f'table{i}')\n",
}


def floor_times(uri: str, repeats: int, options: tuple[str, ...] = ()) -> dict:
    """Load seconds of the floor pages: the least a page of this dashboard could take in this browser."""
    loads = {}
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        for name, source in FLOOR_PAGES.items():
            script = Path(folder) / f"{len(loads)}.py"
            script.write_text(source)
            with start_server(uri, *options, app=str(script)) as url:
                loads[name] = load_times(browser, url, repeats)
        browser.close()
    return loads


def page_times(uri: str, repeats: int, options: tuple[str, ...] = ()) -> tuple[dict[str, Loads], dict]:
    """Cold and warm load seconds of every page, and the widget changes' seconds, on the store at `uri`, served
    with the Streamlit `options` (e.g. ("--runner.postScriptGC", "true")) on top of .streamlit/config.toml."""
    loads, changes = {}, {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        for name in PAGES:
            with start_server(uri, *options) as url:
                opened = load_times(browser, f"{url}/{name}", repeats)
                switches = [switch_seconds(browser, url, name) for _ in range(repeats)]
                loads[name] = dataclasses.replace(opened, sidebar=statistics.median(switches))
                print(f"{name}: {loads[name]}, from the sidebar {switches}", flush=True)
                for label, (where, change) in WIDGET_CHANGES.items():
                    if where != name:
                        continue
                    page, watch = new_page(browser)
                    load_seconds(page, watch, f"{url}/{name}")
                    times = [change_seconds(page, watch, change) for _ in range(repeats)]
                    changes[label] = (statistics.median(times), max(times))
                    print(f"{label}: {times}", flush=True)
                    page.close()
        browser.close()
    return loads, changes


def profile(uri: str, top: int) -> None:
    """Where a warm script run of each page spends its time: cProfile around the script run of Streamlit's AppTest
    (the same script, no browser), on the runner's thread, after a first run filled the caches."""
    profiler = cProfile.Profile()
    run_script = ScriptRunner._run_script

    def profiled(runner, rerun_data):
        profiler.enable()
        try:
            run_script(runner, rerun_data)
        finally:
            profiler.disable()

    ScriptRunner._run_script = profiled
    os.environ["MLFLOW_TRACKING_URI"] = uri
    for name, script in PAGES.items():
        at = AppTest.from_file(APP, default_timeout=300).run()
        at.switch_page(script).run()  # caches filled
        profiler = cProfile.Profile()
        at.run()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(r"dashboard|core", top)
        print(f"--- {name} (warm rerun) ---\n{out.getvalue()}")


def demo_store(folder: Path) -> str:
    """The store `scripts/start` trains, built once in `folder`."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    if not (folder / "mlflow.db").exists():
        folder.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
        for command in (["suite", "demo"], ["sweep", "demo-sweep"]):
            subprocess.run([sys.executable, "-m", "experiments", *command], cwd=REPO_ROOT, env=env, check=True)
    return uri


def large_store(demo: Path, folder: Path, runs: int) -> str:
    """The demo store copied, with synthetic runs added up to `runs` in all."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    if not (folder / "mlflow.db").exists():
        shutil.copytree(demo, folder)
        build_store(uri, runs - len(fetch_runs(MlflowClient(uri))), epochs=20)
    return uri


def print_table(title: str, loads: dict[str, Loads], changes: dict) -> None:
    print(f"\n{title}\n{'page':<36} {'cold s':>7} {'warm s':>7} {'worst':>7} {'again s':>7} {'sidebar s':>9}")
    for name, t in loads.items():
        sidebar = "" if t.sidebar is None else f"{t.sidebar:.2f}"
        print(f"{name:<36} {t.cold:>7.2f} {t.warm:>7.2f} {t.worst:>7.2f} {t.again:>7.2f} {sidebar:>9}")
    print(f"{'widget change':<36} {'':>7} {'median':>7} {'worst':>7}")
    for label, (median, worst) in changes.items():
        print(f"{label:<36} {'':>7} {median:>7.2f} {worst:>7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--stores", nargs="+", choices=["demo", "1000"], default=["demo", "1000"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print where each page's warm rerun spends its time")
    parser.add_argument("--top", type=int, default=25, help="rows of each profile")
    parser.add_argument(
        "--server-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a Streamlit option for the served dashboard, over .streamlit/config.toml (repeatable): "
        "--server-option runner.postScriptGC=true measures Streamlit's default against ours",
    )
    parser.add_argument("--folder", default=str(Path.home() / ".cache" / "cnn-dashboard" / "page-times"))
    args = parser.parse_args()
    if any("=" not in option for option in args.server_option):
        parser.error(f"--server-option takes NAME=VALUE, e.g. runner.postScriptGC=true: got {args.server_option}")
    options = tuple(
        part for option in args.server_option for part in (f"--{option.partition('=')[0]}", option.partition("=")[2])
    )
    folder = Path(args.folder)
    uris = {"demo": demo_store(folder / "demo")}
    if "1000" in args.stores:
        uris["1000"] = large_store(folder / "demo", folder / "runs-1000", 1000)
    for store in args.stores:
        if args.profile:
            profile(uris[store], args.top)
            continue
        loads, changes = page_times(uris[store], args.repeats, options)
        loads.update(floor_times(uris[store], args.repeats, options))
        served = f", {' '.join(args.server_option)}" if options else ""
        print_table(f"{store} store ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores{served})", loads, changes)


if __name__ == "__main__":
    main()

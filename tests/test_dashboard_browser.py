"""End to end: the real Streamlit server, each page loaded in headless Chromium, a confusion cell clicked, and the
first launch: scripts/start on an empty store.

Screenshots go to test-output/screenshots/. Debian's chromium is driven by Playwright's Python package.
"""

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from core.schema import Artifact
from core.store import REPO_ROOT
from dashboard.state import Key
from experiments.tracking_server import free_port
from tests.helpers import (
    CHART,
    answers_health,
    click_cell,
    listening_addresses,
    needs_chromium,
    shoot,
    sqlite_uri,
    start_server,
    wait_idle,
)

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def server(dashboard_store, seeded_store):
    client, ids = dashboard_store  # with seeded_store's config groups, trained before the server reads the store
    with start_server(client.tracking_uri) as url:
        yield url, client, ids


EMPTY_STATES = (
    "No runs in the tracking store",
    "Select 2 to",
    "No sweeps in the tracking store",
    "no epoch with",
    "has no metrics yet",
    "has no trial runs yet",
)
FIRST_LAUNCH = [  # the page's link, its heading, what it shows of the demo, the charts it draws at least
    ("Runs", "Runs", "What this store shows", 0),
    ("Compare", "Compare runs", "Which is better?", 1),  # the curves; the tabs below draw the open one's
    # the under- and overfit runs' two charts each: whether a demo run is a firm good fit as well depends on the
    # machine's float sums (not with one thread per process, as the tests run)
    ("Overfitting inspector", "Overfitting inspector", "High variance", 4),
    ("Run detail", "Run detail", "Most frequent confusions", 2),  # of the overfitting run
    ("Sweeps", "Sweeps", "Parameter importances", 2),
]


@pytest.mark.long
def test_the_first_launch_trains_the_demo_and_every_page_shows_it(tmp_path, page):
    """scripts/start as a newcomer runs it, on an empty store: it trains the demo, serves the dashboard on
    localhost only, and every page, opened first with nothing selected, shows the demo's story."""
    port = free_port()
    with open(tmp_path / "start.log", "wb") as log:
        process = subprocess.Popen(
            [str(REPO_ROOT / "scripts" / "start")],
            cwd=REPO_ROOT,
            start_new_session=True,
            env={**os.environ, "MLFLOW_TRACKING_URI": sqlite_uri(tmp_path), "DASHBOARD_PORT": str(port)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        if not answers_health(f"http://127.0.0.1:{port}", 600):
            pytest.fail(f"scripts/start did not serve the dashboard in 600 s: {(tmp_path / 'start.log').read_text()}")
        assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, nothing on 0.0.0.0 or ::
        page.goto(f"http://127.0.0.1:{port}")
        for link, heading, shown, charts in FIRST_LAUNCH:
            page.locator('[data-testid="stSidebarNav"]').get_by_text(link, exact=True).click()
            page.get_by_role("heading", name=heading).first.wait_for(timeout=60_000)
            page.get_by_text(shown).first.wait_for(timeout=60_000)
            if charts:
                page.locator(CHART).nth(charts - 1).wait_for(timeout=60_000)
            wait_idle(page)
            body = page.locator('[data-testid="stMain"]').inner_text()
            assert not [said for said in EMPTY_STATES if said in body], link
            assert page.locator('[data-testid="stException"]').count() == 0, link
            if link == "Run detail":  # nothing selected: the overfitting run first
                assert "demo-02-conv-conv" in page.locator('[data-testid="stSelectbox"] input').first.input_value()
                assert "Nothing is selected, so this shows a run of the store that overfits" in body
            page.wait_for_timeout(1000)  # the last elements painted
            shoot(page, f"first-launch-{link.split()[-1].lower()}")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_the_inspector_shows_calibration_and_per_class_views_of_a_run_from_a_link(server, page):
    url, _, ids = server
    page.set_viewport_size({"width": 1500, "height": 3000})  # Streamlit scrolls inside its own pane: a tall window
    page.goto(f"{url}/overfitting?runs={ids['conv'][:8]}&section=Calibration")  # the open tab is in the link
    page.get_by_text("Reliability after epoch").wait_for(timeout=60_000)
    wait_idle(page)
    expect(page.locator(CHART)).to_have_count(2, timeout=30_000)  # calibration, reliability: this tab's
    shoot(page, "inspector-calibration")
    page.get_by_role("tab", name="Per class").click()
    page.get_by_text("Classes that overfit").wait_for(timeout=60_000)
    wait_idle(page)
    expect(page.locator(CHART)).to_have_count(2, timeout=30_000)  # the per-class gap and train error
    assert "section=Per+class" in page.url or "section=Per%20class" in page.url
    assert page.locator('[data-testid="stException"]').count() == 0
    page.wait_for_timeout(1000)
    shoot(page, "inspector-per-class")


def selected_chips(page):
    return page.locator('[data-testid="stSidebar"] [data-testid="stMultiSelect"] [data-tag]')


def rgb(color: str) -> list[int]:
    return [int(part) for part in re.findall(r"\d+", color)[:3]]


def test_the_first_screen_at_1400_px_shows_the_deciding_columns_and_every_selected_run(server, page):
    """What a newcomer sees first: the Runs table's first columns without scrolling sideways, and six selected runs
    all visible in the sidebar, as blue chips (red reads as an error)."""
    url, _, ids = server
    chosen = [ids[role] for role in ("conv", "lenet5", "numpy", "pruned", "killed", "foreign")]
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(f"{url}/runs?runs={','.join(run_id[:8] for run_id in chosen)}")
    page.get_by_text("runs shown").wait_for(timeout=60_000)
    expect(selected_chips(page)).to_have_count(6, timeout=30_000)
    wait_idle(page)
    sizes = page.locator('[data-testid="stDataFrame"] .dvn-scroller').first.evaluate(
        "e => [e.scrollWidth, e.clientWidth]"
    )
    assert sizes[0] <= sizes[1] + 1, sizes  # no sideways scrolling
    box = page.locator('[data-testid="stSidebar"] [data-testid="stMultiSelectTagsContainer"]')
    assert box.evaluate("e => e.scrollHeight <= e.clientHeight + 1")  # every chip shown, none behind a scroll bar
    red, green, blue = rgb(selected_chips(page).first.evaluate("e => getComputedStyle(e).backgroundColor"))
    assert blue > red
    shoot(page, "runs-first-screen")


def test_back_returns_to_the_page_before_in_one_press_and_can_leave_the_first_page(server, page):
    """Defect 8: the first page is not a redirect that Back lands on again, and one Back from the page a button
    opened shows the page the button was on."""
    url, _, _ = server
    page.goto("about:blank")
    page.goto(url)
    page.get_by_text("runs shown").wait_for(timeout=60_000)
    wait_idle(page)
    page.go_back()
    page.wait_for_url("about:blank", timeout=30_000)
    page.go_forward()
    page.get_by_text("runs shown").wait_for(timeout=60_000)
    wait_idle(page)
    page.get_by_role("button", name="Compare over seeds").click()
    page.get_by_role("heading", name="Compare runs").wait_for(timeout=60_000)
    wait_idle(page)
    assert "runs=" in page.url
    page.go_back()
    page.get_by_text("runs shown").wait_for(timeout=60_000)


def test_a_link_keeps_the_views_settings(server, page, browser):
    """Defect 7: what a page shows is in its address, not only the selection: Compare's curves, the Runs search."""
    url, _, ids = server
    page.goto(f"{url}/compare?runs={ids['lenet5'][:8]},{ids['conv'][:8]}")
    page.get_by_role("heading", name="Compare runs").wait_for(timeout=60_000)
    wait_idle(page)
    page.locator(f".st-key-{Key.COMPARE_CURVES} input").first.click()
    page.get_by_role("option", name="calibration", exact=True).click()
    page.wait_for_url(re.compile(f"{Key.COMPARE_CURVES}=calibration"), timeout=30_000)
    wait_idle(page)
    elsewhere = browser.new_context(viewport={"width": 1500, "height": 1100}).new_page()  # another user's session
    elsewhere.goto(page.url)
    elsewhere.get_by_role("heading", name="Compare runs").wait_for(timeout=60_000)
    expect(elsewhere.locator(f".st-key-{Key.COMPARE_CURVES} input").first).to_have_value("calibration", timeout=30_000)
    elsewhere.goto(f"{url}/?{Key.FILTER_TEXT}=lenet5")
    expect(elsewhere.get_by_text(re.compile(r"^1 of \d+ runs shown"))).to_be_visible(timeout=60_000)
    elsewhere.context.close()


def test_the_selection_and_the_view_survive_every_page_a_reload_and_a_shared_link(server, page, browser):
    url, _, _ = server
    page.goto(f"{url}/runs")  # a link to the Runs page opens it
    page.get_by_text("runs shown").wait_for(timeout=60_000)
    assert page.get_by_text("Page not found").count() == 0
    select_runs(page, ["lenet5-small", "conv-conv-small"])
    for link, heading in [
        ("Compare", "Compare runs"),
        ("Sweeps", "Sweeps"),
        ("Overfitting inspector", "Overfitting"),
        ("Run detail", "Run detail"),
        ("Runs", "Runs"),
    ]:
        page.locator('[data-testid="stSidebarNav"]').get_by_text(link, exact=True).click()
        page.get_by_role("heading", name=heading).first.wait_for(timeout=60_000)
        expect(selected_chips(page)).to_have_count(2, timeout=30_000)
        wait_idle(page)
        assert page.locator('[data-testid="stException"]').count() == 0, link  # each page draws the two runs
    page.get_by_text("2 selected").wait_for(timeout=60_000)  # what the user sees before reloading
    expect_address_names_runs(page, 2)
    page.reload()
    page.get_by_text("2 selected").wait_for(timeout=60_000)
    expect(selected_chips(page)).to_have_count(2, timeout=30_000)
    labels = selected_chips(page).locator(":scope > span")
    assert all(labels.nth(i).evaluate("label => label.scrollWidth <= label.clientWidth") for i in range(2)), "cut"
    page.locator('[data-testid="stSidebarNav"]').get_by_text("Run detail", exact=True).click()
    page.get_by_role("heading", name="Run detail").wait_for(timeout=60_000)
    choose_run(page, "conv-conv-small")
    page.get_by_role("tab", name="Per class and layers").click()
    page.get_by_text("Layers").first.wait_for(timeout=60_000)
    shared = page.url
    assert "/detail?" in shared and "detail_run=" in shared and "runs=" in shared and "part=" in shared
    elsewhere = browser.new_context(viewport={"width": 1500, "height": 1100}).new_page()  # another user's session
    elsewhere.goto(shared)
    elsewhere.get_by_role("heading", name="Run detail").wait_for(timeout=60_000)
    elsewhere.get_by_text("Layers").first.wait_for(timeout=60_000)
    expect(selected_chips(elsewhere)).to_have_count(2, timeout=30_000)
    assert "conv-conv-small" in elsewhere.locator('[data-testid="stSelectbox"] input').first.input_value()
    shoot(elsewhere, "shared-link-run-detail")
    elsewhere.context.close()


def test_the_runs_tables_ticks_are_the_selection_and_enter_in_the_sidebar_adds_one_run(server, page):
    url, _, _ = server
    page.goto(f"{url}/compare")
    page.get_by_role("heading", name="Compare runs").wait_for(timeout=60_000)
    select_runs(page, ["lenet5-small", "conv-conv-small"], on_runs_page=False)  # chosen on another page
    page.locator('[data-testid="stSidebarNav"]').get_by_text("Runs", exact=True).click()
    page.get_by_text("2 selected").wait_for(timeout=60_000)
    wait_idle(page)
    table = page.locator('[data-testid="stDataFrame"]').first
    table.scroll_into_view_if_needed()
    page.wait_for_timeout(1000)
    shoot(page, "runs-ticks-show-the-selection")
    box = table.bounding_box()
    first_row_tick = (box["x"] + 14, box["y"] + 35 + 17)  # the newest run, not selected
    click_until(page, first_row_tick, "3 selected")  # a table not showing the two ticked would replace them
    expect(selected_chips(page)).to_have_count(3, timeout=30_000)
    click_until(page, first_row_tick, "2 selected")  # untick: removed again
    selection = page.locator('[data-testid="stSidebar"] [data-testid="stMultiSelect"]')
    selection.locator("input").click()
    page.keyboard.type("seeds")  # five runs' names contain it: Enter adds one, not all five
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    page.get_by_text("3 selected").wait_for(timeout=30_000)
    wait_idle(page)
    assert page.get_by_text("3 selected").count() == 1 and selected_chips(page).count() == 3


def click_until(page, point: tuple[float, float], shown: str) -> None:
    """Click a point of a table (a canvas) until the page shows `shown`: a click that lands while a rerun redraws
    the table can be lost, and is then made again (up to 3 times; the same click twice would undo itself, so
    only a page that still does not show `shown` is clicked again)."""
    for attempt in range(3):
        wait_idle(page)
        if attempt and page.get_by_text(shown).count():  # the last click took, only slowly: another would undo it
            return
        page.mouse.click(*point)
        try:
            page.get_by_text(shown).wait_for(timeout=15_000)
            wait_idle(page)
            return
        except PlaywrightError:
            continue
    raise AssertionError(f"the page never showed {shown!r}")


def choose_run(page, label_start: str, box: int | str = 0) -> None:
    """Type into the page's `box`-th select box (or the one labelled `box`), take the first match, and wait until
    the box shows it (a rerun that lands while the list is open can swallow the choice: then it is made again)."""
    boxes = page.locator('[data-testid="stSelectbox"]')
    select = boxes.filter(has=page.get_by_text(box, exact=True)) if isinstance(box, str) else boxes.nth(box)
    for _ in range(3):
        wait_idle(page)
        select.click()
        page.keyboard.type(label_start)
        page.keyboard.press("Enter")
        wait_idle(page)
        try:
            expect(select.locator("input")).to_have_value(re.compile(re.escape(label_start)), timeout=10_000)
            return
        except AssertionError:
            page.keyboard.press("Escape")
    raise AssertionError(f"select box {box} never showed {label_start!r}")


def select_runs(page, names, on_runs_page: bool = True) -> None:
    """Add runs to the sidebar selection by name, one at a time, each once the app has rerun with the last (the
    Runs page says how many are selected; elsewhere the address names them). A choice that a rerun swallowed (the
    store holds a RUNNING run, so the page refreshes itself every few seconds) is made again, up to 3 times."""
    selection = page.locator('[data-testid="stSidebar"] [data-testid="stMultiSelect"]')
    for count, name in enumerate(names, start=1):
        for _ in range(3):
            wait_idle(page)
            if selected_chips(page).count() < count:  # not taken yet, or swallowed
                selection.locator("input").click()  # not the middle: a chosen tag's remove button may sit there
                page.keyboard.type(name)
                page.keyboard.press("Enter")
                page.keyboard.press("Escape")
            try:
                if on_runs_page:
                    page.get_by_text(f"{count} selected").wait_for(timeout=30_000)
                else:  # the chips show at once in the browser; the address changes once the app has taken them
                    expect_address_names_runs(page, count)
                wait_idle(page)
                break
            except (PlaywrightError, AssertionError):
                continue
        else:
            raise AssertionError(f"the sidebar never took {name!r} as selected run {count}")


def expect_address_names_runs(page, count: int) -> None:
    """Until the page's address names `count` selected runs (the app writes it while the script runs)."""
    expect(page).to_have_url(
        re.compile(rf"runs=[0-9a-f]{{8}}((,|%2C)[0-9a-f]{{8}}){{{count - 1}}}(&|$)"), timeout=30_000
    )


def test_groups_over_seeds_bands_and_which_is_better(server, seeded_store, page):
    """Runs grouped by configuration, Compare's bands over seeds, the Welch verdict for two groups, then the
    McNemar verdict and flipped-example galleries for two runs."""
    url, _, _ = server
    page.goto(url)
    page.get_by_text("runs shown").wait_for(timeout=60_000)
    page.get_by_text("Group by configuration").click()
    page.get_by_text("A group holds the runs that differ only in their seed").wait_for(timeout=30_000)
    wait_idle(page)
    shoot(page, "runs-grouped")
    client, groups = seeded_store
    runs = [client.get_run(run_id) for run_id in groups["softmax"] + groups["tiny"]]
    select_runs(page, [f"{r.info.run_name} ({r.info.run_id[:8]})" for r in runs])  # a bare name matches its siblings
    page.locator('[data-testid="stSidebarNav"]').get_by_text("Compare", exact=True).click()
    page.get_by_text("Which is better?").wait_for(timeout=60_000)
    wait_idle(page)
    choose_run(page, "configuration", box="Draw curves per")
    page.get_by_text("Each line is the mean over the group's selected runs").wait_for(timeout=30_000)
    page.get_by_text("Welch's t test over seeds").first.wait_for(timeout=30_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator(f'{CHART}[aria-label*="N=3"]').count() >= 1  # ECharts describes its series for readers
    shoot(page, "compare-bands")
    choose_run(page, "sr-seeds-seed0", box="A")
    choose_run(page, "tiny-seeds-seed0", box="B")
    page.get_by_text("exact McNemar test").first.wait_for(timeout=30_000)
    page.get_by_text("Right in sr-seeds-seed0").wait_for(timeout=30_000)
    page.locator('img[src*="/media/"]').first.wait_for(timeout=30_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.set_viewport_size({"width": 1500, "height": 2600})  # Streamlit scrolls inside its own pane: a tall window
    page.wait_for_timeout(1000)
    shoot(page, "compare-which-is-better")


def test_clicking_a_confusion_cell_opens_its_gallery(server, page, tmp_path):
    url, client, ids = server
    matrix = json.loads(
        Path(client.download_artifacts(ids["conv"], Artifact.CONFUSION_TEST, str(tmp_path))).read_text()
    )["matrix"]
    cells = [(matrix[t][p], t, p) for t in range(10) for p in range(10) if t != p and matrix[t][p] > 0]
    count, true, pred = max(cells)
    page.goto(f"{url}/detail")
    page.get_by_role("heading", name="Run detail").wait_for(timeout=60_000)
    wait_idle(page)
    choose_run(page, "conv-conv-small")
    page.get_by_text("Test set, best-val weights").wait_for(timeout=30_000)
    wait_idle(page)  # the chart is drawn again once the run's artifacts are read: wait until it settles
    page.wait_for_timeout(1000)
    click_cell(page, Key.per_run(Key.CONFUSION_CHART, ids["conv"]), true, pred, 10)  # a plain click on the cell
    heading = page.get_by_text(f"Test images of true {true}, predicted {pred}")
    heading.wait_for(timeout=30_000)
    images = page.locator('img[src*="/media/"]')  # st.image serves each picture from /media/
    images.nth(min(count, 40) - 1).wait_for(timeout=30_000)
    assert images.count() == min(count, 40)
    shoot(page, "detail-gallery")

    predictions = json.loads(
        Path(client.download_artifacts(ids["conv"], Artifact.VAL_PREDICTIONS_EPOCHS, str(tmp_path))).read_text()
    )
    first, last = predictions["predicted"][0], predictions["predicted"][-1]
    moved = [sum(a != b for a, b in zip(first, last, strict=True) if a == k or b == k) for k in range(10)]
    cls = moved.index(max(moved))  # the diagonal cell of the class whose predictions moved most
    wait_idle(page)
    page.get_by_role("tab", name="Between two epochs").click()
    click_cell(page, Key.per_run(Key.EPOCH_DIFF_CHART, ids["conv"]), cls, cls, 10)
    page.get_by_text("moved in,").wait_for(timeout=30_000)
    wait_idle(page)
    moves = page.get_by_text("Moved in", exact=True).or_(page.get_by_text("Moved out", exact=True))
    moves.first.wait_for(timeout=30_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    shoot(page, "detail-epoch-difference")

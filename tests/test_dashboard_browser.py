"""End to end: the real Streamlit server, each page loaded in headless Chromium, a confusion cell clicked.

Screenshots go to test-output/screenshots/. Debian's chromium is driven by Playwright's Python package.
"""
import json

import pytest

from experiments.schema import Artifact
from tests.helpers import needs_chromium, shoot, start_server, wait_idle

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def server(dashboard_store):
    client, ids = dashboard_store
    with start_server(client.tracking_uri) as url:
        yield url, client, ids


def test_each_page_loads_with_its_content_and_selection_carries_over(server, page):
    url, _, _ = server
    page.goto(url)  # Runs is the default page
    page.get_by_role("heading", name="Runs").wait_for(timeout=60_000)
    page.get_by_text("runs shown").wait_for(timeout=60_000)
    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=30_000)
    shoot(page, "runs")
    selection = page.locator('[data-testid="stSidebar"] [data-testid="stMultiSelect"]')
    for count, name in enumerate(("lenet5-small", "conv-conv-small"), start=1):
        selection.locator("input").click()  # not the middle: a chosen tag's remove button may sit there
        page.keyboard.type(name)
        page.keyboard.press("Enter")
        page.keyboard.press("Escape")
        page.get_by_text(f"{count} selected").wait_for(timeout=30_000)  # the app has rerun with it
    for link, heading, expected in [("Compare", "Compare runs", "Params that differ"),
                                    ("Overfitting inspector", "Overfitting inspector", "Rule: avoidable bias"),
                                    ("Run detail", "Run detail", "Layers")]:
        page.locator('[data-testid="stSidebarNav"]').get_by_text(link, exact=True).click()
        page.get_by_role("heading", name=heading).wait_for(timeout=60_000)
        page.get_by_text(expected).first.wait_for(timeout=60_000)
        page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
        assert page.locator('[data-testid="stException"]').count() == 0
        shoot(page, link.split()[-1].lower())
    assert page.get_by_text("conv-conv-small").count() >= 1  # the selection reached the last page


def choose_run(page, label_start: str) -> None:
    box = page.locator('[data-testid="stSelectbox"]').first
    box.click()
    page.keyboard.type(label_start)
    page.keyboard.press("Enter")
    wait_idle(page)


def test_clicking_a_confusion_cell_opens_its_gallery(server, page, tmp_path):
    url, client, ids = server
    matrix = json.load(open(client.download_artifacts(ids["conv"], Artifact.CONFUSION_TEST, str(tmp_path))))["matrix"]
    cells = [(matrix[t][p], t, p) for t in range(10) for p in range(10) if t != p and matrix[t][p] > 0]
    count, true, pred = max(cells)
    page.goto(f"{url}/detail")
    page.get_by_role("heading", name="Run detail").wait_for(timeout=60_000)
    wait_idle(page)
    choose_run(page, "conv-conv-small")
    page.get_by_text("Test set, best-val weights").wait_for(timeout=30_000)
    wait_idle(page)  # the chart is drawn again once the run's artifacts are read: wait until it settles
    page.wait_for_timeout(1000)
    # A plain click on a Plotly marker emits no selection in headless Chromium; a box drawn around
    # the cell (the chart's default drag mode) does, as it does for a user.
    point = page.locator(".js-plotly-plot .scatterlayer .point").nth(true * 10 + pred)
    point.scroll_into_view_if_needed()
    box = point.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x - 12, y - 12)
    page.mouse.down()
    page.mouse.move(x + 12, y + 12, steps=8)
    page.mouse.up()
    heading = page.get_by_text(f"Test images of true {true}, predicted {pred}")
    heading.wait_for(timeout=30_000)
    images = page.locator('img[src*="/media/"]')  # st.image serves each picture from /media/
    images.nth(min(count, 40) - 1).wait_for(timeout=30_000)
    assert images.count() == min(count, 40)
    shoot(page, "detail-gallery")

"""Entry point: `streamlit run dashboard/app.py`. Routes the pages and keeps the run selection."""

import os
import sys
from pathlib import Path

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no download bars in the server's terminal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # streamlit puts only dashboard/ on the path

import streamlit as st  # noqa: E402

from core.store import tracking_uri  # noqa: E402
from dashboard import state  # noqa: E402
from dashboard.sign_in import sign_in_ui  # noqa: E402

st.set_page_config(page_title="CNN experiments", layout="wide")
# The sidebar's run chips wrap their label rather than cut it at about 18 characters, where three seeds of one run
# name all read "demo-05-lenet5-se..." (Streamlit offers no setting for it), and the box grows to show every selected
# run rather than the first two or three above a scroll bar.
st.html(
    "<style>[data-testid='stSidebar'] [data-tag] {height: auto; white-space: normal; padding: 2px 8px}"
    "[data-testid='stSidebar'] [data-tag] > span {white-space: normal; overflow-wrap: anywhere}"
    "[data-testid='stSidebar'] [data-testid='stMultiSelect'] div:has(> [data-testid='stMultiSelectTagsContainer']),"
    "[data-testid='stSidebar'] [data-testid='stMultiSelectTagsContainer'] {max-height: none; overflow: visible}"
    "</style>"
)
sign_in_ui(tracking_uri())  # a team dashboard shows nothing before the session signs in
# The Runs page is the first page, at the address without a page: no redirect there, which would add a history entry
# that Back returns to and leaves again. Streamlit serves the first page at "/" only, so /runs, an address older links
# use, opens it through a redirect.
RUNS = st.Page("views/runs.py", title="Runs", url_path="runs-table", default=True)


def open_runs() -> None:
    """/runs opens the Runs page, with the query it came with."""
    st.switch_page(RUNS, query_params={key: st.query_params.get_all(key) for key in st.query_params})


page = st.navigation(
    [
        RUNS,
        st.Page(open_runs, title="Runs", url_path="runs", visibility="hidden"),
        st.Page("views/compare.py", title="Compare", url_path="compare"),
        st.Page("views/overfitting.py", title="Overfitting inspector", url_path="overfitting"),
        st.Page("views/detail.py", title="Run detail", url_path="detail"),
        st.Page("views/sweeps.py", title="Sweeps", url_path="sweeps"),
        st.Page("views/advice.py", title="Advice record", url_path="advice"),
    ]
)
opening = state.page_to_open()
if opening:
    st.switch_page(opening, query_params=state.selection_query())
state.keep_selection_in_url()
page.run()

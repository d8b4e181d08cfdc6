"""Thin pages: read through dashboard.reader, compute with analysis, draw with figures and widgets."""
import time

import pandas as pd
import streamlit as st

from dashboard import reader
from dashboard.widgets import LIVE_SECONDS, selection_ui


def runs_or_message() -> tuple[pd.DataFrame | None, list[str]]:
    """All runs and the current selection, or None after showing why there is nothing to show."""
    uri = reader.current_uri()
    tick = int(time.time() // LIVE_SECONDS) if st.session_state.get("live") else 0  # fresh reads while live
    try:
        runs = reader.load_runs(uri, tick)
    except reader.StoreError as err:
        st.error(str(err))
        return None, []
    st.session_state["live"] = bool((runs["status"] == "RUNNING").any())
    selection = selection_ui(runs)
    if runs.empty:
        st.info(f"No runs in the tracking store ({uri}) yet. Train some with "
                "`.venv/bin/python -m experiments suite quick`.")
        return None, []
    return runs, selection

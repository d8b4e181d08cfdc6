"""Advice record: every piece of advice trained in the store, what was tried and whether it helped, and per rule how
often it helped, so a team learns which advice works on its models."""

import streamlit as st

from dashboard import reader
from dashboard.advice_tables import rule_record
from dashboard.advice_ui import verdicts_ui
from dashboard.views import read, runs_or_message
from dashboard.widgets import INSPECTOR_SECTIONS


def page() -> None:
    st.title("Advice record")
    runs, _ = runs_or_message()
    if runs is None:
        return
    judged = read(reader.load_judgements)
    if not judged:
        st.info(
            f"No advice trained yet. The Overfitting inspector's {INSPECTOR_SECTIONS[4]} tab proposes follow-ups "
            "of a run and launches them; `python -m experiments advise RUN --run` does the same from a terminal."
        )
        return
    st.caption(
        "Each follow-up against the configuration it followed, over the same seeds: the figure its rule set out to "
        "lower and test accuracy, with the tests `python -m experiments compare` uses."
    )
    st.subheader("By rule")
    st.dataframe(rule_record(judged), hide_index=True, key="advice_rules")
    st.subheader("Every follow-up")
    verdicts_ui(judged, dict(zip(runs["run_id"], runs["run_name"], strict=True)))


page()

"""Compare: 2 to 50 selected runs, learning curves overlaid, differing params, metrics side by side."""
import streamlit as st

from dashboard import figures, reader
from dashboard.analysis import differing_params, final_and_best, run_labels
from dashboard.state import Key
from dashboard.views import read, runs_or_message
from dashboard.widgets import MAX_COMPARE
from experiments.schema import Metric

CURVES = tuple(map(str, (Metric.TRAIN_LOSS, Metric.VAL_LOSS, Metric.TRAIN_ACC, Metric.VAL_ACC,
                         Metric.VARIANCE, Metric.EPOCH_SECONDS)))


def page() -> None:
    st.title("Compare runs")
    runs, selection = runs_or_message()
    if runs is None:
        return
    if not 2 <= len(selection) <= MAX_COMPARE:
        st.info(f"Select 2 to {MAX_COMPARE} runs (Runs page or sidebar) to compare them; {len(selection)} selected.")
        return
    metrics = read(reader.load_metrics, tuple(selection), CURVES)
    labels = run_labels(runs, selection)
    if metrics.empty:
        st.warning("None of the selected runs has logged any epoch yet.")
        return
    st.plotly_chart(figures.learning_curves(metrics, labels), key=Key.CURVES_CHART)
    st.subheader("Final and best metrics")
    st.dataframe(final_and_best(runs, metrics, selection), hide_index=True)
    params = read(reader.load_params, tuple(selection))
    varying = differing_params(params).rename(index=labels)
    st.subheader("Params that differ")
    if varying.empty:
        st.caption("Every param is the same in the selected runs.")
        return
    st.dataframe(varying)
    scores = runs.set_index("run_id").loc[selection, "test_acc"]
    tracked = varying.drop(columns=[c for c in varying.columns if c.endswith("_version") or c == "data_dir"])
    if scores.notna().any() and not tracked.empty:
        st.subheader("Params against test accuracy")
        st.plotly_chart(figures.parallel_coordinates(tracked, scores.values), key=Key.PARALLEL_CHART)


page()

"""Overfitting inspector: train vs validation error, bias/variance per epoch, diagnosis, data-size curve."""
import streamlit as st

from dashboard import figures, reader
from dashboard.analysis import data_size_points, overfitting_facts, wide_history, with_bias_variance
from dashboard.views import runs_or_message
from dashboard.widgets import md, run_picker_ui
from experiments.diagnosis import BEST_ERROR
from experiments.schema import Metric, Param

HISTORY = tuple(map(str, (Metric.TRAIN_ACC, Metric.VAL_ACC, Metric.BIAS, Metric.VARIANCE, Metric.AVOIDABLE_BIAS)))
DATA_SIZE_SUITE = "data-size"
MAX_INSPECTED = 6


def diagnosis_ui(facts: dict) -> None:
    cols = st.columns(4)
    cols[0].metric("Best epoch", facts["best_epoch"])
    cols[1].metric("Best val acc", f"{facts['best_val_acc']:.2%}")
    cols[2].metric("Final val acc", f"{facts['final_val_acc']:.2%}",
                   delta=f"{-facts['lost_after_best']:.2%} after best" if facts["lost_after_best"] else None)
    cols[3].metric("Diagnosis", facts["diagnosis"])
    st.markdown(f"**{facts['diagnosis'].capitalize()}** at epoch {facts['final_epoch']}: {facts['advice']}.")
    st.caption(f"Rule: {facts['rule']} (thresholds in experiments/diagnosis.py).")


def run_section(uri: str, run_id: str, label: str) -> None:
    history = wide_history(reader.load_metrics(uri, (run_id,), HISTORY), run_id)
    if history.empty or Metric.VAL_ACC not in history or Metric.TRAIN_ACC not in history:
        st.info(f"{md(label)}: no epoch with train and validation accuracy logged yet.")
        return
    params = reader.load_run(uri, run_id)["params"]
    best_error = float(params.get(Param.BEST_ERROR, BEST_ERROR.get(params.get(Param.DATASET), BEST_ERROR["mnist"])))
    history = with_bias_variance(history, best_error)  # runs logged by other tools may lack them
    facts = overfitting_facts(history)
    diagnosis_ui(facts)
    cols = st.columns(2)
    cols[0].plotly_chart(figures.error_gap(history, facts["best_epoch"]), key=f"gap_{run_id}")
    cols[1].plotly_chart(figures.bias_variance(history), key=f"bv_{run_id}")


def data_size_section(uri: str, runs) -> None:
    sweep = runs[(runs["suite"] == DATA_SIZE_SUITE) & (runs["status"] == "FINISHED")]
    if sweep.empty:
        st.caption("No `data-size` sweep in the store (python -m experiments suite data-size).")
        return
    for model, group in sweep.groupby("model"):
        ids = tuple(group["run_id"])
        points = data_size_points(reader.load_params(uri, ids),
                                  reader.load_metrics(uri, ids, (str(Metric.TRAIN_ACC), str(Metric.VAL_ACC))))
        st.markdown(f"**{md(model)}**: error against training-set size. A large gap that closes with more data "
                    "means variance; two high curves that meet mean bias.")
        st.plotly_chart(figures.data_size_curve(points), key=f"datasize_{model}")


def page() -> None:
    st.title("Overfitting inspector")
    runs, selection = runs_or_message()
    if runs is None:
        return
    uri = reader.current_uri()
    names = runs.set_index("run_id")["run_name"]
    shown = selection[:MAX_INSPECTED] or [run_picker_ui(runs, [], "Run (select runs to inspect several)",
                                                         key="overfitting_run")]
    for run_id in shown:
        st.subheader(md(names[run_id]))
        run_section(uri, run_id, names[run_id])
    st.subheader("Learning curve over training-set size")
    data_size_section(uri, runs)


page()

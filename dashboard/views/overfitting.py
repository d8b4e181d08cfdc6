"""Overfitting inspector: train vs validation error, bias/variance per epoch, diagnosis, data-size curve."""
import streamlit as st

from dashboard import figures, formats, reader
from dashboard.analysis import series_over, series_points, with_bias_variance
from dashboard.state import Key
from dashboard.views import read, runs_or_message
from dashboard.widgets import md, run_picker_ui
from experiments.data_scaling import fit_power_law, more_data_sentence
from experiments.diagnosis import ADVICE, DIVERGED, Verdict, history_of, verdict
from experiments.schema import Metric, Param

HISTORY = tuple(map(str, (Metric.TRAIN_ACC, Metric.VAL_ACC, Metric.BIAS, Metric.VARIANCE, Metric.AVOIDABLE_BIAS)))
MAX_INSPECTED = 6


def diagnosis_ui(judged: Verdict) -> None:
    cols = st.columns(4)
    cols[0].metric("Best epoch", judged.best_epoch)
    cols[1].metric("Best val acc", formats.percent(judged.best_val_acc))
    cols[2].metric("Final val acc", formats.percent(judged.final_val_acc),
                   delta=f"{formats.points(-judged.lost_after_best)} after best" if judged.lost_after_best else None)
    cols[3].metric("Diagnosis", judged.diagnosis)
    st.markdown(f"**{judged.diagnosis.capitalize()}** at epoch {judged.epochs_trained}: {judged.advice}.")
    st.caption(f"Rule: {judged.rule}. A figure is above or below its threshold only when its whole 95% interval is "
               "(thresholds in experiments/diagnosis.py).")


def run_section(run_id: str, row) -> None:
    """One run's verdict and curves; `row` is its line of the runs table."""
    history = history_of(read(reader.load_metrics, (run_id,), HISTORY), run_id)
    judged = verdict(history, row["yardstick"], row["diverged"])
    if row["diverged"]:
        st.error(f"{md(row['run_name'])} diverged (its loss became NaN, infinite or exploded): {ADVICE[DIVERGED]}.")
    if judged is None:
        st.info(f"{md(row['run_name'])}: no epoch with train and validation accuracy logged yet.")
        return
    history = with_bias_variance(history, row["yardstick"].best_error)  # runs logged by other tools may lack them
    diagnosis_ui(judged)
    cols = st.columns(2)
    cols[0].plotly_chart(figures.error_gap(history, judged.best_epoch), key=Key.per_run("gap", run_id))
    cols[1].plotly_chart(figures.bias_variance(history), key=Key.per_run("bv", run_id))


def data_size_section(runs) -> None:
    """Every series of finished runs that differ only in their training-set size, from any suite or sweep."""
    series = series_over(runs, Param.TRAIN_SIZE)
    if not series:
        st.caption("No runs in the store differ only in their training-set size "
                   "(python -m experiments suite data-size makes such a series).")
        return
    names = runs.set_index("run_id")
    for number, ids in enumerate(series):
        metrics = read(reader.load_metrics, tuple(ids), (str(Metric.TRAIN_ACC), str(Metric.VAL_ACC)))
        first = names.loc[ids[0]]
        st.markdown(f"**{md(first['model'])}** on {md(first['dataset'])}, {len(ids)} runs: error against "
                    "training-set size. A large gap that closes with more data means variance; two high curves that "
                    "meet mean bias.")
        points = series_points(runs, metrics, Param.TRAIN_SIZE)
        fit = fit_power_law(points[Param.TRAIN_SIZE], points["val_error"])
        st.plotly_chart(figures.data_size_curve(points, fit), key=Key.per_series("datasize", number))
        if fit is not None:
            st.caption(more_data_sentence(fit))


def page() -> None:
    st.title("Overfitting inspector")
    runs, selection = runs_or_message()
    if runs is None:
        return
    rows = runs.set_index("run_id")
    shown = selection[:MAX_INSPECTED] or [run_picker_ui(runs, [], "Run (select runs to inspect several)",
                                                         key=Key.OVERFITTING_RUN)]
    if len(selection) > MAX_INSPECTED:
        st.info(f"Showing the first {MAX_INSPECTED} of the {len(selection)} selected runs.")
    st.caption("Bias is the train error; variance the validation error minus the train error; avoidable bias the "
               "train error minus the best error reached on the dataset (MNIST 0.2%, Fashion-MNIST 3.5%, or the run's "
               "best_error). Above 1 point, the first says the model underfits and the second that it overfits.")
    for run_id in shown:
        st.subheader(md(rows.loc[run_id, "run_name"]))
        run_section(run_id, rows.loc[run_id])
    st.subheader("Learning curve over training-set size")
    data_size_section(runs)


page()

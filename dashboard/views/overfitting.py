"""Overfitting inspector: train vs validation error, bias/variance per epoch, diagnosis, data-size curve."""
import math

import streamlit as st

from dashboard import figures, formats, reader
from dashboard.analysis import series_over, series_points, with_bias_variance
from dashboard.state import Key
from dashboard.views import read, runs_or_message
from dashboard.widgets import md, patience_ui, run_picker_ui
from experiments.data_scaling import fit_power_law, more_data_sentence
from experiments.diagnosis import ADVICE, DIVERGED, EarlyStop, Verdict, early_stop, history_of, verdict
from experiments.schema import Metric, Param

HISTORY = tuple(map(str, (Metric.TRAIN_ACC, Metric.VAL_ACC, Metric.BIAS, Metric.VARIANCE, Metric.AVOIDABLE_BIAS,
                          Metric.EPOCH_SECONDS)))
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


def saved_words(stop: EarlyStop) -> str:
    seconds = "" if math.isnan(stop.seconds_saved) else f", {formats.duration(stop.seconds_saved)} of training"
    return f"{stop.epochs_saved} epoch{'s' * (stop.epochs_saved != 1)}{seconds}"


def early_stop_ui(history, patience: int) -> None:
    """What stopping at the best epoch, or with the chosen patience, would have saved, and at what cost."""
    timing = history.get(Metric.EPOCH_SECONDS, history[Metric.VAL_ACC] * float("nan"))
    best, patient = early_stop(history[Metric.VAL_ACC], timing), early_stop(history[Metric.VAL_ACC], timing, patience)
    if best.epochs_saved == 0:
        st.markdown(f"**Early stopping.** The best epoch ({best.best_epoch}) is the last one trained: stopping "
                    "earlier would have saved nothing and kept a worse model.")
        return
    words = (f"**Early stopping.** Stopping at the best epoch ({best.best_epoch}) would have saved "
             f"{saved_words(best)}, with the same test accuracy (the test set is scored with the best epoch's "
             f"weights). With a patience of {patience}: ")
    if patient.epochs_saved == 0:
        words += "training would have run to the end."
    elif patient.best_epoch == best.best_epoch:
        words += f"stopped after epoch {patient.stopped_after}, saving {saved_words(patient)}, same test accuracy."
    else:
        words += (f"stopped after epoch {patient.stopped_after}, saving {saved_words(patient)}, but kept epoch "
                  f"{patient.best_epoch} (val {formats.percent(patient.best_val_acc)} against "
                  f"{formats.percent(best.best_val_acc)}): too little patience for this run.")
    st.markdown(words)


def run_section(run_id: str, row, patience: int) -> None:
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
    early_stop_ui(history, patience)
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
    patience = patience_ui()
    for run_id in shown:
        st.subheader(md(rows.loc[run_id, "run_name"]))
        run_section(run_id, rows.loc[run_id], patience)
    st.subheader("Learning curve over training-set size")
    data_size_section(runs)


page()

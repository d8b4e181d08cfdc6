"""Overfitting inspector: train vs validation error, bias/variance per epoch, diagnosis, early stopping, calibration,
per-class gaps, data-size curve."""

import math

import pandas as pd
import streamlit as st

from core.calibration import loss_rising_while_accuracy_holds
from core.data_scaling import fit_power_law, more_data_sentence
from core.diagnosis import (
    ADVICE,
    DIVERGED,
    GOOD_FIT,
    VARIANCE_THRESHOLD,
    ClassGap,
    EarlyStop,
    Verdict,
    class_gaps,
    early_stop,
    history_of,
    verdict,
)
from core.schema import Artifact, Metric, Param
from dashboard import figures, formats, reader
from dashboard.advice_ui import next_experiments_ui
from dashboard.analysis import (
    capacity_points,
    epoch_entry,
    per_class_frame,
    series_over,
    series_points,
    story_description,
    story_runs,
    sweet_spot,
    with_bias_variance,
)
from dashboard.state import Key
from dashboard.views import (
    artifact,
    image_strip,
    read,
    runs_or_message,
    selected_or_story,
    test_pictures,
    val_pictures,
)
from dashboard.widgets import INSPECTOR_SECTIONS, chart, md, patience_ui, run_picker_ui, section_ui

HISTORY = tuple(
    map(
        str,
        (
            Metric.TRAIN_ACC,
            Metric.VAL_ACC,
            Metric.VAL_LOSS,
            Metric.VAL_ECE,
            Metric.BIAS,
            Metric.VARIANCE,
            Metric.AVOIDABLE_BIAS,
            Metric.EPOCH_SECONDS,
        ),
    )
)
MAX_INSPECTED = 6
CLASS_IMAGES = 24
GAP_COLUMNS = {
    **{name: formats.percent_column(name) for name in ("train error", "val error")},
    "gap": formats.points_column("gap", help="val error - train error, in percentage points"),
    "gap interval": st.column_config.TextColumn(
        "gap interval", help="Newcombe's interval of the gap, Bonferroni-corrected: 95% for all classes together"
    ),
}


def diagnosis_ui(judged: Verdict) -> None:
    cols = st.columns(3)
    cols[0].metric("Best epoch", judged.best_epoch)
    cols[1].metric("Best val acc", formats.percent(judged.best_val_acc))
    cols[2].metric(
        "Final val acc",
        formats.percent(judged.final_val_acc),
        delta=f"{formats.points(-judged.lost_after_best)} after best" if judged.lost_after_best else None,
    )
    more = f" The {INSPECTOR_SECTIONS[4]} tab proposes follow-ups to launch." if judged.diagnosis != GOOD_FIT else ""
    st.markdown(f"**{judged.diagnosis.capitalize()}** at epoch {judged.epochs_trained}: {judged.advice}.{more}")
    st.caption(
        f"Rule: {judged.rule}. A figure is above or below its threshold only when its whole 95% interval is "
        "(thresholds in core/diagnosis.py)."
    )


def saved_words(stop: EarlyStop) -> str:
    seconds = "" if math.isnan(stop.seconds_saved) else f", {formats.duration(stop.seconds_saved)} of training"
    return f"{stop.epochs_saved} epoch{'s' * (stop.epochs_saved != 1)}{seconds}"


def early_stop_ui(history, patience: int) -> None:
    """What stopping at the best epoch, or with the chosen patience, would have saved, and at what cost."""
    timing = history.get(Metric.EPOCH_SECONDS, history[Metric.VAL_ACC] * float("nan"))
    best, patient = early_stop(history[Metric.VAL_ACC], timing), early_stop(history[Metric.VAL_ACC], timing, patience)
    if best.epochs_saved == 0:
        st.markdown(
            f"**Early stopping.** The best epoch ({best.best_epoch}) is the last one trained: stopping "
            "earlier would have saved nothing and kept a worse model."
        )
        return
    words = (
        f"**Early stopping.** Stopping at the best epoch ({best.best_epoch}) would have saved "
        f"{saved_words(best)}, with the same test accuracy (the test set is scored with the best epoch's "
        f"weights). With a patience of {patience}: "
    )
    if patient.epochs_saved == 0:
        words += "training would have run to the end."
    elif patient.best_epoch == best.best_epoch:
        words += f"stopped after epoch {patient.stopped_after}, saving {saved_words(patient)}, same test accuracy."
    else:
        words += (
            f"stopped after epoch {patient.stopped_after}, saving {saved_words(patient)}, but kept epoch "
            f"{patient.best_epoch} (val {formats.percent(patient.best_val_acc)} against "
            f"{formats.percent(best.best_val_acc)}): too little patience for this run."
        )
    st.markdown(words)


def run_section(run_id: str, row, patience: int, section: str) -> None:
    """One run's part of the open section; `row` is its line of the runs table."""
    history = history_of(read(reader.load_metrics, (run_id,), HISTORY), run_id)
    judged = verdict(history, row["yardstick"], row["diverged"])
    if row["diverged"]:
        st.error(f"{md(row['run_name'])} diverged (its loss became NaN, infinite or exploded): {ADVICE[DIVERGED]}.")
    if judged is None:
        st.info(f"{md(row['run_name'])}: no epoch with train and validation accuracy logged yet.")
        return
    history = with_bias_variance(history, row["yardstick"].best_error)  # runs logged by other tools may lack them
    if section == INSPECTOR_SECTIONS[1]:
        calibration_section(run_id, history)
    elif section == INSPECTOR_SECTIONS[2]:
        per_class_section(run_id, row)
    else:
        diagnosis_ui(judged)
        early_stop_ui(history, patience)
        cols = st.columns(2)
        chart(figures.error_gap(history, judged.best_epoch), Key.per_run("gap", run_id), cols[0])
        chart(figures.bias_variance(history), Key.per_run("bv", run_id), cols[1])


@st.fragment  # the reliability epoch redraws this run's calibration only
def calibration_section(run_id: str, history) -> None:
    """Validation loss and calibration error per epoch, the epoch the loss starts rising while accuracy holds, and
    the reliability diagram of any epoch."""
    if Metric.VAL_LOSS not in history:
        return
    rising = loss_rising_while_accuracy_holds(history)
    if rising is not None:
        st.warning(
            f"**Overconfidence.** Validation loss rises after epoch {rising} while validation accuracy holds: "
            "the model grows confident on the images it gets wrong, often the first sign of overfitting."
        )
    cols = st.columns(2)
    chart(figures.calibration_curves(history, rising), Key.per_run("calibration", run_id), cols[0])
    table = artifact(run_id, Artifact.RELIABILITY_VAL_EPOCHS)
    if table is None:
        cols[1].caption(
            f"No reliability diagram: the run logged no {Artifact.RELIABILITY_VAL_EPOCHS} (runs trained "
            "with this project's runners log it every epoch)."
        )
        return
    epochs = table["epochs"]
    epoch = cols[1].select_slider(
        "Reliability after epoch", epochs, value=epochs[-1], key=Key.per_run("reliability_epoch", run_id)
    )
    chart(figures.reliability_diagram(epoch_entry(table, epoch), epoch), Key.per_run("reliability", run_id), cols[1])


def gap_row(gap: ClassGap) -> dict:
    verdict_words = {True: "overfits", False: "no", None: "cannot tell"}[gap.overfits]
    return {
        "class": gap.name,
        "train error": gap.train_error,
        "val error": gap.val_error,
        "gap": gap.gap.estimate,
        "gap interval": f"{formats.points(gap.gap.low)} to {formats.points(gap.gap.high)}",
        "overfits": verdict_words,
    }


def per_class_section(run_id: str, row) -> None:
    """Each class's gap and train error per epoch, the classes that overfit most at the last epoch, and a class's
    misclassified test images."""
    per_class = artifact(run_id, Artifact.PER_CLASS_EPOCHS)
    if per_class is None:
        st.caption(
            f"No per-class view: the run logged no {Artifact.PER_CLASS_EPOCHS} (runs trained with this "
            "project's runners log it every epoch)."
        )
        return
    frame = per_class_frame(per_class)
    limit = figures.heat_limit(frame, ["gap", "train_error"])  # one colour scale for both
    cols = st.columns(2)
    chart(
        figures.class_epoch_heatmap(frame, "gap", "Per-class gap: val error - train error", True, limit),
        Key.per_run("class_gap", run_id),
        cols[0],
    )
    chart(
        figures.class_epoch_heatmap(frame, "train_error", "Per-class train error (bias)", False, limit),
        Key.per_run("class_bias", run_id),
        cols[1],
    )
    last = frame[frame["epoch"] == frame["epoch"].max()]
    gaps = class_gaps(
        last["train_error"], last["val_error"], last["train_support"], last["val_support"], per_class["class_names"]
    )
    flagged = [gap.name for gap in gaps if gap.overfits]
    st.markdown(
        f"**Classes that overfit** after epoch {int(frame['epoch'].max())} (whole interval of the gap above "
        f"{formats.points(VARIANCE_THRESHOLD)}, 95% for all classes together): "
        + (f"class{'es' * (len(flagged) > 1)} {', '.join(map(md, flagged))}" if flagged else "none")
        + "."
    )
    st.dataframe(
        formats.shown(pd.DataFrame([gap_row(g) for g in gaps[: max(5, len(flagged))]]), GAP_COLUMNS),
        hide_index=True,
        column_config=GAP_COLUMNS,
    )
    class_images_ui(run_id, row, [gap.label for gap in gaps], per_class["class_names"])


def class_images_ui(run_id: str, row, labels: list[int], class_names: list[str]) -> None:
    """The misclassified images of one class (widest gap first in the choice), with what they were taken for: the
    validation set's after the last epoch, the set the classes above are judged on; the test set's for a run that
    logged no validation predictions."""
    val, predictions = (artifact(run_id, name) for name in (Artifact.VAL_IMAGES, Artifact.VAL_PREDICTIONS_EPOCHS))
    on_val = val is not None and predictions is not None and predictions["epochs"]
    label = st.selectbox(
        f"Misclassified {'validation images after the last epoch' if on_val else 'test images'}, of class",
        labels,
        format_func=lambda k: class_names[k],
        index=None,
        placeholder="pick a class",
        key=Key.per_run("class_images", run_id),
    )
    if label is None:
        return
    if on_val:
        val_class_images(run_id, row, val, predictions["predicted"][-1], label, class_names)
    else:
        test_class_images(run_id, row, label, class_names)


def val_class_images(run_id: str, row, val: dict, predicted: list[int], label: int, class_names: list[str]) -> None:
    wrong = [r for r, (true, said) in enumerate(zip(val["labels"], predicted, strict=True)) if true == label != said]
    if not wrong:
        st.caption("No validation image of this class was misclassified after the last epoch.")
        return
    shown = wrong[:CLASS_IMAGES]
    captions = [formats.image_caption(val["index"][r], class_names[label], class_names[predicted[r]]) for r in shown]
    st.caption(f"{len(wrong)} images" + (f", the first {len(shown)}" if len(shown) < len(wrong) else "") + ".")
    image_strip(val_pictures(run_id, row["params"], val), shown, captions, width=84)


def test_class_images(run_id: str, row, label: int, class_names: list[str]) -> None:
    wrong = artifact(run_id, Artifact.MISCLASSIFIED)
    rows = wrong[wrong["true"] == label].head(CLASS_IMAGES) if wrong is not None else None
    if rows is None or rows.empty:
        st.caption("No misclassified test image of this class was logged.")
        return
    pictures = test_pictures(run_id, row["params"], rows)
    if pictures is None:
        st.dataframe(rows, hide_index=True)
        return
    st.image(
        pictures,
        width=84,
        caption=[
            formats.image_caption(i, class_names[label], class_names[p], c)
            for i, p, c in zip(rows["index"], rows["predicted"], rows["confidence"], strict=True)
        ],
    )


def each_series(runs, setting: str, what: str, suite: str):
    """(number, run ids, the first run's row, their train and val accuracies) of every series of finished runs that
    differ only in `setting`, whichever suite or sweep made them; a caption naming the suite that makes one when
    there is none."""
    series = series_over(runs, setting)
    if not series:
        st.caption(
            f"No runs in the store differ only in their {what} "
            f"(python -m experiments suite {suite} makes such a series)."
        )
    names = runs.set_index("run_id")
    for number, ids in enumerate(series):
        yield (
            number,
            ids,
            names.loc[ids[0]],
            read(reader.load_metrics, tuple(ids), (str(Metric.TRAIN_ACC), str(Metric.VAL_ACC))),
        )


def data_size_section(runs, inspected: pd.DataFrame) -> None:
    """The learning curve over training-set size of every such series, its power law and what more data brings;
    a series of another model than the inspected runs' says so, as it answers "would more data help?" for that
    model, not theirs."""
    mine = set(zip(inspected["model"], inspected["dataset"], strict=True))
    for number, ids, first, metrics in each_series(runs, Param.TRAIN_SIZE, "training-set size", "data-size"):
        seed = f" of seed {md(first['config']['seed'])}" if "seed" in first["config"] else ""
        other = (first["model"], first["dataset"]) not in mine
        inspected_words = ", ".join(f"{md(m)} on {md(d)}" for m, d in sorted(mine))
        st.markdown(
            f"**{md(first['model'])}** on {md(first['dataset'])}, {len(ids)} runs{seed}: error against "
            "training-set size. A large gap that closes with more data means variance; two high curves that "
            "meet mean bias."
            + (
                f" Another model than the one inspected ({inspected_words}): this says what more data does for "
                f"{md(first['model'])}, not for it (`python -m experiments suite data-size` makes a series)."
                if other
                else ""
            )
        )
        points = series_points(runs, metrics, Param.TRAIN_SIZE)
        fit = fit_power_law(points[Param.TRAIN_SIZE], points["val_error"])
        chart(figures.data_size_curve(points, fit), Key.per_series("datasize", number))
        if fit is not None:
            st.caption(more_data_sentence(fit))


def capacity_words(points, spot: int) -> str:
    """What the capacity curve says, in one sentence."""
    best = points.iloc[spot]
    words = (
        f"Lowest validation error {formats.percent(best['val_error'])} at width ×{best['width']:g} "
        f"({formats.count(best['params_total'])} parameters)"
    )
    if spot == len(points) - 1:
        return words + ": still falling at the largest width, so a bigger model may do better still."
    if spot == 0:
        return words + ": the smallest model; the larger ones buy nothing on this much data."
    return words + ": smaller models underfit, larger ones add nothing or overfit on this much data."


def capacity_section(runs) -> None:
    """The capacity curve of every series of runs that differ only in their width, its sweet spot starred."""
    for number, ids, first, metrics in each_series(runs, "width", "width", "capacity"):
        points = capacity_points(runs, metrics)
        if points.empty:
            continue
        spot = sweet_spot(points)
        st.markdown(
            f"**{md(first['model'])}** on {md(first['dataset'])}, {formats.count(first['train_size'])} "
            f"training images, {len(ids)} widths: error against parameter count. Train error falls as "
            "capacity grows; validation error stops following it where capacity stops helping."
        )
        chart(figures.capacity_curve(points, spot), Key.per_series("capacity", number))
        st.caption(capacity_words(points, spot))


def page() -> None:
    st.title("Overfitting inspector")
    runs, selection = runs_or_message()
    if runs is None:
        return
    rows = runs.set_index("run_id")
    story = story_runs(runs)
    selection = selected_or_story(selection, list(story.values()), story_description(story))
    shown = selection[:MAX_INSPECTED] or [
        run_picker_ui(runs, [], "Run (select runs to inspect several)", key=Key.OVERFITTING_RUN)
    ]
    if len(selection) > MAX_INSPECTED:
        st.info(f"Showing the first {MAX_INSPECTED} of the {len(selection)} selected runs.")
    st.caption(
        "Bias is the train error; variance the validation error minus the train error; avoidable bias the "
        "train error minus the best error reached on the dataset (MNIST 0.2%, Fashion-MNIST 3.5%, 0 on your own "
        "data, or the run's best_error), below 0 when the model fits its training images better than that. Above 1 "
        "point, the first says the model underfits and the second that it overfits."
    )
    section, tab = section_ui(INSPECTOR_SECTIONS, Key.INSPECTOR_SECTION)
    with tab:
        sections_ui(runs, rows, shown, section)


def sections_ui(runs: pd.DataFrame, rows: pd.DataFrame, shown: list[str], section: str) -> None:
    """The open section: each inspected run's part of it, or the store's data-size and capacity series."""
    if section == INSPECTOR_SECTIONS[3]:
        st.subheader("Learning curve over training-set size")
        data_size_section(runs, rows.loc[shown])
        st.subheader("Capacity: error against model size")
        capacity_section(runs)
        return
    if section == INSPECTOR_SECTIONS[4]:
        for run_id in shown:
            st.subheader(md(rows.loc[run_id, "run_name"]))
            next_experiments_ui(run_id, rows.loc[run_id], runs)
        return
    patience = patience_ui() if section == INSPECTOR_SECTIONS[0] else 0
    for run_id in shown:
        st.subheader(md(rows.loc[run_id, "run_name"]))
        run_section(run_id, rows.loc[run_id], patience, section)


page()

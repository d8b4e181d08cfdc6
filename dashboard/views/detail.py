"""Run detail: confusion matrices over epochs with a click-through gallery, per-class accuracy, layers, params."""

import functools

import numpy as np
import pandas as pd
import streamlit as st

from core import stats
from core.diagnosis import GOOD_FIT, HIGH_BIAS, HIGH_VARIANCE, history_of
from core.schema import Artifact, Metric, Tag, Value
from dashboard import figures, formats, reader, state
from dashboard.analysis import (
    STORY,
    closest_runs,
    epoch_position,
    in_cell,
    moved_images,
    off_diagonal_cells,
    run_labels,
    story_runs,
    val_above_test_note,
)
from dashboard.reader import RunRecord
from dashboard.state import IN_URL, Key
from dashboard.views import (
    artifact,
    artifact_location_note,
    image_strip,
    read,
    runs_or_message,
    test_pictures,
    val_pictures,
    why_no_images,
)
from dashboard.widgets import DETAIL_SECTIONS, chart, confusion_source_ui, md, run_picker_ui, section_ui

GALLERY_LIMIT = 40
LAYER_COLUMNS = {
    "output_shape": st.column_config.TextColumn("output shape"),
    "activations": formats.count_column("activations", help="values each layer outputs per image"),
    "params": formats.count_column("params"),
}


def status_message(run: RunRecord) -> None:
    """Say plainly when a run failed, was killed, deleted or is still running."""
    if run.lifecycle_stage == "deleted":
        st.warning("This run is deleted (it can still be restored with MLflow).")
    if run.status in ("FAILED", "KILLED"):
        st.error(f"This run ended {run.status}: {md(run.tags.get(Tag.ERROR, 'no reason recorded'))}")
    elif run.status == "LOST":
        st.error(
            "This run is LOST: its runner stopped sending heartbeats (killed, out of memory, or its machine "
            "is gone). `python -m experiments reap` ends it FAILED; `python -m experiments train --resume "
            "RUN_ID` then continues it from its last epoch."
        )
    elif run.status == "RUNNING":
        st.info("This run is still training; what it has logged so far is shown.")


def choose_cell_from_table(run_id: str) -> None:
    """A ticked row of the most frequent confusions chooses its cell for run_id's gallery."""
    picked = state.ticked(Key.CELLS_TABLE)
    if picked:
        state.choose_cell(Key.GALLERY_CELL, run_id, picked[0])


def chosen_cell(run_id: str) -> tuple[int, int] | None:
    """The (true, predicted) cell last chosen, on the matrix or in the table, for this run (not for another)."""
    return state.chosen_cell(Key.GALLERY_CELL, run_id)


def gallery_ui(run_id: str, run: RunRecord, class_names: list[str], source) -> None:
    """The images in the chosen cell of the matrix shown: the validation set's after an epoch, else the test set's
    misclassified ones (with the weights it was tested with)."""
    cell = chosen_cell(run_id)
    if cell is None:
        st.caption(
            "Click a cell of the matrix or tick a row of the table, to see its images "
            "(of the split and epoch the matrix shows)."
        )
        return
    true, pred = cell
    if source != "test":
        found = val_predictions_at(run_id, (source,))
        if not isinstance(found, str):
            val_gallery_ui(run_id, run, class_names, source, cell, *found)
            return
        st.caption(
            f"The matrix shows the validation set after epoch {source}, but {found[0].lower()}{found[1:]}: "
            f"the images below are the test set's in the same cell, with {tested_weights(run)}."
        )
    st.subheader(f"Test images of true {md(class_names[true])}, predicted {md(class_names[pred])}")
    wrong = artifact(run_id, Artifact.MISCLASSIFIED)
    if wrong is None:
        st.warning(f"This run has no {Artifact.MISCLASSIFIED} artifact.")
        return
    cell_rows = wrong[(wrong["true"] == true) & (wrong["predicted"] == pred)].head(GALLERY_LIMIT)
    if cell_rows.empty:
        st.caption(
            "No misclassified test image in this cell" + (" (the diagonal is correct)." if true == pred else ".")
        )
        return
    pictures = test_pictures(run_id, run.params, cell_rows)
    if pictures is None:
        st.warning(f"This run's test images are not on this machine: {why_no_images(run.params)}.")
        st.dataframe(cell_rows, hide_index=True)
        return
    st.image(
        pictures,
        width=84,
        caption=[
            formats.image_caption(i, class_names[true], class_names[pred], c)
            for i, c in zip(cell_rows["index"], cell_rows["confidence"], strict=True)
        ],
    )


def val_predictions_at(run_id: str, epochs: tuple[int, ...]) -> tuple[dict, list] | str:
    """The run's validation images record (val_images.json) and its predictions after each of `epochs`, or the
    sentence saying what it did not log."""
    val, predictions = (artifact(run_id, name) for name in (Artifact.VAL_IMAGES, Artifact.VAL_PREDICTIONS_EPOCHS))
    if val is None or predictions is None:
        return (
            f"This run logged no validation predictions ({Artifact.VAL_IMAGES} and "
            f"{Artifact.VAL_PREDICTIONS_EPOCHS}; runs trained here since they exist log them every epoch)"
        )
    missing = [str(e) for e in epochs if e not in predictions["epochs"]]
    if missing:
        return f"This run has no validation predictions of epoch {' and '.join(missing)}"
    return val, [predictions["predicted"][epoch_position(predictions["epochs"], e)] for e in epochs]


def val_gallery_ui(
    run_id: str,
    run: RunRecord,
    class_names: list[str],
    epoch: int,
    cell: tuple[int, int],
    val: dict,
    predicted: list[list[int]],
) -> None:
    """The validation images in the matrix's cell after `epoch`, as many as the matrix counts there."""
    true, pred = cell
    found = in_cell(val["labels"], predicted[0], true, pred)
    st.subheader(
        f"Validation images of true {md(class_names[true])}, predicted {md(class_names[pred])} after epoch {epoch}"
    )
    shown = found[:GALLERY_LIMIT]
    st.caption(
        f"{len(found)} images"
        + (f", the first {len(shown)}" if len(shown) < len(found) else "")
        + " (captions: the image's index in its file)."
    )
    image_strip(
        val_pictures(run_id, run.params, val),
        shown,
        [formats.image_caption(val["index"][r], class_names[true], class_names[pred]) for r in shown],
        width=84,
    )


def tested_weights(run: RunRecord) -> str:
    """The weights the run's test set was evaluated with, in words (runs older than the tag: best-val)."""
    handed = run.tags.get(Tag.TESTED_WEIGHTS) == Value.TESTED_AS_HANDED
    return "the weights handed to finish()" if handed else "best-val weights"


@st.fragment  # the epoch, the normalisation and a clicked cell redraw this section only
def confusion_section(run_id: str, run: RunRecord) -> None:
    """The test or an epoch's validation confusion matrix, its most frequent confusions and a cell's gallery."""
    test = artifact(run_id, Artifact.CONFUSION_TEST)
    per_epoch = artifact(run_id, Artifact.CONFUSION_VAL_EPOCHS)
    if test is None and per_epoch is None:
        st.info("This run has no confusion matrix artifacts (yet).")
        return
    class_names = (test or per_epoch)["class_names"]
    source, normalize = confusion_source_ui(per_epoch["epochs"] if per_epoch else [], test is not None)
    matrix = test["matrix"] if source == "test" else per_epoch["matrices"][epoch_position(per_epoch["epochs"], source)]
    st.caption(f"Test set, {tested_weights(run)}" if source == "test" else f"Validation set after epoch {source}")
    cols = st.columns([3, 2])
    clicked = Key.per_run(Key.CONFUSION_CHART, run_id)  # a run's own: ECharts keeps a keyed chart's selection
    with cols[0]:
        chart(
            figures.confusion_matrix(np.array(matrix), class_names, normalize),
            clicked,
            on_select=functools.partial(state.choose_clicked_cell, clicked, Key.GALLERY_CELL, run_id, len(class_names)),
        )
    with cols[1]:
        st.markdown("**Most frequent confusions**")
        cells = off_diagonal_cells(matrix, class_names)
        state.remember_rows(
            Key.CELLS_TABLE, [(int(t), int(p)) for t, p in zip(cells["true"], cells["predicted"], strict=True)]
        )
        st.dataframe(
            cells[["true name", "predicted name", "count"]],
            hide_index=True,
            key=Key.CELLS_TABLE,
            on_select=functools.partial(choose_cell_from_table, run_id),
            selection_mode="single-row",
            height=380,
        )
    gallery_ui(run_id, run, class_names, source)


def epoch_difference_section(run_id: str, run: RunRecord) -> None:
    """How the validation confusions moved between two epochs of the run, and the images that moved in a cell."""
    per_epoch = artifact(run_id, Artifact.CONFUSION_VAL_EPOCHS)
    if per_epoch is None or len(per_epoch["epochs"]) < 2:
        st.info(
            f"This needs the validation confusion matrices of two epochs or more ({Artifact.CONFUSION_VAL_EPOCHS})."
        )
        return
    epochs, class_names = per_epoch["epochs"], per_epoch["class_names"]
    a, b = st.select_slider(
        "Validation matrices of epochs",
        options=sorted(set(epochs)),
        value=(epochs[0], epochs[-1]),
        key=Key.per_run(Key.EPOCH_PAIR, run_id),
    )
    matrices = [np.array(per_epoch["matrices"][epoch_position(epochs, e)]) for e in (a, b)]
    cols = st.columns([3, 2])
    clicked = Key.per_run(Key.EPOCH_DIFF_CHART, run_id)
    with cols[0]:
        chart(
            figures.confusion_difference(*matrices, class_names, (f"epoch {a}", f"epoch {b}")),
            clicked,
            on_select=functools.partial(state.choose_clicked_cell, clicked, Key.MOVED_CELL, run_id, len(class_names)),
        )
    chosen = state.chosen_cell(Key.MOVED_CELL, run_id)
    with cols[1]:
        if not chosen:
            st.caption(
                "Click a cell to see the validation images that moved into it or out of it between the two epochs."
            )
            return
        moved_ui(run_id, run, class_names, (a, b), chosen)


def moved_ui(run_id: str, run: RunRecord, class_names: list[str], pair: tuple[int, int], cell: tuple[int, int]) -> None:
    """The validation images of the cell's true class whose prediction entered or left the cell between the epochs."""
    found = val_predictions_at(run_id, pair)
    if isinstance(found, str):
        st.info(found + ".")
        return
    val, (before, after) = found
    true, pred = cell
    into, out_of = moved_images(val["labels"], before, after, true, pred)
    pictures = val_pictures(run_id, run.params, val)
    st.markdown(
        f"**True {md(class_names[true])}, predicted {md(class_names[pred])}**: {len(into)} moved in, "
        f"{len(out_of)} moved out between epoch {pair[0]} and epoch {pair[1]} (captions: the validation "
        "image's index in its file and its prediction at the other epoch)."
    )
    for title, rows, other, when in (("Moved in", into, before, "was"), ("Moved out", out_of, after, "now")):
        if len(rows):
            st.caption(title)
            shown = rows[:GALLERY_LIMIT]
            image_strip(
                pictures, shown, [f"#{val['index'][r]} {when} {class_names[other[r]]}" for r in shown], width=64
            )


def difference_section(runs: pd.DataFrame, run_id: str, selection: list[str]) -> None:
    others = closest_runs(runs, run_id, [r for r in (selection or list(runs["run_id"])) if r != run_id])
    if not others:
        st.info("There is no other run to compare this one with.")
        return
    other = st.selectbox(
        "Compare with (closest first: same configuration, then same data and model)",
        others,
        format_func=run_labels(runs, others).get,
        key=Key.DIFF_RUN,
        bind=IN_URL,
    )
    a, b = (artifact(r, Artifact.CONFUSION_TEST) for r in (run_id, other))
    if a is None or b is None:
        st.info("Both runs need a test confusion matrix.")
        return
    labels = run_labels(runs, [run_id, other])
    chart(
        figures.confusion_difference(
            np.array(a["matrix"]),
            np.array(b["matrix"]),
            a["class_names"],
            (labels[run_id], labels[other]),
            selectable=False,  # nothing here opens a cell's images
        ),
        Key.DIFF_CHART,
    )


def tables_section(run_id: str, run: RunRecord) -> None:
    per_class = artifact(run_id, Artifact.PER_CLASS)
    if per_class is not None:
        st.subheader("Per-class test accuracy")
        chart(figures.per_class_accuracy(per_class), Key.PER_CLASS_CHART)
    layers = artifact(run_id, Artifact.LAYERS)
    st.subheader("Layers")
    if layers is None:
        st.info(f"This run has no {Artifact.LAYERS} artifact.")
    else:
        # The CSV reads Sequential layers' names ("0", "1") and one-dimensional shapes ("10") as numbers.
        layers = layers.astype({"layer": str, "output_shape": str})
        total = pd.DataFrame(
            [
                {
                    "layer": "total",
                    "type": "",
                    "output_shape": "",
                    "activations": layers["activations"].sum(),
                    "params": layers["params"].sum(),
                }
            ]
        )
        st.dataframe(pd.concat([layers, total], ignore_index=True), hide_index=True, column_config=LAYER_COLUMNS)
    cols = st.columns(2)
    cols[0].subheader("Params")
    cols[0].dataframe(pd.Series(run.params, name="value").sort_index())
    cols[1].subheader("Tags")
    cols[1].dataframe(
        pd.Series(
            {k: formats.tag_value(k, v) for k, v in run.tags.items() if not k.startswith("mlflow.")},
            name="value",
            dtype=str,
        ).sort_index(),
        column_config={"value": st.column_config.TextColumn("value", width="large")},
    )  # the rule


def origin_note(row: pd.Series) -> None:
    """For a run logged by another tool: which convention its metrics were read with, what was derived, and what
    it lacks and how to log it."""
    reading = row["reading"]
    if reading.convention.native:
        return
    mapped = reading.convention.words(reading.logged) or "its metrics under this schema's own names"
    st.info(
        f"Logged by another tool: its metrics were read with the **{md(reading.convention.name)}** convention "
        f"({md(mapped)}). Derived here from its history, with the runner's own functions "
        "(core/diagnosis.py): bias, variance, avoidable bias, best epoch and the diagnosis; its sizes are "
        "unknown, so the diagnosis judges point estimates. Confusion matrices, galleries and the per-layer table "
        f"need artifacts it did not log: `{Artifact.CONFUSION_TEST}`, `{Artifact.MISCLASSIFIED}` and "
        f"`{Artifact.LAYERS}` as docs/schema.md describes them, or train with `python -m experiments train`. "
        "A `conventions.toml` beside the store maps other names (docs/conventions.md)."
    )


def summary_header(row: pd.Series) -> None:
    """What a run came to, at a glance: status, test accuracy with its interval, best validation accuracy and its
    epoch, duration, size; then the diagnosis in full (a metric tile would cut it)."""
    cols = st.columns(5)
    cols[0].metric("Status", row["status"])
    scored = 0 <= row["test_acc"] <= 1 and row["test_size"] > 0  # a killed or another tool's run may lack either
    test = stats.accuracy_interval_of(row["test_acc"], int(row["test_size"])) if scored else None
    cols[1].metric(
        "Test accuracy",
        formats.percent(row["test_acc"]),
        help=f"95% interval {test.bounds_text()} on {formats.count(row['test_size'])} images" if test else None,
    )
    cols[2].metric(
        "Best val accuracy",
        formats.percent(row["best_val_acc"]),
        help=None if pd.isna(row["best_epoch"]) else f"at epoch {int(row['best_epoch'])}",
    )
    cols[3].metric("Duration", formats.duration(row["duration_s"]))
    cols[4].metric("Parameters", formats.count(row["params_total"]))
    note = val_above_test_note(row["best_val_acc"], row["test_acc"])
    if note:
        st.caption(note)
    if isinstance(row["diagnosis"], str) and row["diagnosis"]:
        st.markdown(f"**Diagnosis:** {md(row['diagnosis'])} (the Overfitting inspector shows why)")


def page() -> None:
    st.title("Run detail")
    runs, selection = runs_or_message()
    if runs is None:
        return
    story = story_runs(runs)  # with nothing selected, the overfitting run of the store's story comes first
    first = {story[d]: d for d in (HIGH_VARIANCE, HIGH_BIAS, GOOD_FIT) if d in story}
    run_id = run_picker_ui(runs, selection, "Run", key=Key.DETAIL_RUN, first=tuple(first))
    if not selection and run_id in first:
        st.caption(
            f"Nothing is selected, so this shows a run of the store that {STORY[first[run_id]]}. Pick another "
            "above, or select runs (Runs page or sidebar) to see yours."
        )
    run = read(reader.load_run, run_id)
    status_message(run)
    row = runs.set_index("run_id").loc[run_id]
    summary_header(row)
    origin_note(row)
    artifact_location_note(run_id)
    section, tab = section_ui(DETAIL_SECTIONS, Key.DETAIL_SECTION)
    with tab:
        if section == DETAIL_SECTIONS[1]:
            epoch_difference_section(run_id, run)
        elif section == DETAIL_SECTIONS[2]:
            difference_section(runs, run_id, selection)
        elif section == DETAIL_SECTIONS[3]:
            tables_section(run_id, run)
        else:
            curves_section(run_id, row, selection)
            confusion_section(run_id, run)


def curves_section(run_id: str, row: pd.Series, selection: list[str]) -> None:
    """The run's learning curves (in its Compare colour when selected) and its per-epoch metrics as a CSV."""
    points = read(reader.load_metrics, (run_id,), tuple(map(str, Metric.PER_EPOCH)))
    history = history_of(points, run_id)
    if history.empty:
        st.info("This run has no metrics yet.")
        return
    colors = figures.run_colors(selection) if run_id in selection else None
    chart(figures.learning_curves(points, {run_id: row["run_name"]}, colors), Key.DETAIL_CURVES)
    st.download_button(
        "Download per-epoch metrics (CSV)", history.to_csv(), file_name=f"{run_id}_metrics.csv", mime="text/csv"
    )


page()

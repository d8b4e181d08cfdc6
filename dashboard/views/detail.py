"""Run detail: confusion matrices over epochs with a click-through gallery, per-class accuracy, layers, params."""
import numpy as np
import pandas as pd
import streamlit as st

from dashboard import figures, reader
from dashboard.analysis import off_diagonal_cells, run_labels, wide_history
from dashboard.views import runs_or_message
from dashboard.widgets import confusion_source_ui, md, run_picker_ui
from experiments.schema import Artifact, Metric, Param, Tag

GALLERY_KEY = "gallery_cell"
GALLERY_LIMIT = 40


def status_message(run: dict) -> None:
    """Say plainly when a run failed, was killed, deleted or is still running."""
    if run["lifecycle_stage"] == "deleted":
        st.warning("This run is deleted (it can still be restored with MLflow).")
    if run["status"] in ("FAILED", "KILLED"):
        st.error(f"This run ended {run['status']}: {md(run['tags'].get(Tag.ERROR, 'no reason recorded'))}")
    elif run["status"] == "RUNNING":
        st.info("This run is still training; what it has logged so far is shown.")


def cell_from_events() -> tuple[int, int] | None:
    """The (true, predicted) cell last chosen by a click/box on the matrix or a row of the cells table."""
    chart = st.session_state.get("confusion_chart")
    table = st.session_state.get("cells_table")
    if chart and chart.get("selection", {}).get("points"):
        point = chart["selection"]["points"][0]  # x is the predicted class, y the true class
        st.session_state[GALLERY_KEY] = (int(point["y"]), int(point["x"]))
    elif table and table.get("selection", {}).get("rows"):
        row = st.session_state["cells_frame"].iloc[table["selection"]["rows"][0]]
        st.session_state[GALLERY_KEY] = (int(row["true"]), int(row["predicted"]))
    return st.session_state.get(GALLERY_KEY)


def gallery_ui(uri: str, run_id: str, run: dict, class_names: list[str]) -> None:
    cell = cell_from_events()
    if cell is None:
        st.caption("Drag a box around a cell of the matrix, or tick a row of the table, to see its misclassified "
                   "test images.")
        return
    true, pred = cell
    st.subheader(f"Test images of true {md(class_names[true])}, predicted {md(class_names[pred])}")
    wrong = reader.load_artifact(uri, run_id, Artifact.MISCLASSIFIED)
    if wrong is None:
        st.warning(f"This run has no {Artifact.MISCLASSIFIED} artifact.")
        return
    cell_rows = wrong[(wrong["true"] == true) & (wrong["predicted"] == pred)].head(GALLERY_LIMIT)
    if cell_rows.empty:
        st.caption("No misclassified test image in this cell" + (" (the diagonal is correct)." if true == pred else "."))
        return
    images = reader.load_test_images(run["params"].get(Param.DATASET, "mnist"), run["params"].get(Param.DATA_DIR))
    if images is None:
        st.warning("The dataset's test images cannot be read on this machine.")
        st.dataframe(cell_rows, hide_index=True)
        return
    st.image([images[i] for i in cell_rows["index"]], width=84,
             caption=[f"#{i} {class_names[true]}→{class_names[pred]} ({c:.0%})"
                      for i, c in zip(cell_rows["index"], cell_rows["confidence"], strict=True)])


def confusion_section(uri: str, run_id: str, run: dict) -> list[str] | None:
    test = reader.load_artifact(uri, run_id, Artifact.CONFUSION_TEST)
    per_epoch = reader.load_artifact(uri, run_id, Artifact.CONFUSION_VAL_EPOCHS)
    if test is None and per_epoch is None:
        st.info("This run has no confusion matrix artifacts (yet).")
        return None
    class_names = (test or per_epoch)["class_names"]
    source, normalize = confusion_source_ui(per_epoch["epochs"] if per_epoch else [], test is not None)
    matrix = test["matrix"] if source == "test" else per_epoch["matrices"][per_epoch["epochs"].index(source)]
    st.caption("Test set, best-val weights" if source == "test" else f"Validation set after epoch {source}")
    cols = st.columns([3, 2])
    with cols[0]:
        st.plotly_chart(figures.confusion_matrix(np.array(matrix), class_names, normalize), key="confusion_chart",
                        on_select="rerun", selection_mode=("points", "box"))
    with cols[1]:
        st.markdown("**Most frequent confusions**")
        cells = off_diagonal_cells(matrix, class_names)
        st.session_state["cells_frame"] = cells
        st.dataframe(cells[["true name", "predicted name", "count"]], hide_index=True, key="cells_table",
                     on_select="rerun", selection_mode="single-row", height=380)
    gallery_ui(uri, run_id, run, class_names)
    return class_names


def difference_section(uri: str, runs: pd.DataFrame, run_id: str, selection: list[str]) -> None:
    others = [r for r in (selection or list(runs["run_id"])) if r != run_id]
    if not others:
        return
    st.subheader("Difference with another run")
    other = st.selectbox("Compare with", others, format_func=run_labels(runs, others).get, key="diff_run")
    a, b = (reader.load_artifact(uri, r, Artifact.CONFUSION_TEST) for r in (run_id, other))
    if a is None or b is None:
        st.info("Both runs need a test confusion matrix.")
        return
    labels = run_labels(runs, [run_id, other])
    st.plotly_chart(figures.confusion_difference(np.array(a["matrix"]), np.array(b["matrix"]), a["class_names"],
                                                 (labels[run_id], labels[other])), key="confusion_diff")


def tables_section(uri: str, run_id: str, run: dict) -> None:
    per_class = reader.load_artifact(uri, run_id, Artifact.PER_CLASS)
    if per_class is not None:
        st.subheader("Per-class test accuracy")
        st.plotly_chart(figures.per_class_accuracy(per_class), key="per_class")
    layers = reader.load_artifact(uri, run_id, Artifact.LAYERS)
    st.subheader("Layers")
    if layers is None:
        st.info(f"This run has no {Artifact.LAYERS} artifact.")
    else:
        layers["layer"] = layers["layer"].astype(str)  # Sequential layers are named "0", "1", ...
        total = pd.DataFrame([{"layer": "total", "type": "", "output_shape": "",
                               "activations": layers["activations"].sum(), "params": layers["params"].sum()}])
        st.dataframe(pd.concat([layers, total], ignore_index=True), hide_index=True)
    cols = st.columns(2)
    cols[0].subheader("Params")
    cols[0].dataframe(pd.Series(run["params"], name="value").sort_index())
    cols[1].subheader("Tags")
    cols[1].dataframe(pd.Series({k: v for k, v in run["tags"].items() if not k.startswith("mlflow.")},
                                name="value", dtype=str).sort_index())


def page() -> None:
    st.title("Run detail")
    runs, selection = runs_or_message()
    if runs is None:
        return
    uri = reader.current_uri()
    run_id = run_picker_ui(runs, selection, "Run", key="detail_run")
    run = reader.load_run(uri, run_id)
    status_message(run)
    history = wide_history(reader.load_metrics(uri, (run_id,), tuple(map(str, Metric.PER_EPOCH))), run_id)
    if history.empty:
        st.info("This run has no metrics yet.")
    else:
        st.download_button("Download per-epoch metrics (CSV)", history.to_csv(), file_name=f"{run_id}_metrics.csv",
                           mime="text/csv")
    confusion_section(uri, run_id, run)
    difference_section(uri, runs, run_id, selection)
    tables_section(uri, run_id, run)


page()

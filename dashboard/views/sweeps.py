"""Sweeps: the trials of one sweep as a table and parallel coordinates, the best highlighted, Optuna's
parameter importances, and a click through to any trial's run."""
import pandas as pd
import streamlit as st

from dashboard import figures, reader
from dashboard.analysis import best_trial_position, param_importances, trial_table
from dashboard.widgets import SELECTION_KEY, TRIAL_PICK_KEY, md, sweep_picker_ui, trial_picker_ui
from experiments.schema import Artifact

TRIALS_KEY = "sweep_trials_table"
TRIAL_COLUMN_CONFIG = {
    "best_val_acc": st.column_config.NumberColumn("best val acc (objective)", format="percent"),
    "test_acc": st.column_config.NumberColumn("test acc", format="percent"),
    "epochs_trained": st.column_config.NumberColumn("epochs trained", format="%d"),
    "trial": st.column_config.NumberColumn("trial", format="%d"),
}


def open_trial(run_id: str) -> None:
    """Show the trial's run on the Run detail page (and add it to the selection)."""
    st.session_state[SELECTION_KEY] = [*st.session_state.get(SELECTION_KEY, []), run_id]
    st.session_state["detail_run"] = run_id
    st.switch_page("views/detail.py")


def pick_ticked_trial() -> None:
    """A row ticked in the trials table becomes the trial to open."""
    rows = st.session_state[TRIALS_KEY]["selection"]["rows"]
    if rows:
        st.session_state[TRIAL_PICK_KEY] = st.session_state["sweep_trial_ids"][rows[0]]


def summary_section(sweep: pd.Series, trials: pd.DataFrame) -> None:
    """Trial counts by state and the best objective so far."""
    counts = trials["state"].value_counts()
    cols = st.columns(5)
    planned = f"{sweep['planned']:.0f} planned" if pd.notna(sweep["planned"]) else "planned size unknown"
    cols[0].metric("Trial runs", len(trials), help=f"{planned}; a failed trial's values may run again")
    for col, state in zip(cols[1:4], ("complete", "pruned", "failed"), strict=True):
        col.metric(state.capitalize(), int(counts.get(state, 0)))
    best = trials["best_val_acc"].where(trials["state"] == "complete").max()
    cols[4].metric("Best val acc", f"{best:.2%}" if pd.notna(best) else "—")
    st.caption(f"{md(sweep['method'])} sweep, pruner {md(sweep['pruner'])}, status {sweep['status']}. "
               "The objective is each trial's best validation accuracy; test accuracy is shown, never optimised.")


def page() -> None:
    st.title("Sweeps")
    uri = reader.current_uri()
    try:
        sweeps = reader.load_sweeps(uri)
    except reader.StoreError as err:
        st.error(str(err))
        return
    if sweeps.empty:
        st.info("No sweeps in the tracking store yet. Start one with `.venv/bin/python -m experiments sweep smoke` "
                "(specs live in sweeps/).")
        return
    sweep = sweep_picker_ui(sweeps)
    trials = reader.load_sweep_trials(uri, sweep["run_id"])
    if trials.empty:
        st.info("This sweep has no trial runs yet.")
        return
    summary_section(sweep, trials)
    table = trial_table(trials)
    best = best_trial_position(table)
    searched = [c for c in table.columns if c not in reader.TRIAL_COLUMNS]
    st.subheader("Trials")
    best_label = table.index[best] if best is not None else None
    shown = table[["trial", "state", *searched, "best_val_acc", "test_acc", "epochs_trained", "run_name"]]
    numeric = [c for c in searched if pd.api.types.is_numeric_dtype(table[c])]
    styled = shown.style.format({c: "{:.4g}" for c in numeric}).apply(
        lambda row: ["background-color: #fde0dd" if row.name == best_label else "" for _ in row], axis=1)
    st.session_state["sweep_trial_ids"] = list(table["run_id"])
    st.dataframe(styled, hide_index=True, column_config=TRIAL_COLUMN_CONFIG, key=TRIALS_KEY,
                 on_select=pick_ticked_trial, selection_mode="single-row", width="stretch")
    if best is not None:
        st.caption(f"Best trial (red): {md(table['run_name'].iloc[best])}.")
    run_id = trial_picker_ui(table, best)
    if st.button("Open in Run detail", key="open_trial"):
        open_trial(run_id)
    measured = table[table["best_val_acc"].notna()]
    if len(measured) >= 2:
        st.subheader("Parallel coordinates")
        figure = figures.parallel_coordinates(measured[searched], measured["best_val_acc"].values, "best val acc",
                                              best_trial_position(measured))
        st.plotly_chart(figure, key="sweep_parallel")
    spec = reader.load_artifact(uri, sweep["run_id"], Artifact.SWEEP_SPEC)
    importances = param_importances(trials, spec["distributions"]) if spec else {}
    st.subheader("Parameter importances")
    if importances:
        st.plotly_chart(figures.param_importances(importances), key="sweep_importances")
    else:
        st.caption("Optuna needs at least two complete trials with different results to rank the parameters.")


page()

"""Runs: every run in one sortable, filterable table; ticked rows join the selection."""
import streamlit as st

from dashboard import state
from dashboard.analysis import filter_runs
from dashboard.state import Key
from dashboard.views import runs_or_message
from dashboard.widgets import live_refresh_ui, run_filters_ui

SHOWN_COLUMNS = ["run_name", "model", "dataset", "status", "test_acc", "best_val_acc", "best_epoch", "gap",
                 "diagnosis", "params_total", "epochs", "progress", "duration_s", "start", "experiment", "suite",
                 "sweep"]
COLUMN_CONFIG = {
    "run_name": "run", "duration_s": st.column_config.NumberColumn("duration (s)", format="%.0f"),
    "progress": st.column_config.ProgressColumn("progress", min_value=0, max_value=1, format="percent",
                                                help="epochs trained of those planned, while a run is training"),
    "test_acc": st.column_config.NumberColumn("test acc", format="percent"),
    "best_val_acc": st.column_config.NumberColumn("best val acc", format="percent"),
    "best_epoch": st.column_config.NumberColumn("best epoch", format="%d"),
    "epochs": st.column_config.NumberColumn("epochs trained", format="%d"),
    "gap": st.column_config.NumberColumn("train-val gap", format="percent",
                                         help="last trained epoch's val error - train error"),
    "params_total": st.column_config.NumberColumn("params", format="localized"),
    "start": st.column_config.DatetimeColumn("start", format="YYYY-MM-DD HH:mm"),
}


def add_table_choice_to_selection() -> None:
    """Rows ticked in the table replace the shown runs' part of the selection; hidden runs stay selected."""
    shown = state.remembered_rows(Key.RUNS_TABLE)
    state.set_selection([r for r in state.selection() if r not in shown] + state.ticked(Key.RUNS_TABLE))


def page() -> None:
    st.title("Runs")
    runs, selection = runs_or_message()
    if runs is None:
        return
    live_refresh_ui(st.session_state.get(Key.LIVE, False))
    shown = filter_runs(runs, **run_filters_ui(runs))
    running = shown["status"] == "RUNNING"
    shown = shown.assign(progress=(shown["epochs"] / shown["params_epochs"]).clip(0, 1).where(running))
    state.remember_rows(Key.RUNS_TABLE, shown["run_id"])
    st.caption(f"{len(shown)} of {len(runs)} runs shown, {len(selection)} selected. Best epoch, gap and diagnosis "
               "are logged by the runner, or derived from the run's history (running or foreign runs); click a "
               "header to sort, tick rows to select.")
    st.dataframe(shown[SHOWN_COLUMNS], hide_index=True, column_config=COLUMN_CONFIG, key=Key.RUNS_TABLE,
                 on_select=add_table_choice_to_selection, selection_mode="multi-row", width="stretch")


page()

"""Sweeps: the trials of one sweep as a table and parallel coordinates, the best highlighted, Optuna's
parameter importances, and a click through to any trial's run."""

import pandas as pd
import streamlit as st

from core.schema import Artifact, Value
from dashboard import figures, formats, reader, state
from dashboard.analysis import best_trial_lead, best_trial_position, param_importances, trial_table
from dashboard.state import Key
from dashboard.views import artifact, read, runs_or_message
from dashboard.widgets import chart, md, sweep_picker_ui, trial_picker_ui

RELIABLE_IMPORTANCES = 20  # complete trials below which importances are flagged as hints
TRIAL_COLUMN_CONFIG = {
    "best_val_acc": formats.percent_column("best val acc (objective)"),
    "test_acc": formats.percent_column("test acc"),
    "epochs_trained": st.column_config.NumberColumn("epochs trained", format="%d"),
    "trial": st.column_config.NumberColumn("trial", format="%d"),
}


def pick_ticked_trial() -> None:
    """A row ticked in the trials table becomes the trial to open."""
    ticked = state.ticked(Key.SWEEP_TRIALS_TABLE)
    if ticked:
        state.set_value(Key.TRIAL_PICK, ticked[0])


def summary_section(sweep: pd.Series, trials: pd.DataFrame) -> None:
    """Trial counts by state and the best objective so far."""
    counts = trials["state"].value_counts()
    cols = st.columns(5)
    planned = f"{sweep['planned']:.0f} planned" if pd.notna(sweep["planned"]) else "planned size unknown"
    cols[0].metric("Trial runs", len(trials), help=f"{planned}; a failed trial's values may run again")
    for col, trial_state in zip(cols[1:4], (Value.TRIAL_COMPLETE, Value.TRIAL_PRUNED, Value.TRIAL_FAILED), strict=True):
        col.metric(trial_state.capitalize(), int(counts.get(trial_state, 0)))
    best = trials["best_val_acc"].where(trials["state"] == Value.TRIAL_COMPLETE).max()
    cols[4].metric("Best val acc", formats.percent(best) or "—")
    st.caption(
        f"{md(sweep['method'])} sweep, pruner {md(sweep['pruner'])}, status {sweep['status']}. "
        "The objective is each trial's best validation accuracy; test accuracy is shown, never optimised."
    )


def lead_text(table: pd.DataFrame, runs: pd.DataFrame) -> str:
    """Whether the best trial really leads the runner-up, or only by validation noise."""
    found = best_trial_lead(table, runs.set_index("run_id")["val_size"])
    if found is None:
        return ""
    lead = found.lead
    verdict = (
        "a real lead"
        if lead.low > 0
        else "too close to call on this few validation images; train the leaders "
        "over seeds (`repeats`) or validate on more images before trusting the ranking"
    )
    runner_up = md(table["run_name"].iloc[found.runner_up])
    return (
        f" It leads the runner-up, {runner_up}, by {formats.points(lead.estimate)} (95% CI "
        f"{formats.points(lead.low)} to {formats.points(lead.high)}, {formats.count(found.val_size)} validation "
        f"images): {verdict}."
    )


def page() -> None:
    st.title("Sweeps")
    runs, _ = runs_or_message()  # draws the sidebar's run selection here too, so it is kept
    if runs is None:
        return
    sweeps = read(reader.load_sweeps)
    if sweeps.empty:
        st.info(
            "No sweeps in the tracking store yet. Start one with `.venv/bin/python -m experiments sweep smoke` "
            "(specs live in specs/)."
        )
        return
    sweep = sweep_picker_ui(sweeps)
    trials = read(reader.load_sweep_trials, sweep["run_id"])
    if trials.empty:
        st.info("This sweep has no trial runs yet.")
        return
    summary_section(sweep, trials)
    table = trial_table(trials)
    best = best_trial_position(table)
    searched = [c for c in table.columns if c not in reader.TRIAL_COLUMNS]
    st.subheader("Trials")
    best_label = table.index[best] if best is not None else None
    columns = ["trial", "state", *searched, "best_val_acc", "test_acc", "epochs_trained", "run_name"]
    shown = formats.shown(table[columns], TRIAL_COLUMN_CONFIG)
    numeric = [c for c in searched if pd.api.types.is_numeric_dtype(table[c])]
    styled = shown.style.format(dict.fromkeys(numeric, "{:.4g}")).apply(
        lambda row: ["background-color: #e5f5e0" if row.name == best_label else "" for _ in row], axis=1
    )
    state.remember_rows(Key.SWEEP_TRIALS_TABLE, table["run_id"])
    st.dataframe(
        styled,
        hide_index=True,
        column_config=TRIAL_COLUMN_CONFIG,
        key=Key.SWEEP_TRIALS_TABLE,
        on_select=pick_ticked_trial,
        selection_mode="single-row",
        width="stretch",
    )
    if best is not None:
        st.caption(
            f"Best trial (green): {md(table['run_name'].iloc[best])}, by best validation accuracy, what the sweep "
            "chose on (its test images stay unseen; the Runs page ranks runs by test accuracy)."
            + lead_text(table, runs)
        )
    run_id = trial_picker_ui(table, best)
    # The callback selects the run, and asks for Run detail, before the next run draws anything.
    st.button("Open in Run detail", key=Key.OPEN_TRIAL, on_click=state.open_in_detail, args=(run_id,))
    measured = table[table["best_val_acc"].notna()]
    if len(measured) >= 2:
        st.subheader("Parallel coordinates")
        figure = figures.parallel_coordinates(
            measured[searched], measured["best_val_acc"].values, "best val acc", best_trial_position(measured)
        )
        chart(figure, Key.SWEEP_PARALLEL_CHART)
    spec = artifact(sweep["run_id"], Artifact.SWEEP_SPEC)
    importances = param_importances(trials, spec["distributions"]) if spec else {}
    st.subheader("Parameter importances")
    if importances:
        chart(figures.param_importances(importances), Key.SWEEP_IMPORTANCES_CHART)
        complete = int((trials["state"] == Value.TRIAL_COMPLETE).sum())
        if complete < RELIABLE_IMPORTANCES:
            st.caption(
                f"From {complete} complete trials only: fANOVA's importances need a few dozen to be reliable "
                f"(below {RELIABLE_IMPORTANCES} they are hints), and each trial's objective is one validation "
                "accuracy on one seed."
            )
    else:
        st.caption("Optuna needs at least two complete trials with different results to rank the parameters.")


page()

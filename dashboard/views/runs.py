"""Runs: every run in one sortable, filterable table, or one row per config group over seeds; the ticks are the
selection."""

import functools

import pandas as pd
import streamlit as st

from core import stats
from core.diagnosis import BEST_ERROR, BIAS_THRESHOLD, VARIANCE_THRESHOLD, VERDICT
from dashboard import formats, state
from dashboard.analysis import (
    STORY,
    filter_runs,
    group_table,
    incomplete_terms,
    partly_selected,
    ranks,
    run_labels,
    run_states,
    search_hint,
    seeded_groups,
    sorted_runs,
    story_runs,
    with_test_intervals,
)
from dashboard.state import IN_URL, Key
from dashboard.views import runs_or_message
from dashboard.widgets import (
    CONFIGURATION,
    LIVE_SECONDS,
    MAX_COMPARE,
    live_refresh_ui,
    md,
    run_filters_ui,
    table_view_ui,
)

BEST_ERRORS = ", ".join(f"{name} {error:.1%}" for name, error in BEST_ERROR.items())
FIRST_COLUMNS = [  # what answers "which run is best, which overfits, which underfits" at 1,400 px
    "run_name",
    "rank",
    "test_acc",
    "test_acc_margin",
    "verdict",
    "avoidable_bias",
    "gap",
    "model",
    "dataset",
]
MORE_COLUMNS = [  # one click away, in the column choice
    "status",
    "test_acc_ci",
    "best_val_acc",
    "diagnosis",
    "best_epoch",
    "after_best",
    "train_size",
    "params_total",
    "epochs",
    "progress",
    "duration_s",
    "start",
    "convention",
    "experiment",
    "suite",
    "sweep",
    "advice_of",
]
GROUP_SHOWN = [
    "model",
    "settings",
    "dataset",
    "seeds",
    "selected",
    "test_acc_mean",
    "test_acc_std",
    "test_acc_ci",
    "best_val_acc_mean",
    "best_val_acc_std",
    "runs",
    "group",
]
COLUMN_CONFIG = {
    "run_name": st.column_config.TextColumn("run", pinned=True, width=180),  # in view when the table scrolls
    "rank": st.column_config.TextColumn(
        "rank",
        width=78,
        help="place by test accuracy among the finished runs on the same test images (dataset and test-set size), "
        "★ for the best of each; a run still training says how far it is (epochs trained of those planned), one "
        "that did not finish how it ended",
    ),
    "advice_of": st.column_config.TextColumn(
        "follows",
        help="for a run that advice trained: the run (or config group:HASH) whose advice it follows (python -m "
        "experiments advise; the Advice record page lists them all)",
    ),
    "test_acc": formats.percent_column("test acc", width=70),
    "test_acc_margin": formats.spread_column(
        "±95%",
        width=68,
        help="half the width of the test accuracy's 95% Wilson interval, in percentage points (pp): how far the "
        "accuracy on this many test images may be from the model's true accuracy; not a spread over seeds (exact "
        "bounds: More columns)",
    ),
    "verdict": st.column_config.TextColumn(
        "verdict",
        width=160,
        help="underfits (high bias), overfits (high variance), underfits and overfits, good fit, or cannot tell "
        f"yet, from the run's last epoch. A figure counts as above its {BIAS_THRESHOLD * 100:.0f} pp threshold "
        "only when its whole 95% interval is: 'gap unsure' (or 'bias unsure') where the validation set is too "
        "small for that, so a gap of several pp can still be unsure. The Overfitting inspector shows each interval",
    ),
    "avoidable_bias": formats.spread_column(
        "bias",
        width=72,
        help="avoidable bias at the last epoch, in percentage points (pp): the train error minus the best error "
        f"reached on the dataset ({BEST_ERRORS}); above {BIAS_THRESHOLD * 100:.0f} pp, with its whole 95% interval: "
        "underfits; below 0: the model fits its training images better than that best error",
    ),
    "gap": formats.points_column(
        "gap",
        width=76,
        help="variance at the last epoch, in percentage points (pp): the validation error minus the train error; "
        f"above {VARIANCE_THRESHOLD * 100:.0f} pp, with its whole 95% interval: overfits",
    ),
    "model": st.column_config.TextColumn("model", width=110),
    "dataset": st.column_config.TextColumn("dataset", width=82),
    "train_size": formats.count_column("train images", help="images trained on (validation carved out)"),
    "convention": st.column_config.TextColumn(
        "logged by",
        help="the metric convention the run was read with "
        "(dashboard/conventions.py, or conventions.toml beside the store)",
    ),
    "duration_s": formats.seconds_column("duration"),
    "progress": st.column_config.ProgressColumn(
        "progress",
        min_value=0,
        max_value=1,
        format="percent",
        help="epochs trained of those planned, while a run is training",
    ),
    "best_val_acc": formats.percent_column("best val acc"),
    "best_epoch": st.column_config.NumberColumn("best epoch", format="%d"),
    "epochs": st.column_config.NumberColumn("epochs trained", format="%d"),
    "after_best": st.column_config.NumberColumn(
        "after best",
        format="%d",
        help="epochs trained after the best one: what early stopping at the best epoch "
        "would have saved, at the same test accuracy (scored with the best epoch's weights); the Overfitting "
        "inspector gives the seconds and a patience's effect",
    ),
    "diagnosis": st.column_config.TextColumn(
        "diagnosis",
        width="large",
        help="the diagnosis in full, as the runner logged it or as derived from the run's history",
    ),
    "params_total": formats.count_column("params"),
    "start": st.column_config.DatetimeColumn("start", format="YYYY-MM-DD HH:mm"),
    "test_acc_ci": st.column_config.TextColumn(
        "test acc 95% CI",
        help="Wilson interval of the test accuracy on the "
        "run's test-set size; for a group of seeds, the t interval of its "
        "mean",
    ),
}
GROUP_CONFIG = {
    "model": st.column_config.TextColumn("model", pinned=True, width=140),
    "settings": st.column_config.TextColumn(
        "settings", help="what sets this group apart from the other groups of its model (seed aside)"
    ),
    "selected": st.column_config.TextColumn(
        "selected", help="how many of the group's runs are selected, when only some are: its row is ticked once all are"
    ),
    "seeds": st.column_config.NumberColumn("N", format="%d", help="finished runs with a test accuracy"),
    "test_acc_mean": formats.percent_column("test acc (mean)"),
    "test_acc_std": formats.spread_column(
        "± std", width=80, help="standard deviation over the seeds, in percentage points"
    ),
    "best_val_acc_mean": formats.percent_column("best val acc (mean)"),
    "best_val_acc_std": formats.spread_column(
        "± std", width=80, help="standard deviation over the seeds, in percentage points"
    ),
    "runs": st.column_config.NumberColumn("all runs", format="%d", help="every run of the group, whatever its status"),
    "group": st.column_config.TextColumn("config group", help="`python -m experiments compare group:HASH ...`"),
    "test_acc_ci": COLUMN_CONFIG["test_acc_ci"],
}


def interval_text(low: pd.Series, high: pd.Series) -> pd.Series:
    return pd.Series([stats.bounds_text(lo, hi) for lo, hi in zip(low, high, strict=True)], index=low.index)


def follow_ticks(table_key: str) -> None:
    """The table's ticks changed: the runs of a ticked row join the selection, those of an unticked row leave it;
    runs the table does not show (filtered out) stay selected."""
    event = state.selection_event(table_key)
    state.set_selection(
        state.ticks_applied(
            state.selection(),
            state.remembered_rows(table_key),
            state.selected_rows(table_key),
            event.get("selection", {}).get("rows", []),
        )
    )


def selectable_table_ui(table: pd.DataFrame, rows: list, caption: str, config: dict, key: str) -> None:
    """A table whose ticks show the selection (each row standing for the runs in `rows`) and change it."""
    state.remember_rows(key, rows)
    state.tick_the_selection(key)
    st.caption(caption)
    st.dataframe(
        formats.shown(table, config),
        hide_index=True,
        column_config=config,
        key=key,
        selection_mode="multi-row",
        width="stretch",
        placeholder="",  # an empty cell, not "None", for what a run did not log
        height=38 + 35 * min(max(len(table), 1), 20),  # the rows, up to 20, not a fixed 10
        on_select=functools.partial(follow_ticks, key),
    )


def grouped_table_ui(shown: pd.DataFrame, selection: list[str]) -> None:
    groups = group_table(shown)
    groups["test_acc_ci"] = interval_text(groups["test_acc_low"], groups["test_acc_high"])
    groups["selected"] = partly_selected(groups["run_ids"], selection)
    selectable_table_ui(
        groups[GROUP_SHOWN],
        list(groups["run_ids"]),
        f"{len(groups)} config groups, {len(selection)} selected. A group holds the runs that differ only in "
        "their seed (`train --repeats N`); runs logged by other tools stand alone. Tick a group to select all its "
        "runs; Compare draws them as bands and says which group is better.",
        GROUP_CONFIG,
        Key.RUNS_GROUPED,
    )


def runs_table_ui(runs: pd.DataFrame, shown: pd.DataFrame, selected: int) -> None:
    """Every shown run, ranked within its comparable set (ranks count every run, not only those the filters
    show), in the order and with the columns the user chose."""
    order, extra = table_view_ui(MORE_COLUMNS, COLUMN_CONFIG)
    running = shown["status"] == "RUNNING"
    shown = sorted_runs(with_test_intervals(shown), order)
    shown = shown.assign(
        rank=ranks(runs).reindex(shown.index).mask(~shown["status"].eq("FINISHED"), run_states(shown)),
        verdict=shown["diagnosis"].map(lambda d: VERDICT.get(d, d)),
        test_acc_ci=interval_text(shown["test_acc_low"], shown["test_acc_high"]),
        test_acc_margin=(shown["test_acc_high"] - shown["test_acc_low"]) / 2,
        progress=(shown["epochs"] / shown["params_epochs"]).clip(0, 1).where(running),
        after_best=shown["epochs"] - shown["best_epoch"],
    )
    selectable_table_ui(
        shown[FIRST_COLUMNS + extra],
        list(shown["run_id"]),
        f"{len(shown)} of {len(runs)} runs shown, {selected} selected. A rank counts the runs scored on the same "
        "test images (dataset and test-set size), so each such set has its ★. pp: percentage points. Hover a "
        "column's header for what it means; ticks show the selection (tick to add, untick to remove).",
        COLUMN_CONFIG,
        Key.RUNS_TABLE,
    )


def story_ui(runs: pd.DataFrame) -> None:
    """One line on what this store shows, with buttons to the views that tell it: the under-, over- and good fit
    side by side in the inspector, and two configurations over seeds in Compare."""
    story, groups = story_runs(runs), seeded_groups(runs)
    if len(story) < 2 and len(groups) < 2:
        return
    names = run_labels(runs, list(story.values()))
    words = "; ".join(f"{names[run_id]} {STORY[diagnosis]} ({diagnosis})" for diagnosis, run_id in story.items())
    cols = st.columns([3, 1, 1])
    parts = [
        f"{words}." if words else "",
        f"{len(groups)} configurations are trained over several seeds." if len(groups) >= 2 else "",
    ]
    cols[0].info(md("What this store shows: " + " ".join(part for part in parts if part)))
    # The callbacks select, and ask for the page, before the next run draws anything.
    if len(story) >= 2:
        cols[1].button(
            "Inspect side by side",
            key=Key.STORY_INSPECT,
            help=f"opens the Overfitting inspector on {', '.join(names.values())}, in place of the selection",
            on_click=state.select,
            args=(list(story.values()), "views/overfitting.py"),
        )
    if len(groups) >= 2:
        cols[2].button(
            "Compare over seeds",
            key=Key.STORY_COMPARE,
            help=f"opens Compare on the {len(groups[0]) + len(groups[1])} runs of the two configurations trained "
            "over the most seeds, in place of the selection",
            on_click=state.select,
            args=(groups[0] + groups[1], "views/compare.py"),
            kwargs={Key.COMPARE_GROUP_BY: CONFIGURATION},
        )


def page() -> None:
    st.title("Runs")
    runs, selection = runs_or_message()
    if runs is None:
        return
    live_refresh_ui(state.live(), state.refresh_seconds(LIVE_SECONDS))
    story_ui(runs)
    filters = run_filters_ui(runs)
    shown = filter_runs(runs, **filters)
    left_out = incomplete_terms(filters["text"])
    if left_out:
        st.caption(
            md(f"Left out of the search, as it has no value yet: {', '.join(left_out)} (e.g. lr>0.001, model=lenet5).")
        )
    if shown.empty and filters["text"]:
        st.info(
            md(
                "No run matches the search: "
                + search_hint(filter_runs(runs, **{**filters, "text": ""}), filters["text"])
            )
        )
    if st.toggle(
        "Group by configuration (one row per config group, mean ± std over seeds)", key=Key.GROUP_RUNS, bind=IN_URL
    ):
        grouped_table_ui(shown, selection)
    else:
        runs_table_ui(runs, shown, len(selection))
    if 2 <= len(selection) <= MAX_COMPARE:
        st.button(
            f"Compare selected ({len(selection)})",
            key=Key.COMPARE_SELECTED,
            on_click=state.open_page,
            args=("views/compare.py",),
        )


page()

"""Every session-state key of the dashboard, and the helpers that read and write them.

Widget keys are declared here too, so no page spells another page's key; a widget drawn with
`bind=IN_URL` keeps its value in the URL under its key (Streamlit's own binding), so a reload or a
shared link opens the same view. The run selection is one list of run ids shared by every page; tables that show
it remember which run each of their rows shows (`remember_rows`), so a tick maps back to a run (`ticked`) and
the selection to ticks (`tick_the_selection`, `ticks_applied`).
"""

import time

import streamlit as st

IN_URL = "query-params"  # `bind=` of the widgets whose value is part of the page's address (reload, share)
URL_RUNS = "runs"  # the selection's name in every page's address: the start of each run id, comma-separated
SHORT_ID = 8


class Key:
    SELECTION = "selection"  # the selected run ids, the sidebar multiselect's own key
    SIGNED_IN = "signed_in"  # a team dashboard's session: the core.store.Credentials it reads the server with
    SIGN_IN_FORM = "sign_in"
    OPEN_PAGE = "open_page"  # the page a button asked for, opened at the start of the next run
    LIVE = "live"  # whether some run is RUNNING: pages then re-read the store every few seconds
    LIVE_SECONDS = "live_seconds"  # seconds between those reads: more for a store that reads slowly
    LAST_FULL_RUN = "last_full_run"
    RUNS_TABLE = "runs_table"
    RUNS_ORDER, RUNS_COLUMNS = "order", "columns"  # the Runs table's sort and its columns beyond the first ones
    FILTER_MODEL, FILTER_DATASET, FILTER_STATUS, FILTER_SUITE, FILTER_TEXT = (
        "filter_model",
        "filter_dataset",
        "filter_status",
        "filter_suite",
        "filter_text",
    )
    OVERFITTING_RUN = "overfitting_run"
    PATIENCE = "patience"  # the inspector's early-stopping patience, in epochs
    INSPECTOR_SECTION = "section"  # the inspector's open tab (widgets.INSPECTOR_SECTIONS)
    DETAIL_RUN = "detail_run"
    DETAIL_SECTION = "part"  # Run detail's open tab (widgets.DETAIL_SECTIONS)
    DETAIL_CURVES = "detail_curves"
    DIFF_RUN = "diff_run"
    CONFUSION_SOURCE, CONFUSION_NORMALIZE = "confusion_source", "confusion_normalize"
    CONFUSION_CHART, CELLS_TABLE = "confusion_chart", "cells_table"
    GALLERY_CELL = "gallery_cell"  # (run id, true, predicted): the confusion cell whose images are shown, for its run
    EPOCH_PAIR, EPOCH_DIFF_CHART = "epoch_pair", "epoch_diff"  # Run detail: two epochs and their confusion difference
    MOVED_CELL = "moved_cell"  # (run id, true, predicted): the cell of the epoch difference whose moves are shown
    SWEEP = "sweep"
    SWEEP_TRIALS_TABLE = "sweep_trials_table"
    TRIAL_PICK = "sweep_trial"
    OPEN_TRIAL = "open_trial"
    CURVES_CHART, PARALLEL_CHART, STEP_CHART = "curves", "parallel", "step_losses"
    COMPARE_GROUP_BY, COMPARE_MEMBERS, COMPARE_SMOOTHING = "compare_group_by", "compare_members", "compare_smoothing"
    COMPARE_X, COMPARE_LOG_LOSS, COMPARE_BASELINE = "compare_x", "compare_log_loss", "compare_baseline"
    COMPARE_CURVES = "compare_curves"  # which curves Compare draws (figures.CURVES)
    COMPARE_SECTION = "compare_tab"  # Compare's open tab below "Which is better?" (widgets.COMPARE_SECTIONS)
    COMPARE_STORY_GROUPING = "compare_story_grouping"  # the grouping Compare set itself to draw its story
    BETTER_A, BETTER_B = "better_a", "better_b"
    BETTER_OPTIONS = "better_options"  # the options A and B were chosen among: new ones start on the defaults
    RUNS_GROUPED, GROUP_RUNS = "runs_grouped", "group_runs"  # the grouped Runs table and its switch
    STORY_INSPECT, STORY_COMPARE = "story_inspect", "story_compare"  # the Runs page's buttons to the story
    COMPARE_SELECTED = "compare_selected"  # the Runs page's button to Compare
    DIFF_CHART, PER_CLASS_CHART = "confusion_diff", "per_class"
    SWEEP_PARALLEL_CHART, SWEEP_IMPORTANCES_CHART = "sweep_parallel", "sweep_importances"

    @staticmethod
    def per_run(name: str, run_id: str) -> str:
        """The key of a chart drawn once per run on a page (e.g. the inspector's gap chart)."""
        return f"{name}_{run_id}"

    @staticmethod
    def per_series(name: str, series: int) -> str:
        return f"{name}_{series}"


def rows_key(table_key: str) -> str:
    return f"{table_key}__rows"


def remember_rows(table_key: str, rows: list) -> None:
    """What each row of the table `table_key` shows (a run id, a cell...), in display order."""
    st.session_state[rows_key(table_key)] = list(rows)


def remembered_rows(table_key: str) -> list:
    return st.session_state.get(rows_key(table_key), [])


def ticked(table_key: str) -> list:
    """What the ticked rows of the table `table_key` show, in tick order."""
    rows = remembered_rows(table_key)
    event = selection_event(table_key)
    return [rows[i] for i in event.get("selection", {}).get("rows", []) if i < len(rows)]


def selected_rows(table_key: str) -> list[int]:
    """The positions of the rows of `table_key` whose runs (a run id, or a list of them) are all selected."""
    chosen = set(selection())
    return [
        i for i, row in enumerate(remembered_rows(table_key)) if set(row if isinstance(row, list) else [row]) <= chosen
    ]


def tick_the_selection(table_key: str) -> None:
    """Make the table `table_key`, drawn next, show the selection ticked wherever it was made (the sidebar,
    another page, a button, a link), so that a tick adds to it and an untick removes. Streamlit's programmatic
    selection: the widget keeps its key, and is told only when its ticks differ from the selection."""
    wanted = selected_rows(table_key)
    shown = selection_event(table_key).get("selection", {}).get("rows", [])
    if sorted(shown) != wanted:
        st.session_state[table_key] = {"selection": {"rows": wanted, "columns": [], "cells": []}}


def ticks_applied(chosen: list[str], rows: list, before: list[int], after: list[int]) -> list[str]:
    """The selection after a table's ticks went from `before` to `after` (row positions; each row a run id or a
    list of them): the runs of newly ticked rows join it, those of unticked rows leave it, and every other run
    stays, shown in the table or not (a group row shows unticked while only some of its runs are selected)."""

    def runs_of(positions):
        return [
            run_id
            for i in positions
            if i < len(rows)
            for run_id in (rows[i] if isinstance(rows[i], list) else [rows[i]])
        ]

    removed = set(runs_of(set(before) - set(after)))
    return list(dict.fromkeys([r for r in chosen if r not in removed] + runs_of(sorted(set(after) - set(before)))))


def selection() -> list[str]:
    return list(st.session_state.get(Key.SELECTION, []))


def selection_from_url(run_ids: list[str]) -> tuple[list[str], list[str]]:
    """The runs the address names, among run_ids (each by the start of its id), and the names that fit no run or
    several (left out, so that the page can say so)."""
    named = [part for part in st.query_params.get(URL_RUNS, "").split(",") if part]
    found = {part: [run_id for run_id in run_ids if run_id.startswith(part)] for part in named}
    return [m[0] for m in found.values() if len(m) == 1], [part for part, m in found.items() if len(m) != 1]


def short_ids(run_ids: list[str]) -> str:
    """Runs as the address writes them: the start of each run id, comma-separated."""
    return ",".join(run_id[:SHORT_ID] for run_id in run_ids)


def selection_query() -> dict[str, str]:
    """The selection's part of a page's address (none when nothing is selected)."""
    short = short_ids(selection())
    return {URL_RUNS: short} if short else {}


def selection_to_url(run_ids: list[str]) -> None:
    """Put the selection into the page's address. Done by hand on every run rather than with `bind=`: Streamlit
    drops a bound parameter from the address on the first page switch after the page was opened from a link."""
    short = short_ids(run_ids)
    if short and st.query_params.get(URL_RUNS) != short:
        st.query_params[URL_RUNS] = short
    elif not short and URL_RUNS in st.query_params:
        del st.query_params[URL_RUNS]


def keep_selection_in_url() -> None:
    """Write the session's selection into the address as soon as a page's script starts, before any read of the
    store: a switch from the sidebar's page links drops the query, and a reload before the page has read its runs
    (seconds, on a large team store) would otherwise open it with nothing selected. A new session has none yet:
    its address is left as it came."""
    if not is_new_session():
        selection_to_url(selection())


def set_selection(run_ids: list[str]) -> None:
    st.session_state[Key.SELECTION] = list(dict.fromkeys(run_ids))


def add_to_selection(run_id: str) -> None:
    set_selection([*selection(), run_id])


def open_page(page: str) -> None:
    """A button's callback: open `page` on the next run (app.py switches before any page draws)."""
    st.session_state[Key.OPEN_PAGE] = page


def page_to_open() -> str | None:
    """The page a button asked for, once: app.py opens it with the selection in its address, in one history entry
    (a page that first wrote the new selection into its own address would add a second one for Back)."""
    return st.session_state.pop(Key.OPEN_PAGE, None)


def select(run_ids: list[str], page: str, **page_state) -> None:
    """A button's callback: make these runs the selection, set other pages' widgets (by key) as given, and open
    `page`. A grouping set here is the user's choice: Compare forgets the grouping it set for its story, not this
    one."""
    set_selection(run_ids)
    st.session_state.update(page_state)
    if Key.COMPARE_GROUP_BY in page_state:
        forget(Key.COMPARE_STORY_GROUPING)
    open_page(page)


def open_in_detail(run_id: str) -> None:
    """A button's callback: select the run, make it the Run detail page's run and open that page."""
    add_to_selection(run_id)
    st.session_state[Key.DETAIL_RUN] = run_id
    open_page("views/detail.py")


def value(key: str, default=None):
    """The session's value of `key`, or default: for keys whose meaning is the page's, not this module's."""
    return st.session_state.get(key, default)


def set_value(key: str, new) -> None:
    st.session_state[key] = new


def set_default(key: str, new) -> bool:
    """Give `key` this value unless the session already has one; whether it was given."""
    if key in st.session_state:
        return False
    st.session_state[key] = new
    return True


def forget(*keys: str) -> None:
    for key in keys:
        st.session_state.pop(key, None)


def is_new_session() -> bool:
    """No page has drawn the selection yet in this browser session (a first visit, a reload, a shared link)."""
    return st.session_state.get(Key.SELECTION) is None


def selection_event(widget_key: str) -> dict:
    """The selection event Streamlit keeps for a dataframe or chart drawn with on_select ({} before any)."""
    return st.session_state.get(widget_key) or {}


def choose_clicked_cell(chart_key: str, cell_key: str, run_id: str, classes: int) -> None:
    """The cell a click selected on a class grid (figures.cell_grid, `classes` classes) chosen for run_id's view
    under cell_key; a click that only deselects keeps the cell chosen before."""
    cell = selected_cell(selection_event(chart_key), classes)
    if cell:
        choose_cell(cell_key, run_id, cell)


def selected_cell(event: dict, classes: int) -> tuple[int, int] | None:
    """The (true, predicted) cell in an ECharts selection event of a class grid, whose item k is cell
    divmod(k, classes); None when nothing (or nothing of the grid) is selected."""
    chosen = event.get("selection", {}).get("selected") or []
    indices = [int(i) for group in chosen for i in group.get("data_indices", []) if 0 <= int(i) < classes * classes]
    return divmod(indices[0], classes) if indices else None


def choose_cell(cell_key: str, run_id: str, cell: tuple[int, int]) -> None:
    """Remember the cell chosen for run_id's view (`Key.GALLERY_CELL`, `Key.MOVED_CELL`)."""
    st.session_state[cell_key] = (run_id, *cell)


def chosen_cell(cell_key: str, run_id: str) -> tuple[int, int] | None:
    """The cell last chosen under cell_key, if it was chosen for this run (not for another)."""
    chosen = st.session_state.get(cell_key)
    return tuple(chosen[1:]) if chosen and chosen[0] == run_id else None


def signed_in():
    """The credentials this session signed in with (core.store.Credentials), or None: kept in the session's memory
    only, never in the URL or a cache key."""
    return st.session_state.get(Key.SIGNED_IN)


def sign_in(credentials) -> None:
    st.session_state[Key.SIGNED_IN] = credentials


def sign_out() -> None:
    """Forget the session's credentials and everything it chose while signed in."""
    st.session_state.clear()


def live() -> bool:
    """Whether some run was RUNNING at the last read of the store."""
    return bool(st.session_state.get(Key.LIVE))


def refresh_seconds(default: int) -> int:
    """Seconds between live re-reads of the store, as the last read set them."""
    return st.session_state.get(Key.LIVE_SECONDS, default)


def set_live(running: bool, seconds: int) -> None:
    st.session_state[Key.LIVE], st.session_state[Key.LIVE_SECONDS] = running, seconds


def mark_full_run() -> None:
    """The page ran whole just now (not only a fragment)."""
    st.session_state[Key.LAST_FULL_RUN] = time.time()


def seconds_since_full_run() -> float:
    return time.time() - st.session_state[Key.LAST_FULL_RUN]


def reset_when_options_change(options_key: str, options: list, keys: tuple[str, ...]) -> None:
    """Forget the widgets `keys` whenever the options they choose among differ from the last run's."""
    if st.session_state.get(options_key) != options:
        st.session_state[options_key] = options
        forget(*keys)

"""Small *_ui functions: each draws its widgets and returns the user's choices."""

import math
import re

import pandas as pd
import streamlit as st

from dashboard import state
from dashboard.analysis import SORTS, X_AXES, run_labels
from dashboard.figures import CURVES, Figure, Panel
from dashboard.state import IN_URL, Key

MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")
MAX_COMPARE = 50
LIVE_SECONDS = 5  # live refresh of a store that reads quickly
INSPECTOR_SECTIONS = ("Bias and variance", "Calibration", "Per class", "More data and capacity", "Next experiments")
COMPARE_SECTIONS = ("Final and best metrics", "Params that differ", "Training loss per step")
DETAIL_SECTIONS = ("Curves and confusion", "Between two epochs", "Against another run", "Per class and layers")


def md(text) -> str:
    """Run data made inert for Streamlit's markdown: every markdown and HTML character backslash-escaped."""
    return MARKDOWN_SPECIALS.sub(r"\\\1", str(text))


def selection_ui(runs: pd.DataFrame) -> list[str]:
    """The selected runs, kept across pages and in the address (sidebar multiselect; the Runs table's ticks show it)."""
    options = list(runs["run_id"])
    labels = run_labels(runs, options)
    if state.is_new_session():  # a new session: the address says (a reload, a shared link)
        found, unknown = state.selection_from_url(options)
        state.set_selection(found)
        if unknown:
            st.warning(
                md(
                    f"The link names {len(unknown)} run{'s' * (len(unknown) > 1)} this store does not have (or "
                    f"that fit several of its runs): {', '.join(unknown[:5])}{', ...' if len(unknown) > 5 else ''}. "
                    + ("The page shows the runs it did find." if found else "Nothing from the link is selected.")
                )
            )
    else:  # re-assigned on every page, so that Streamlit keeps the widget's value across pages
        state.set_selection([r for r in state.selection() if r in labels])
    chosen = st.sidebar.multiselect(
        "Selected runs",
        options,
        key=Key.SELECTION,
        format_func=labels.get,
        help="Pick rows in the Runs table or here; every page uses this selection.",
        filter_mode="contains",
        select_all=False,
    )  # Enter adds one run, never "all matches"
    state.selection_to_url(chosen)
    return chosen


def run_filters_ui(runs: pd.DataFrame) -> dict:
    """Filters of the Runs table: model, dataset, status, suite and free text on params."""
    cols = st.columns([1, 1, 1, 1, 2])
    return {
        "models": cols[0].multiselect("Model", sorted(runs["model"].unique()), key=Key.FILTER_MODEL, bind=IN_URL),
        "datasets": cols[1].multiselect(
            "Dataset", sorted(runs["dataset"].unique()), key=Key.FILTER_DATASET, bind=IN_URL
        ),
        "statuses": cols[2].multiselect("Status", sorted(runs["status"].unique()), key=Key.FILTER_STATUS, bind=IN_URL),
        "suites": cols[3].multiselect(
            "Suite tag", sorted(s for s in runs["suite"].unique() if s), key=Key.FILTER_SUITE, bind=IN_URL
        ),
        "text": cols[4].text_input(
            "Search params",
            key=Key.FILTER_TEXT,
            bind=IN_URL,
            placeholder="e.g. lr>0.001 optimizer=adam",
            help="Terms combine with AND: key=value, key!=value, key>value, key<value, "
            "key>=value, key<=value on a param (numbers compare as numbers), or a word "
            "found in the run's name or params.",
        ),
    }


def run_picker_ui(
    runs: pd.DataFrame, candidates: list[str], label: str, key: str, first: tuple[str, ...] = ()
) -> str | None:
    """One run among candidates: the selection, or else every run, `first` first, then finished ones with metrics,
    newest first."""
    usable = runs.assign(rank=(runs["status"] != "FINISHED") + runs["best_val_acc"].isna() * 1)
    ordered = list(usable.sort_values(["rank", "start"], ascending=[True, False])["run_id"])
    options = candidates or list(dict.fromkeys([*first, *ordered]))
    if not options:
        return None
    return st.selectbox(label, options, format_func=run_labels(runs, options).get, key=key, bind=IN_URL)


def sweep_picker_ui(sweeps: pd.DataFrame) -> pd.Series:
    """One sweep (its parent-run row), newest first."""
    rows = sweeps.set_index("run_id", drop=False)
    run_id = st.selectbox(
        "Sweep",
        list(rows.index),
        key=Key.SWEEP,
        bind=IN_URL,
        format_func=lambda r: (
            f"{rows.loc[r, 'sweep']} ({rows.loc[r, 'status'].lower()}, started {rows.loc[r, 'start']:%Y-%m-%d %H:%M})"
        ),
    )
    return rows.loc[run_id]


def trial_picker_ui(trials: pd.DataFrame, best: int | None) -> str:
    """The trial run to open: the ticked row of the trials table, else the best trial, else the first."""
    options = list(trials["run_id"])
    names = dict(zip(options, trials["run_name"] + " (" + trials["state"] + ")", strict=True))
    if state.value(Key.TRIAL_PICK) not in names:
        state.set_value(Key.TRIAL_PICK, options[best or 0])
    return st.selectbox("Trial to open (or tick a row above)", options, format_func=names.get, key=Key.TRIAL_PICK)


def confusion_source_ui(epochs: list[int], has_test: bool) -> tuple[object, bool]:
    """Which matrix to show (an epoch's validation matrix or 'test') and whether to row-normalise."""
    options = [*epochs, "test"] if has_test else list(epochs)
    cols = st.columns([3, 1])
    source = (
        cols[0].select_slider(
            "Validation epoch, or the final test set",
            options=options,
            value=options[-1],
            key=Key.CONFUSION_SOURCE,
            bind=IN_URL,
        )
        if len(options) > 1
        else options[0]
    )
    normalize = cols[1].toggle("Row-normalised", key=Key.CONFUSION_NORMALIZE, bind=IN_URL)
    return source, normalize


def live_seconds(read_seconds: float) -> int:
    """Seconds between live refreshes: LIVE_SECONDS, or three times what the last read of the store took, so that
    a large team store (10,000 runs through a server: about 20 s a read) is not re-read without pause."""
    return max(LIVE_SECONDS, math.ceil(3 * read_seconds))


def live_refresh_ui(active: bool, seconds: int) -> None:
    """While runs are RUNNING, rerun the whole page every `seconds`; widget state is kept by Streamlit."""
    state.mark_full_run()
    if not active:
        return

    @st.fragment(run_every=seconds)
    def tick():
        if state.seconds_since_full_run() >= seconds - 1:
            st.rerun()
        st.caption(f"Live: refreshing every {seconds} s while runs are training.")

    tick()


EACH_RUN, CONFIGURATION = "each run", "configuration"


def curves_grouping_ui(runs: pd.DataFrame, selection: list[str]) -> tuple[str | None, bool]:
    """How to draw the curves: one line per run (None), or per config group or per value of a setting that
    differs among the selected runs, as bands; and whether to draw each run faintly behind its band. Not per seed:
    runs of one seed share nothing else, so such a band mixes configurations and says nothing."""
    configs = runs.set_index("run_id").loc[selection, "config"]
    varying = sorted(
        {
            name
            for config in configs
            for name in config
            if name != "seed" and configs.map(lambda c, n=name: c.get(n)).nunique(dropna=False) > 1
        }
    )
    cols = st.columns([2, 1])
    by = cols[0].selectbox(
        "Draw curves per",
        [EACH_RUN, CONFIGURATION, *varying],
        key=Key.COMPARE_GROUP_BY,
        bind=IN_URL,
        help="configuration: runs that differ only in their seed (config_group) form one band; "
        "a setting: runs with the same value of it form one band",
    )
    members = cols[1].toggle("Show each run", key=Key.COMPARE_MEMBERS, bind=IN_URL, disabled=by == EACH_RUN)
    return (None if by == EACH_RUN else by), members


def curves_choice_ui() -> tuple[Panel, ...]:
    """Which curves to draw (a choice of figures.CURVES): its panels."""
    choice = st.selectbox(
        "Curves of",
        list(CURVES),
        key=Key.COMPARE_CURVES,
        bind=IN_URL,
        help="bias: train error; variance: validation error minus train error; calibration: "
        "validation loss and expected calibration error; speed: each epoch's training time",
    )
    return CURVES[choice]


def curves_axes_ui(has_loss: bool) -> tuple[str, bool]:
    """What the per-run curves are drawn against (analysis.X_AXES) and whether the loss axis is logarithmic (a
    choice only when the curves have a loss panel)."""
    cols = st.columns([2, 1])
    x = cols[0].selectbox(
        "Curves against",
        list(X_AXES),
        key=Key.COMPARE_X,
        bind=IN_URL,
        help="training time: the seconds of training (evaluation excluded) by the end of each "
        "epoch; images seen: epochs times the training-set size",
    )
    return x, cols[1].toggle("Log-scale loss", key=Key.COMPARE_LOG_LOSS, bind=IN_URL, disabled=not has_loss)


def baseline_ui(labels: dict[str, str]) -> str | None:
    """The run the others are measured against: their accuracies as differences from it in the final-metrics
    table, its line orange in the params' parallel coordinates (None: no baseline)."""
    return st.selectbox(
        "Baseline (the others' accuracies as differences from it; its line orange among the params)",
        [None, *labels],
        format_func=lambda run_id: "none" if run_id is None else labels[run_id],
        key=Key.COMPARE_BASELINE,
    )


def smoothing_ui() -> float:
    """The weight of the exponential moving average drawn over step-level curves (0: none)."""
    return st.slider(
        "Smoothing (EMA weight; the raw curve stays faint)",
        0.0,
        0.99,
        0.6,
        0.01,
        key=Key.COMPARE_SMOOTHING,
        bind=IN_URL,
    )


def compare_sides_ui(options: list[str], first: tuple[int, int]) -> tuple[str, str]:
    """The two runs or groups to test against each other: `first` (option positions) until the user picks, and
    again whenever the options change (a new selection), so an old A never faces a new default B."""
    state.reset_when_options_change(Key.BETTER_OPTIONS, options, (Key.BETTER_A, Key.BETTER_B))
    cols = st.columns(2)
    a = cols[0].selectbox("A", options, index=first[0], key=Key.BETTER_A)
    b = cols[1].selectbox("B", options, index=first[1], key=Key.BETTER_B)
    return a, b


def patience_ui() -> int:
    """The early-stopping patience the inspector replays each run's history with."""
    return st.columns(4)[0].number_input(
        "Early-stopping patience (epochs)",
        min_value=1,
        max_value=50,
        value=3,
        step=1,
        key=Key.PATIENCE,
        bind=IN_URL,
        help="Stop once this many epochs pass without a better validation "
        "accuracy, as Keras's EarlyStopping and Lightning's do.",
    )


def section_ui(labels: tuple[str, ...], key: str):
    """Tabs of a page's sections, the open one in the address: its label and its container. Only that tab's
    content is drawn (Streamlit's lazy tabs): a page of many charts opens in a fraction of the time
    (benchmarks/page_times.py), and each tab is drawn when the user opens it."""
    tabs = st.tabs(list(labels), key=key, bind=IN_URL)  # bound: it tracks the open tab and reruns on a switch
    return next(((label, tab) for label, tab in zip(labels, tabs, strict=True) if tab.open), (labels[0], tabs[0]))


def table_view_ui(optional: list[str], config: dict) -> tuple[str, list[str]]:
    """The Runs table's order (one click: analysis.SORTS) and the columns shown beyond the first ones, both in the
    address."""
    cols = st.columns([3, 2])
    order = cols[0].segmented_control(
        "Order", list(SORTS), default=next(iter(SORTS)), key=Key.RUNS_ORDER, bind=IN_URL, required=True
    )
    extra = cols[1].multiselect(
        "More columns",
        optional,
        format_func=lambda name: config[name]["label"] if name in config else name.replace("_", " "),
        key=Key.RUNS_COLUMNS,
        bind=IN_URL,
        placeholder="Add columns: status, best val acc, best epoch, params...",
    )
    return order or next(iter(SORTS)), extra


def chart(figure: Figure, key: str, where=None, **selection):
    """Draw a figure at its size, in `where` (a column; default the page); `selection` (on_select=...) makes a
    click on it an event (state.choose_clicked_cell reads a class grid's)."""
    # Drawn at once: ECharts' entry animation would keep every page moving for a second after its data arrived.
    # A tooltip stays inside its chart and wraps, rather than running off the page under the sidebar.
    option = {**figure.option, "animation": False}
    if isinstance(option.get("tooltip"), dict):
        wrapped = {"confine": True, "extraCssText": "max-width: 420px; white-space: normal;"}
        option["tooltip"] = {**option["tooltip"], **wrapped}
    return (where or st).echarts_chart(
        option, height=figure.height, width=figure.width or "stretch", key=key, **selection
    )

"""Compare: 2 to 50 selected runs: learning curves per run or as bands over seeds, which run or group is better
(and whether that is real), then in tabs the metrics side by side, the params that differ and the step losses."""

import pandas as pd
import streamlit as st

from core import stats
from core.comparison import Answer, which_is_better
from core.schema import Artifact, Metric
from dashboard import figures, formats, reader, state
from dashboard.advice_tables import touching
from dashboard.advice_ui import verdict_sentences_ui
from dashboard.analysis import (
    BASELINE_DIFFERENCES,
    X_AXES,
    along,
    bands,
    comparability_warnings,
    differing_params,
    final_and_best,
    group_key,
    group_label,
    groups_by,
    marked_best,
    run_labels,
    seeded_groups,
    setting_differences,
    smoothed,
    unselected_seeds,
    which_is_better_sides,
)
from dashboard.state import Key
from dashboard.views import artifact, image_strip, read, run_images, runs_or_message, selected_or_story
from dashboard.widgets import (
    COMPARE_SECTIONS,
    CONFIGURATION,
    MAX_COMPARE,
    baseline_ui,
    chart,
    compare_sides_ui,
    curves_axes_ui,
    curves_choice_ui,
    curves_grouping_ui,
    md,
    section_ui,
    smoothing_ui,
)

# every choice's curves; epoch_seconds for curves against training time, val_acc for the final metrics
CURVE_METRICS = tuple(dict.fromkeys([*figures.curve_metrics(), str(Metric.EPOCH_SECONDS), str(Metric.VAL_ACC)]))
FLIPPED_LIMIT = 24
FINAL_COLUMNS = {
    **{name: formats.percent_column(name) for name in ("final val acc", "best val acc", "test acc")},
    "final gap": formats.points_column(
        "final variance",
        help="the train/validation gap at the last epoch: val error - train error, in percentage points",
    ),
    "best epoch": st.column_config.NumberColumn("best epoch", format="%d"),
    "params": formats.count_column("params"),
    "s / epoch": st.column_config.NumberColumn("s / epoch", format="%.2f s"),
    "best at": st.column_config.TextColumn("best at", help="the columns in which this run has the best value"),
    **{
        f"{name} vs baseline": formats.points_column(
            f"{name} vs baseline", help="minus the baseline run's, in percentage points"
        )
        for name in BASELINE_DIFFERENCES
    },
}
SIDES_COLUMNS = {"test acc": formats.percent_column("test acc")}


@st.fragment  # its choices redraw the curves only, not the page's tests and tables
def curves_section(runs: pd.DataFrame, selection: list[str], metrics: pd.DataFrame) -> None:
    """Learning curves per run, or per group (config group or a setting's value) as mean lines in 95% bands."""
    panels = curves_choice_ui()
    by, members = curves_grouping_ui(runs, selection)
    if by is None:
        x, log_loss = curves_axes_ui(any(panel.loss for panel in panels))
        placed = along(metrics, runs, x)  # before keeping the panels' metrics: training time needs epoch_seconds
        placed = placed[placed["metric"].isin(figures.curve_metrics(panels))]
        labels = run_labels(runs, selection)
        drawn = said_not_drawn(
            labels,
            placed,
            "nothing logged for these curves"
            + (f", or no epoch_seconds or training-set size to place them along {x}" if x != "epoch" else ""),
        )
        chart(
            figures.learning_curves(
                placed,
                drawn,
                colors=figures.run_colors(list(labels)),
                x_title=X_AXES[x],
                log_loss=log_loss,
                panels=panels,
            ),
            Key.CURVES_CHART,
        )
        return
    metrics = metrics[metrics["metric"].isin(figures.curve_metrics(panels))]
    groups = groups_by(runs, selection, by)
    member_group = {run_id: label for label, ids in groups.items() for run_id in ids}
    chart(
        figures.banded_curves(bands(metrics, groups), metrics if members else None, member_group, panels),
        Key.CURVES_CHART,
    )
    st.caption(
        "Each line is the mean over the group's selected runs; the band is its 95% t interval (none for a "
        "group of one run). Train runs `train --repeats N` to have seeds to average."
    )
    partial = unselected_seeds(runs, selection) if by == CONFIGURATION else {}
    if partial:
        st.caption(
            md(
                "Only some seeds selected: "
                + "; ".join(f"{label} draws {k} of its {n} runs" for label, (k, n) in partial.items())
                + ". Tick the group in the Runs page's grouped table, with no filter hiding its runs, to average them "
                "all."
            )
        )


def said_not_drawn(labels: dict[str, str], points: pd.DataFrame, why: str) -> dict[str, str]:
    """The labels of the runs that have points; the others named in a caption with `why`."""
    drawn = {run_id: label for run_id, label in labels.items() if run_id in set(points["run_id"])}
    if len(drawn) < len(labels):
        st.caption(md(f"Not drawn: {', '.join(label for r, label in labels.items() if r not in drawn)} ({why})."))
    return drawn


def step_loss_section(runs: pd.DataFrame, selection: list[str]) -> None:
    """The training loss at each logged step, raw and smoothed, one line per run."""
    steps = read(reader.load_metrics, tuple(selection), (str(Metric.TRAIN_LOSS_STEP),))
    if steps.empty:
        st.caption(md(f"None of the selected runs logged {Metric.TRAIN_LOSS_STEP}."))
        return
    weight = smoothing_ui()
    labels = run_labels(runs, selection)
    drawn = said_not_drawn(
        labels,
        steps,
        f"no {Metric.TRAIN_LOSS_STEP} logged: another tool's run, or one trained "
        "before an epoch shorter than log_every steps made a point",
    )
    chart(figures.step_losses(steps, smoothed(steps, weight), drawn, figures.run_colors(list(labels))), Key.STEP_CHART)


def side_groups(runs: pd.DataFrame, selection: list[str]) -> tuple[dict[str, tuple[str, list[str]]], tuple[int, int]]:
    """What can be compared, in selection order, as {option: (label, run ids)}: every config group of the
    selection with two runs or more in the store (all its runs), then every selected run alone; and the two
    options shown first: the first two groups of which the user selected two runs or more (seeds to compare),
    else the first selected run and the next of another configuration (or the second), so that a run is never set
    against a group, nor two seeds of a configuration against each other, by default."""
    keys = group_key(runs).set_axis(runs["run_id"])
    members = runs.groupby(keys.values)
    chosen = keys[selection].value_counts()
    options, seeded = {}, []  # seeded: the positions of groups with two or more selected seeds
    for key in dict.fromkeys(keys[selection]):
        group = members.get_group(key)
        if len(group) >= 2:
            label = group_label(group["model"].iloc[0], key)
            if chosen[key] >= 2:
                seeded.append(len(options))
            options[f"{label}, {len(group)} runs over seeds"] = (label, list(group["run_id"]))
    singles = {label: (label, [run_id]) for run_id, label in run_labels(runs, selection).items()}
    if len(seeded) >= 2:
        return {**options, **singles}, tuple(seeded[:2])
    other = next((i for i, run_id in enumerate(selection) if keys[run_id] != keys[selection[0]]), 1)  # not a twin seed
    return {**options, **singles}, (len(options), len(options) + other)


def better_section(runs: pd.DataFrame, selection: list[str]) -> None:
    """The "Which is better?" panel: two runs or groups, the right test, and one sentence."""
    st.subheader("Which is better?")
    options, first = side_groups(runs, selection)
    a, b = (options[choice] for choice in compare_sides_ui(list(options), first))
    if a == b:
        st.info("Pick two different runs or groups.")
        return
    singles = [ids[0] for _, ids in (a, b) if len(ids) == 1]
    predictions = {run_id: artifact(run_id, Artifact.TEST_PREDICTIONS) for run_id in singles}
    sides = which_is_better_sides(runs, dict([a, b]), {k: v for k, v in predictions.items() if v is not None})
    side_a, side_b = sides[a[0]], sides[b[0]]
    answer = which_is_better(side_a, side_b)
    rows = []
    for name, side in (("A", side_a), ("B", side_b)):
        interval = side.interval() if side.n else None
        rows.append(
            {
                "": name,
                "runs": side.label,
                "N": side.n,
                "test acc": interval.estimate if interval else None,
                "95% CI": (interval.bounds_text() if interval else "") or "—",
            }
        )
    st.dataframe(formats.shown(pd.DataFrame(rows), SIDES_COLUMNS), hide_index=True, column_config=SIDES_COLUMNS)
    say = st.success if answer.significant else st.info
    say(md(answer.sentence))
    if answer.p_value is not None:
        details = f"Test: {answer.test}, {stats.p_text(answer.p_value)}, significance at {stats.ALPHA:g}"
        if answer.difference is not None:
            d = answer.difference
            details += (
                f"; B - A = {formats.points(d.estimate)} (95% CI {formats.points(d.low)} to {formats.points(d.high)})"
            )
        st.caption(details + ".")
    differences = setting_differences(runs, a[1], b[1])
    if differences:
        st.caption(
            md(
                "A and B differ in " + ", ".join(differences) + ": the difference measured is that of all of "
                "them together."
            )
        )
    if len(singles) == 2 and (len(answer.right_only_in_a) or len(answer.right_only_in_b)):
        flipped_section(runs, singles, predictions, answer)


def named(class_names: list[str], label: int) -> str:
    """A class by its name, or its number where the run logged no names."""
    return class_names[label] if 0 <= label < len(class_names) else str(label)


def flipped_section(runs: pd.DataFrame, pair: list[str], predictions: dict, answer: Answer) -> None:
    """The test images one run got right and the other wrong, both ways, as galleries captioned with the true
    class and the wrong run's answer."""
    run = read(reader.load_run, pair[0])
    images = run_images(pair[0], run.params, "test")
    labels = run_labels(runs, pair)
    class_names = (artifact(pair[0], Artifact.CONFUSION_TEST) or {}).get("class_names", [])
    cols = st.columns(2)
    for col, (right, wrong), flipped in zip(
        cols, ((pair[0], pair[1]), (pair[1], pair[0])), (answer.right_only_in_a, answer.right_only_in_b), strict=True
    ):
        shown = flipped[:FLIPPED_LIMIT]
        col.markdown(
            f"**Right in {md(labels[right])}, wrong in {md(labels[wrong])}: {len(flipped)} images**"
            + (f" (the first {len(shown)})" if len(shown) < len(flipped) else "")
        )
        said = dict(zip(predictions[wrong]["index"].tolist(), predictions[wrong]["predicted"].tolist(), strict=True))
        truth = dict(zip(predictions[right]["index"].tolist(), predictions[right]["label"].tolist(), strict=True))
        captions = [formats.image_caption(i, named(class_names, truth[i]), named(class_names, said[i])) for i in shown]
        image_strip(images, shown, captions, width=64, where=col)


def final_section(runs: pd.DataFrame, selection: list[str], metrics: pd.DataFrame, baseline: str | None) -> None:
    """Final and best metrics side by side, each run's best columns named, and differences from the baseline."""
    table = marked_best(
        final_and_best(runs, metrics, selection), selection.index(baseline) if baseline in selection else None
    )
    st.dataframe(formats.shown(table, FINAL_COLUMNS), hide_index=True, column_config=FINAL_COLUMNS)


def params_section(runs: pd.DataFrame, selection: list[str], baseline: str | None) -> None:
    """The params that differ, and their parallel coordinates against test accuracy, the baseline run in orange."""
    labels = run_labels(runs, selection)
    varying = differing_params(read(reader.load_params, tuple(selection)))  # index: run id, in selection order
    if varying.empty:
        st.caption("Every param is the same in the selected runs.")
        return
    st.dataframe(varying.rename(index=labels))
    scores = runs.set_index("run_id").loc[varying.index, "test_acc"]
    tracked = varying.drop(columns=[c for c in varying.columns if c.endswith("_version") or c == "data_dir"])
    if scores.notna().any() and not tracked.empty:
        st.subheader("Params against test accuracy")
        highlight = list(tracked.index).index(baseline) if baseline in tracked.index else None
        chart(
            figures.parallel_coordinates(
                tracked,
                scores.values,
                highlight=highlight,
                highlight_color=figures.BASELINE_COLOR,
                highlight_name="baseline",
            ),
            Key.PARALLEL_CHART,
        )
        st.caption(
            "One line per run"
            + (
                "; the baseline run in orange, the others in blues, darker for a higher test accuracy."
                if highlight is not None
                else ", coloured by test accuracy. Choose a baseline above to draw its line in orange."
            )
        )


def advice_section(runs: pd.DataFrame, selection: list[str]) -> None:
    """Whether the advice the selected runs take part in helped (as follow-ups, or as the original)."""
    groups = set(runs.set_index("run_id").loc[selection, "config_group"])
    judged = touching(read(reader.load_judgements), selection, groups)
    if judged:
        st.subheader("Did the advice help?")
        st.caption(
            "Each follow-up over its seeds against the original configuration's seeds (Welch's test), which says "
            'whether the change helps the configuration; "Which is better?" above compares the runs it was given, '
            "which may be one seed each."
        )
        verdict_sentences_ui(judged)


def details_section(runs: pd.DataFrame, selection: list[str], metrics: pd.DataFrame) -> None:
    """The baseline, then the open tab: the metrics side by side, the params that differ, or the step losses. Only
    the open tab is drawn, so the page opens with one chart rather than three."""
    st.subheader("The runs side by side")
    baseline = baseline_ui(run_labels(runs, selection))
    section, tab = section_ui(COMPARE_SECTIONS, Key.COMPARE_SECTION)
    with tab:
        if section == COMPARE_SECTIONS[1]:
            params_section(runs, selection, baseline)
        elif section == COMPARE_SECTIONS[2]:
            step_loss_section(runs, selection)
        else:
            final_section(runs, selection, metrics, baseline)


def story_grouping_ui(shown_story: bool) -> None:
    """Draw the story's two configurations as bands (set before the grouping widget is drawn); once the user
    selects runs, the grouping goes back to one line per run unless the user chose it meanwhile."""
    if shown_story:
        if state.set_default(Key.COMPARE_GROUP_BY, CONFIGURATION):
            state.set_value(Key.COMPARE_STORY_GROUPING, CONFIGURATION)
        return
    story_grouping = state.value(Key.COMPARE_STORY_GROUPING)
    state.forget(Key.COMPARE_STORY_GROUPING)
    if story_grouping == state.value(Key.COMPARE_GROUP_BY):
        state.forget(Key.COMPARE_GROUP_BY)


def page() -> None:
    st.title("Compare runs")
    runs, selection = runs_or_message()
    if runs is None:
        return
    groups = [] if selection else seeded_groups(runs)  # the story is for a page opened with nothing selected
    story = [run_id for group in groups for run_id in group] if len(groups) >= 2 else []
    story = story if len(story) <= MAX_COMPARE else []
    story_grouping_ui(shown_story=bool(story))
    selection = selected_or_story(selection, story, "the two configurations trained over the most seeds")
    if not 2 <= len(selection) <= MAX_COMPARE:
        st.info(f"Select 2 to {MAX_COMPARE} runs (Runs page or sidebar) to compare them; {len(selection)} selected.")
        return
    metrics = read(reader.load_metrics, tuple(selection), CURVE_METRICS)
    if metrics.empty:
        st.warning("None of the selected runs has logged any epoch yet.")
        return
    for warning in comparability_warnings(runs, selection):
        st.warning(md(warning))
    curves_section(runs, selection, metrics)
    better_section(runs, selection)
    advice_section(runs, selection)
    details_section(runs, selection, metrics)


page()

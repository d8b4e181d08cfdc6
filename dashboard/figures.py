"""Pure figure builders: DataFrames in, ECharts options out (drawn by widgets.chart). No Streamlit calls, so each
is unit-tested.

ECharts rather than Plotly: a page loads its chart library's script with its first chart, and on two cores Plotly's
(4.7 MB) cost a first visit about 0.5 s more than ECharts' (1.2 MB), side by side (docs/benchmarks.md, 2026-12-04,
night). An option is plain JSON, with no JavaScript callbacks, so rates are drawn already in percent, rounded as
the tables write them, and a tooltip's words are written here.
"""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import to_hex

from core.data_scaling import PowerLaw
from core.schema import Metric
from dashboard import formats

TRAIN_DASH, VAL_DASH = "dashed", "solid"
TRAIN_COLOR = "#636efa"  # train error, where one chart has a train and a validation line
GAP_COLOR = "#ef553b"  # validation error, and the gap between it and train error
BEST_COLOR = "#2ca02c"  # the best trial or run: green reads as good, red as failure
BASELINE_COLOR = "#ff7f0e"  # the run others are measured against: marked, not judged
STAR = "path://M50,0L61,35L98,35L68,57L79,91L50,70L21,91L32,57L2,35L39,35Z"  # ECharts has no star symbol of its own
PERCENT_LABEL = {"formatter": "{value}%"}  # an axis of rates, drawn in percent
POINTS_LABEL = {"formatter": "{value} pp"}  # an axis of differences of rates, in percentage points
PERCENT_TOOLTIP = {"valueFormatter": formats.PERCENT_FORMAT}  # a rate in a tooltip, as the tables write it
POINTS_TOOLTIP = {"valueFormatter": formats.POINTS_FORMAT}  # a difference of rates, as the tables write it
BIAS_COLORS = {Metric.BIAS: "#636efa", Metric.VARIANCE: "#ab63fa", Metric.AVOIDABLE_BIAS: "#00a08a"}
# px around a class grid's cells, exactly: Streamlit's theme would otherwise fit the axis labels inside these margins
MATRIX_GRID = {"left": 90, "right": 90, "top": 80, "bottom": 20, "outerBoundsMode": "none"}
MATRIX_SIDE = 600  # px: the most a class grid's cells take, however many classes
LABELLED_CLASSES = 20  # above this many classes a grid's cells are too small for their numbers


@dataclass(frozen=True)
class Figure:
    """An ECharts option and the size to draw it at (width None: the page's width)."""

    option: dict
    height: int
    width: int | None = None


@dataclass(frozen=True)
class Line:
    """One curve of a panel: a metric, of the training or the validation split (dashed or solid), or of neither."""

    metric: str
    split: str | None = None  # "train", "val", or None

    @property
    def dash(self) -> str:
        return TRAIN_DASH if self.split == "train" else VAL_DASH


@dataclass(frozen=True)
class Panel:
    """One panel of curves side by side: its title, its lines, and how a tooltip writes their values."""

    title: str
    lines: tuple[Line, ...]
    percent: bool = False  # accuracies and errors: drawn, labelled and read in percent
    loss: bool = False  # the panel the "log-scale loss" choice makes logarithmic
    value_format: str = "%.4g"  # printf format of a tooltip's value (a rate's is formats.PERCENT_FORMAT)
    points: bool = False  # a difference of rates (variance): in percentage points, as the tables write it

    @property
    def hover(self) -> str:
        if self.points:
            return formats.POINTS_FORMAT
        return formats.PERCENT_FORMAT if self.percent else self.value_format


CURVES = {  # what curves of runs can show, one choice each: its panels, drawn side by side
    "loss and accuracy": (
        Panel("loss", (Line(Metric.TRAIN_LOSS, "train"), Line(Metric.VAL_LOSS, "val")), loss=True),
        Panel("accuracy", (Line(Metric.TRAIN_ACC, "train"), Line(Metric.VAL_ACC, "val")), percent=True),
    ),
    "bias and variance": (
        Panel("bias (train error)", (Line(Metric.BIAS),), percent=True),
        Panel("variance (val error - train error)", (Line(Metric.VARIANCE),), percent=True, points=True),
    ),
    "calibration": (
        Panel("validation loss", (Line(Metric.VAL_LOSS),), loss=True),
        Panel("validation ECE", (Line(Metric.VAL_ECE),), percent=True),
    ),
    "speed": (
        Panel("seconds per epoch", (Line(Metric.EPOCH_SECONDS),), value_format="%.2f s"),
        Panel("training images per second", (Line(Metric.SAMPLES_PER_S),), value_format="%,.0f images/s"),
    ),
}
LEARNING_CURVES = CURVES["loss and accuracy"]


def curve_metrics(panels: tuple[Panel, ...] | None = None) -> tuple[str, ...]:
    """Every metric the panels draw (default: every choice of CURVES)."""
    chosen = panels if panels is not None else [panel for choice in CURVES.values() for panel in choice]
    return tuple(dict.fromkeys(str(line.metric) for panel in chosen for line in panel.lines))


def drawn(values, percent: bool = False) -> list:
    """Values as an option carries them: None where missing or infinite (JSON has neither), a rate in percent
    rounded as the tables write it."""
    finite = [None if not math.isfinite(v) else v for v in np.asarray(values, dtype=float).tolist()]
    return [round(v * 100, formats.DECIMALS) if percent and v is not None else v for v in finite]


def pairs(x, y, *more, percent: bool = False) -> list[list]:
    """Points [x, y, ...] of a series on value axes, y and any further columns `drawn`."""
    columns = [drawn(x), *(drawn(column, percent) for column in (y, *more))]
    return [list(point) for point in zip(*columns, strict=True)]


def words(metric) -> str:
    """A metric's name as a tooltip writes it: "val_acc" as "val acc"."""
    return str(metric).replace("_", " ")


def escaped(text) -> str:
    """Run data made inert in a tooltip, whose templates ECharts renders as HTML and fills at braces."""
    for char, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("{", "&#123;"), ("}", "&#125;")):
        text = str(text).replace(char, entity)
    return text


def log_ticks(values) -> tuple[list[float], tuple[float, float] | None]:
    """Ticks of a logarithmic axis at 1, 2 and 5 times the powers of ten within the positive finite values (the
    powers alone over three decades), and the range of those values, widened to the 1-2-5 values around a narrow
    one (None when no value can be drawn on a log axis)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    if not len(values):
        return [], None
    low, high = float(values.min()), float(values.max())
    multiples = (1, 2, 5) if high / low <= 1e3 else (1,)
    ticks = [
        float(f"{m * 10.0**k:.6g}")
        for k in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
        for m in multiples
    ]
    inside = [t for t in ticks if low <= t <= high]
    if len(inside) >= 2:
        return inside, (low, high)
    inside = sorted({max(t for t in ticks if t < low), *inside, min(t for t in ticks if t > high)})
    return inside, (inside[0], inside[-1])


def log_axis(values, **axis) -> dict:
    """A logarithmic axis over the values it can draw (positive, finite), labelled at their log_ticks, each label
    written whole ("0.2", not 2e-1)."""
    ticks, span = log_ticks(values)
    if span is None:
        return {"type": "log", **axis}
    return {
        "type": "log",
        "min": span[0],
        "max": span[1],
        "axisLabel": {"customValues": ticks},
        "axisTick": {"customValues": ticks},
        **axis,
    }


def log_x(values, name: str) -> dict:
    """A logarithmic x axis labelled at each of the values (sizes, parameter counts), with room for the end
    markers."""
    ticks = sorted({v for v in drawn(values) if v is not None and v > 0})
    labelled = {"customValues": ticks, "hideOverlap": True}
    return {
        **axis_name(name),
        "type": "log",
        "min": ticks[0] / 1.3 if ticks else None,
        "max": ticks[-1] * 1.3 if ticks else None,
        "axisLabel": labelled,
        "axisTick": {"customValues": ticks},
    }


def legend_title(panels: tuple[Panel, ...], shown: str) -> str:
    """What the legend and the line styles mean, where a panel has both a train and a validation line."""
    both = any({line.split for line in panel.lines} == {"train", "val"} for panel in panels)
    return shown + ("; solid: validation, dashed: train" if both else "")


def axis_name(name: str, gap: int = 30) -> dict:
    """An axis's title, centred along it (a y axis's `gap` px left of it, clear of its labels)."""
    return {"name": name, "nameLocation": "middle", "nameGap": gap}


def epoch_axis(last_epoch, grid: int = 0) -> dict:
    """An epoch axis with whole-number ticks only (never 1.5), none past the last epoch."""
    last = int(last_epoch) if pd.notna(last_epoch) else 1
    return {
        **axis_name("epoch"),
        "type": "value",
        "gridIndex": grid,
        "minInterval": 1,
        "min": "dataMin",
        "max": last,
        **pointer_label("epoch {value}"),
    }


def pointer_label(template: str) -> dict:
    """An x axis's value as a tooltip's heading writes it: whole, in words ("epoch 3", not 3.00)."""
    return {"axisPointer": {"label": {"formatter": template, "precision": 0}}}


def value_axis(percent: bool = False, grid: int = 0, values=(), name: str = "", points: bool = False, **axis) -> dict:
    """A y axis fitted to its values (not from zero), labelled in percent for a rate or in percentage points for a
    difference of rates; one of rates (fractions) that reach 95% ends at 100% (a rounded end would read 102% of an
    accuracy)."""
    scale = {"axisLabel": POINTS_LABEL if points else PERCENT_LABEL} if percent else {}
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if percent and not points and len(finite) and finite.max() > 0.95:
        scale |= up_to_100(finite.min() * 100)
    return {"type": "value", "gridIndex": grid, "scale": True, **scale, **(axis_name(name, 45) if name else {}), **axis}


def up_to_100(low: float) -> dict:
    """The range and tick interval of a percent axis from below `low` up to exactly 100%, about five ticks apart
    (ECharts' own ticks would put 99% just under 100%)."""
    step = next((s for s in (1, 2, 5, 10, 20) if (100 - low) / s <= 6), 20)
    return {"min": max(0, math.floor(low / step) * step), "max": 100, "interval": step}


def percent_axis(name: str, **axis) -> dict:
    """An axis of rates from 0% to 100%, ticked every 20."""
    return {
        "type": "value",
        "min": 0,
        "max": 100,
        "interval": 20,
        "axisLabel": PERCENT_LABEL,
        **axis_name(name, 45),
        **axis,
    }


def run_colors(run_ids: list[str]) -> dict[str, str]:
    """One distinct colour per run: a qualitative palette up to 10 runs, a sampled scale beyond."""
    if len(run_ids) <= 10:
        palette = [to_hex(c) for c in colormaps["tab10"].colors]
    else:
        palette = sampled("turbo", np.linspace(0.05, 0.95, len(run_ids)))
    return {run_id: palette[i % len(palette)] for i, run_id in enumerate(run_ids)}


def sampled(colormap: str, at) -> list[str]:
    """Colours of a matplotlib colour map at positions 0..1."""
    return [to_hex(colormaps[colormap](float(x))) for x in at]


def translucent(color: str, alpha: float) -> str:
    """A '#rrggbb' colour with the given opacity."""
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def color_scale(low: float, high: float, colors: list[str], ends: tuple[str, str]) -> dict:
    """A continuous colour scale (visualMap) beside a chart, its two ends labelled (`ends`: high, low)."""
    return {
        "min": low,
        "max": high,
        "inRange": {"color": colors},
        "text": list(ends),
        "calculable": False,
        "orient": "vertical",
        "right": 0,
        "top": "middle",
    }


def centred_title(text: str, subtext: str = "") -> dict:
    return {"text": text, "subtext": subtext, "left": "center", "top": 4, "textStyle": {"fontSize": 14}}


def caption(text: str) -> dict:
    """A line of small text under a figure (what its legend and line styles mean)."""
    return {"subtext": text, "left": "center", "bottom": 0, "subtextStyle": {"fontSize": 11}}


def line(name: str, points: list, color: str | None = None, **style) -> dict:
    """A line series with markers, in `color`; `style` adds or overrides series options."""
    series = {"type": "line", "name": name, "data": points, "symbolSize": 4, "connectNulls": False}
    if color:
        series["itemStyle"] = {"color": color}
        series["lineStyle"] = {"color": color}
    for key, value in style.items():
        series[key] = {**series[key], **value} if isinstance(series.get(key), dict) else value
    return series


def error_lines(x, train, val, **style) -> list[dict]:
    """Train error (dashed) and validation error (solid) against x, in percent."""
    return [
        line("train error", pairs(x, train, percent=True), TRAIN_COLOR, lineStyle={"type": TRAIN_DASH}, **style),
        line("validation error", pairs(x, val, percent=True), GAP_COLOR, **style),
    ]


def band(name: str, x, low, high, color: str, alpha: float, stack: str, **axes) -> list[dict]:
    """A band between `low` and `high` (as drawn) shaded in `color` at `alpha`: the low line unseen, the width
    stacked on it and filled. Drawn under the lines of its name, and after them, so that their legend entry shows
    the line."""
    hidden = {"type": "line", "name": name, "stack": stack, "stackStrategy": "all", "symbol": "none", "silent": True}
    hidden |= {"z": 1, "itemStyle": {"color": color}, "lineStyle": {"opacity": 0}, "tooltip": {"show": False}, **axes}
    width = np.asarray(high, dtype=float) - np.asarray(low, dtype=float)
    return [
        {**hidden, "data": pairs(x, low)},
        {**hidden, "data": pairs(x, width), "areaStyle": {"color": translucent(color, alpha)}},
    ]


def band_legend(name: str, color: str, alpha: float) -> dict:
    """A legend entry for a band that has a name of its own: a square of its shade."""
    return {"name": name, "icon": "rect", "itemStyle": {"color": translucent(color, min(1.0, 2 * alpha))}}


def panel_grids(panels: tuple[Panel, ...], top: int = 70) -> tuple[list[dict], list[dict]]:
    """The grids of panels drawn side by side, and their titles."""
    share = 100 / len(panels)
    grids = [
        {"left": f"{i * share + 2}%", "width": f"{share - 6}%", "top": top, "bottom": 55, "containLabel": True}
        for i in range(len(panels))
    ]
    titles = [
        {
            "text": panel.title,
            "left": f"{(i + 0.5) * share}%",
            "top": top - 28,
            "textAlign": "center",
            "textStyle": {"fontSize": 13},
        }
        for i, panel in enumerate(panels)
    ]
    return grids, titles


def legend_rows(names) -> int:
    """About how many rows a legend of these names takes on a page about 1,000 px wide (ECharts wraps a plain
    legend, whose entries are ~7 px a character and 40 px of swatch and gap)."""
    return max(1, math.ceil(sum(7 * len(str(name)) + 40 for name in dict.fromkeys(names)) / 1000))


def panels_figure(panels, grids, titles, x_axes, y_axes, series, legend: str, height: int) -> Figure:
    """Panels side by side under one legend (every entry shown, on as many rows as it takes; the panels moved down
    to make room), one axis tooltip per panel."""
    below = 22 * (legend_rows(s["name"] for s in series) - 1)
    for grid in grids:
        grid["top"] += below
    for title in titles:
        title["top"] += below
    return Figure(
        {
            "title": [*titles, caption(legend_title(panels, legend))],
            "legend": {"top": 0},
            "tooltip": {"trigger": "axis"},
            "grid": grids,
            "xAxis": x_axes,
            "yAxis": y_axes,
            "series": series,
        },
        height=height + below,
    )


def learning_curves(
    metrics: pd.DataFrame,
    labels: dict[str, str],
    colors: dict[str, str] | None = None,
    x_title: str = "epoch",
    log_loss: bool = False,
    panels: tuple[Panel, ...] = LEARNING_CURVES,
) -> Figure:
    """The panels' curves per epoch (or along another x, as analysis.along puts it in `step`) for every run: train
    dashed, validation solid, one colour per run (run_colors of the labels' order unless given). A run's lines share
    its name, so its legend entry shows or hides all of them; `id` is "run_id/metric".

    `metrics` is long (run_id, metric, step, value); every logged point is drawn.
    """
    colors = colors or run_colors(list(labels))
    grids, titles = panel_grids(panels)
    x_axes, y_axes, series = [], [], []
    last = metrics["step"].max() if len(metrics) else 1
    for col, panel in enumerate(panels):
        along = {**axis_name(x_title), "type": "value", "gridIndex": col, "scale": True}
        x_axes.append(epoch_axis(last, col) if x_title == "epoch" else along)
        values = metrics[metrics["metric"].isin([str(line.metric) for line in panel.lines])]["value"]
        log = panel.loss and log_loss
        y_axes.append(
            log_axis(values, gridIndex=col) if log else value_axis(panel.percent, col, values, points=panel.points)
        )
        titles[col]["text"] += " (log scale)" * log
        for run_id, label in labels.items():
            for each in panel.lines:
                points = metrics[(metrics["run_id"] == run_id) & (metrics["metric"] == each.metric)]
                if points.empty:
                    continue
                series.append(
                    line(
                        label,
                        pairs(points["step"], points["value"], percent=panel.percent),
                        colors[run_id],
                        id=f"{run_id}/{each.metric}",
                        xAxisIndex=col,
                        yAxisIndex=col,
                        lineStyle={"type": each.dash},
                        tooltip={"valueFormatter": f"{words(each.metric)} {panel.hover}"},
                    )
                )
    return panels_figure(panels, grids, titles, x_axes, y_axes, series, "legend: runs", 440)


def banded_curves(
    band_frame: pd.DataFrame,
    members: pd.DataFrame | None = None,
    member_group: dict[str, str] | None = None,
    panels: tuple[Panel, ...] = LEARNING_CURVES,
) -> Figure:
    """The panels' curves per epoch for every group of runs: the mean over its runs as a line (train dashed,
    validation solid) inside its shaded 95% interval, which the tooltip reads too, N in the legend; `members` (long
    points, with member_group mapping each run to its group) draws each run faintly behind. A group's series share
    its legend name, its mean lines first; a mean line's `id` is "group/metric"."""
    colors = run_colors(list(dict.fromkeys(band_frame["group"])))
    grids, titles = panel_grids(panels)
    last = band_frame["step"].max() if len(band_frame) else 1
    x_axes = [epoch_axis(last, col) for col in range(len(panels))]
    y_axes = []
    means, behind = [], []
    for col, panel in enumerate(panels):
        on = {"xAxisIndex": col, "yAxisIndex": col}
        drawn_here = band_frame[band_frame["metric"].isin([str(line.metric) for line in panel.lines])]
        y_axes.append(value_axis(panel.percent, col, drawn_here["high"].dropna(), points=panel.points))
        for group, color in colors.items():
            rows = band_frame[band_frame["group"] == group]
            label = f"{group} (N={int(rows['n'].max())})"
            for each in panel.lines:
                name = each.metric
                stats = rows[rows["metric"] == name].sort_values("step")
                if stats.empty:
                    continue
                means.append(
                    line(
                        label,
                        pairs(stats["step"], stats["mean"], stats["low"], stats["high"], percent=panel.percent),
                        color,
                        id=f"{group}/{name}",
                        z=3,
                        lineStyle={"type": each.dash},
                        dimensions=["epoch", f"{words(name)}: mean", "95% interval from", "to"],
                        encode={"x": 0, "y": 1, "tooltip": [1, 2, 3]},
                        tooltip={"valueFormatter": panel.hover},
                        **on,
                    )
                )
                shown = stats.dropna(subset=["low", "high"])
                if not shown.empty:
                    scale = 100 if panel.percent else 1
                    low, high = shown["low"] * scale, shown["high"] * scale
                    behind += band(label, shown["step"], low, high, color, 0.18, f"{group}/{name}", **on)
                for run_id in [r for r, g in (member_group or {}).items() if g == group and members is not None]:
                    own = members[(members["run_id"] == run_id) & (members["metric"] == name)]
                    faint = {"color": translucent(color, 0.35), "width": 1, "type": each.dash}
                    points = pairs(own["step"], own["value"], percent=panel.percent)
                    behind.append(
                        line(label, points, color, symbol="none", silent=True, z=1, lineStyle=faint, **on)
                        | {"tooltip": {"show": False}}
                    )
    legend = "legend: mean of each group, in its 95% band"
    return panels_figure(panels, grids, titles, x_axes, y_axes, means + behind, legend, 420)


def single_plot(series: list[dict], x_axis: dict, y_axis, height: int = 360, **option) -> Figure:
    """One plot: its series, axes and a legend above, an axis tooltip unless `option` says otherwise."""
    return Figure(
        {
            "legend": {"top": 0},
            "tooltip": {"trigger": "axis"},
            "grid": {"left": 45, "right": 30, "top": 40, "bottom": 40, "containLabel": True},  # y axis titles fit
            "xAxis": x_axis,
            "yAxis": y_axis,
            "series": series,
            **option,
        },
        height=height,
    )


def epoch_line(epoch: int, text: str, color: str = "#555") -> dict:
    """A dotted vertical line at an epoch, labelled (a series' markLine)."""
    return {
        "symbol": "none",
        "silent": True,
        "lineStyle": {"type": "dotted", "color": color},
        "label": {"formatter": text, "position": "insideEndTop"},
        "data": [{"xAxis": int(epoch)}],
    }


def error_gap(history: pd.DataFrame, best_epoch: int | None = None) -> Figure:
    """Train and validation error per epoch with the gap between them shaded and the best epoch marked.

    `history` is wide: index epoch, columns train_acc and val_acc.
    """
    train_error, val_error = 1 - history[Metric.TRAIN_ACC], 1 - history[Metric.VAL_ACC]
    train, validation = error_lines(history.index, train_error, val_error, tooltip=PERCENT_TOOLTIP)
    if best_epoch:
        validation["markLine"] = epoch_line(best_epoch, f"best epoch {best_epoch}")
    low, high = (np.minimum(train_error, val_error) * 100, np.maximum(train_error, val_error) * 100)
    series = [train, validation, *band("gap", history.index, low, high, GAP_COLOR, 0.2, "gap")]
    return single_plot(
        series,
        epoch_axis(history.index.max()),
        value_axis(True, values=np.maximum(train_error, val_error), name="error"),
        legend={"top": 0, "data": ["train error", "validation error", band_legend("gap", GAP_COLOR, 0.2)]},
    )


def bias_variance(history: pd.DataFrame) -> Figure:
    """Bias, variance and avoidable bias per epoch (wide history indexed by epoch), zero marked."""
    series = [
        line(words(name), pairs(history.index, history[name], percent=True), color, tooltip=hover)
        for (name, color), hover in zip(
            BIAS_COLORS.items(), (PERCENT_TOOLTIP, POINTS_TOOLTIP, POINTS_TOOLTIP), strict=True
        )
        if name in history
    ]
    if series:
        zero = {"color": "gray", "type": "solid", "width": 1}
        series[0]["markLine"] = {"symbol": "none", "silent": True, "label": {"show": False}, "lineStyle": zero}
        series[0]["markLine"]["data"] = [{"yAxis": 0}]
    # one axis: bias a rate (%), variance and avoidable bias differences of rates (pp), all in hundredths
    return single_plot(
        series, epoch_axis(history.index.max()), value_axis(True, name="bias %, the others pp", axisLabel={})
    )


def cell_grid(
    values: np.ndarray,
    class_names: list[str],
    text: list[str],
    scale: dict,
    tooltips: list[str],
    text_colors: list[str],
    title: dict | None = None,
    selectable: bool = True,
) -> Figure:
    """A class x class heatmap (rows true, columns predicted) coloured by `values` on the `scale` (a visualMap),
    each cell labelled with its text while they fit. Selectable: a click selects a cell, data item k being true
    k // n, predicted k % n."""
    n = len(class_names)
    cells = [
        {
            "name": f"{true},{pred}",  # its own name: ECharts selects every item of a clicked item's name
            "value": [pred, true, drawn([values[true, pred]])[0]],
            "label": {"formatter": text[true * n + pred], "color": text_colors[true * n + pred]},
            "tooltip": {"formatter": tooltips[true * n + pred]},
        }
        for true in range(n)
        for pred in range(n)
    ]
    names = [str(name) for name in class_names]
    side = min(44 * n, MATRIX_SIDE) if n > 3 else 140  # square cells, big enough for their numbers while they fit
    heatmap = {"type": "heatmap", "data": cells, "label": {"show": n <= LABELLED_CLASSES, "fontSize": 11}}
    if selectable:
        heatmap["emphasis"] = {"itemStyle": {"borderColor": "#555", "borderWidth": 1}}
        heatmap |= {"selectedMode": "single", "select": {"itemStyle": {"borderColor": "#222", "borderWidth": 3}}}
    else:
        heatmap |= {"cursor": "default", "emphasis": {"disabled": True}}  # nothing to click
    axis = {"type": "category", "data": names, "splitArea": {"show": True}}
    return Figure(
        {
            **({"title": title} if title else {}),
            "tooltip": {"trigger": "item"},
            "grid": MATRIX_GRID,
            "xAxis": {**axis, **axis_name("predicted", 28), "position": "top"},
            "yAxis": {**axis, **axis_name("true", 40), "inverse": True},
            "visualMap": {**scale, "itemHeight": min(side, 200)},
            "series": [heatmap],
        },
        height=side + MATRIX_GRID["top"] + MATRIX_GRID["bottom"],
        width=side + MATRIX_GRID["left"] + MATRIX_GRID["right"],
    )


def images(count, signed: bool = False) -> str:
    """A number of images in words: "1 image", "1,204 images", "+3 images" (signed: a change)."""
    count = int(round(count))
    return f"{count:{'+' if signed else ''},} image{'' if abs(count) == 1 else 's'}"


def cell_percent(value: float) -> str:
    """A row-normalised cell's percentage, whole (a cell is small), "<1%" for a few images rather than "0%"."""
    return "<1%" if 0 < value < 0.5 else f"{value:.0f}%"


def confusion_matrix(matrix: np.ndarray, class_names: list[str], normalize: bool = False) -> Figure:
    """The confusion matrix (rows true, columns predicted), counts or row-normalised in percent; text white on
    dark cells."""
    counts = np.asarray(matrix)
    rows = counts.sum(axis=1, keepdims=True)
    values = (
        np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0) * 100
        if normalize
        else counts.astype(float)
    )
    top = max(values.max(), 1e-9)
    text = [cell_percent(v) if normalize else f"{int(v)}" for v in values.ravel()]
    tooltips = [
        f"true {escaped(class_names[t])} / predicted {escaped(class_names[p])}: {images(counts[t, p])}"
        + (f" ({values[t, p]:.2f}% of the true class)" if normalize else "")
        for t in range(len(class_names))
        for p in range(len(class_names))
    ]
    ends = (f"{top:.0f}%" if normalize else f"{int(top):,}", "0%" if normalize else "0")
    scale = color_scale(0, float(top), sampled("Blues", np.linspace(0.05, 1, 6)), ends)
    colors = ["white" if v > 0.5 * top else "#222" for v in values.ravel()]
    return cell_grid(values, class_names, text, scale, tooltips, colors)


def confusion_difference(
    a: np.ndarray, b: np.ndarray, class_names: list[str], labels: tuple[str, str], selectable: bool = True
) -> Figure:
    """Row-normalised matrix of B minus A (two runs, or two epochs of one), in percentage points of each true
    class's images: red where B puts more of them, blue where fewer; the title says so. Selectable: a click on a
    cell selects it, as on the confusion matrix."""

    def normalised(m):
        m = np.asarray(m, dtype=float)
        return m / np.maximum(m.sum(axis=1, keepdims=True), 1)

    diff = (normalised(b) - normalised(a)) * 100
    limit = float(max(abs(diff).max(), 1e-9))
    a_name, b_name = labels
    change = np.asarray(b) - np.asarray(a)
    n = len(class_names)
    tooltips = [
        f"true {escaped(class_names[t])} / predicted {escaped(class_names[p])}: {escaped(b_name)} {diff[t, p]:+.1f} pp "
        f"of the true class's images ({images(change[t, p], signed=True)}) against {escaped(a_name)}"
        for t in range(n)
        for p in range(n)
    ]
    scale = color_scale(
        -limit, limit, sampled("RdBu_r", np.linspace(0, 1, 9)), (f"+{limit:.1f} pp", f"-{limit:.1f} pp")
    )
    subtext = f"red: {b_name} puts more of the true class here, blue: fewer (percentage points of the row)"
    return cell_grid(
        diff,
        class_names,
        [f"{v:+.1f}" if round(v, 1) else "" for v in diff.ravel()],
        scale,
        tooltips,
        ["white" if abs(v) > 0.6 * limit else "#222" for v in diff.ravel()],
        title=centred_title(f"{b_name} minus {a_name}", subtext),
        selectable=selectable,
    )


def labelled_bars(values, percent: bool = True, **series) -> dict:
    """A bar series, each bar labelled with its value as the tables write it."""
    texts = [formats.percent(v) if percent else f"{v:.4g}" for v in np.asarray(values, dtype=float)]
    bars = [{"value": v, "label": {"formatter": t}} for v, t in zip(drawn(values, percent), texts, strict=True)]
    return {"type": "bar", "data": bars, "label": {"show": True}, "tooltip": PERCENT_TOOLTIP, **series}


def per_class_accuracy(per_class: pd.DataFrame) -> Figure:
    """Test accuracy of each class as a bar labelled with it, on an axis from 0 to 100%."""
    return single_plot(
        [labelled_bars(per_class["accuracy"], name="test accuracy", label={"show": True, "position": "top"})],
        {"type": "category", "data": [str(name) for name in per_class["name"]], **axis_name("class")},
        percent_axis("test accuracy"),  # a full bar's label above the plot, in its margin
    )


@dataclass(frozen=True)
class Axis:
    """One axis of parallel coordinates: ECharts' parallelAxis and the values of the lines on it."""

    spec: dict
    values: list


def parallel_axes(params: pd.DataFrame, score, score_label: str) -> list[Axis]:
    """Each param's axis (text values become categories; a span of 100x or more a log axis; a few whole numbers,
    e.g. seeds, whole ticks), then the score's in percent."""
    axes = []
    for dim, name in enumerate(params.columns):
        values = pd.to_numeric(params[name], errors="coerce")
        numeric = values.notna().all()
        spec = {"dim": dim, "name": str(name)}
        if numeric and (values > 0).all() and values.max() >= 100 * values.min():  # e.g. lr
            axes.append(Axis({**spec, "name": f"{name} (log)", "type": "log"}, drawn(values)))
        elif numeric and (values == values.round()).all() and values.nunique() <= 10:  # a seed: no 0.5 ticks
            axes.append(Axis({**spec, "type": "value", "minInterval": 1, "scale": True}, drawn(values)))
        elif numeric:
            axes.append(Axis({**spec, "type": "value", "scale": True}, drawn(values)))
        else:
            texts = params[name].map(lambda v: "(not set)" if pd.isna(v) else str(v))  # a run without the param
            axes.append(Axis({**spec, "type": "category", "data": list(dict.fromkeys(texts))}, list(texts)))
    scores = drawn(score, percent=True)
    score_axis = {"dim": len(axes), "name": score_label, "type": "value", "scale": True, "axisLabel": PERCENT_LABEL}
    return [*axes, Axis(score_axis, scores)]


def parallel_coordinates(
    params: pd.DataFrame,
    score,
    score_label: str = "test acc",
    highlight: int | None = None,
    highlight_color: str = BEST_COLOR,
    highlight_name: str = "best trial",
) -> Figure:
    """Params (one axis each) against a score, one line per run in blues, darker for a higher score; the line at
    position `highlight` (the best trial, a baseline) thick in `highlight_color`, on top. Hovering a line names
    its values."""
    axes = parallel_axes(params, score, score_label)
    rows = [list(values) for values in zip(*(axis.values for axis in axes), strict=True)]
    names = [axis.spec["name"] for axis in axes]
    tooltip = {"formatter": "<br>".join(f"{escaped(name)}: {{@[{i}]}}" for i, name in enumerate(names)) + "%"}
    scores = [s for s in axes[-1].values if s is not None] or [0.0]
    others = [row for i, row in enumerate(rows) if i != highlight]
    runs = {"type": "parallel", "name": "runs", "data": others, "lineStyle": {"width": 1.5, "opacity": 0.9}}
    series = [runs | {"tooltip": tooltip}]
    if highlight is not None:
        thick = {"width": 4, "color": highlight_color, "opacity": 1}
        series.append(
            {"type": "parallel", "name": highlight_name, "data": [rows[highlight]], "lineStyle": thick, "z": 3}
            | {"tooltip": tooltip}
        )
    blues = sampled("Blues", np.linspace(0.35, 1.0, 6))
    low, high = min(scores), max(scores)
    return Figure(
        {
            "legend": {"top": 0, "data": [highlight_name] if highlight is not None else []},
            "tooltip": {"trigger": "item"},
            "parallel": {
                "left": 60,
                "right": 190,
                "top": 70,
                "bottom": 30,
            },  # the colour scale and its ends clear of the last axis
            "parallelAxis": [{**axis.spec, "nameTextStyle": {"fontWeight": "bold"}} for axis in axes],
            "visualMap": color_scale(low, high, blues, (f"{score_label} {high:.2f}%", f"{low:.2f}%"))
            | {"dimension": len(axes) - 1, "seriesIndex": 0},
            "series": series,
        },
        height=420,
    )


def param_importances(importances: dict[str, float]) -> Figure:
    """Optuna's importance of each searched parameter for the objective, largest on top."""
    ordered = sorted(importances.items(), key=lambda kv: kv[1])
    return single_plot(
        [labelled_bars([v for _, v in ordered], name="importance", label={"show": True, "position": "right"})],
        percent_axis("importance (fANOVA, share of objective variance)"),
        {"type": "category", "data": [str(k) for k, _ in ordered]},
        height=90 + 40 * len(ordered),
        legend={"show": False},
        grid={"left": 20, "right": 50, "top": 20, "bottom": 40, "containLabel": True},
    )


def data_size_curve(points: pd.DataFrame, fit: PowerLaw | None = None) -> Figure:
    """Train and validation error against training-set size (columns train_size, train_error, val_error), and the
    validation error's fitted power law up to twice the largest size, in its 95% band where it has one."""
    points = points.sort_values("train_size")
    series = error_lines(points["train_size"], points["train_error"], points["val_error"], tooltip=PERCENT_TOOLTIP)
    legend = ["train error", "validation error"]
    if fit is not None:
        grid = np.geomspace(min(fit.sizes), 2 * max(fit.sizes), 60)
        fitted = [fit.error_at(n) for n in grid]
        dotted = {"type": "dotted"}
        curve = line("fitted a·n^-b + c", pairs(grid, fitted, percent=True), GAP_COLOR, symbol="none")
        series.append(curve | {"lineStyle": {**curve["lineStyle"], **dotted}, "tooltip": PERCENT_TOOLTIP})
        legend.append(curve["name"])
        bounds = [fit.interval_at(n) for n in grid]
        if all(bounds):
            low, high = (np.array([b[i] for b in bounds]) * 100 for i in (0, 1))
            series += band("fit's 95% band", grid, low, high, GAP_COLOR, 0.12, "fit")
            legend.append(band_legend("fit's 95% band", GAP_COLOR, 0.12))
    sizes = list(points["train_size"]) + ([2 * max(fit.sizes)] if fit is not None else [])
    return single_plot(
        series,
        log_x(sizes, "training images") | pointer_label("{value} training images"),
        value_axis(True, values=points["val_error"], name="error"),
        legend={"top": 0, "data": legend},
    )


def step_losses(
    raw: pd.DataFrame, smooth: pd.DataFrame, labels: dict[str, str], colors: dict[str, str] | None = None
) -> Figure:
    """Training loss per optimisation step for every run: the smoothed curve bold, the raw one faint behind; one
    colour per run (run_colors of the labels' order unless given); a smoothed line's `id` is "run_id/metric"."""
    colors = colors or run_colors(list(labels))
    bold, faint = [], []
    for run_id, label in labels.items():
        mine, smoothed = raw[raw["run_id"] == run_id], smooth[smooth["run_id"] == run_id]
        bold.append(
            line(
                label,
                pairs(smoothed["step"], smoothed["value"]),
                colors[run_id],
                id=f"{run_id}/{Metric.TRAIN_LOSS_STEP}",
                symbol="none",
                z=3,
            )
            | {"tooltip": {"valueFormatter": "smoothed loss %.4g"}}
        )
        pale = {"color": translucent(colors[run_id], 0.3), "width": 1}
        faint.append(
            line(label, pairs(mine["step"], mine["value"]), colors[run_id], symbol="none", silent=True, lineStyle=pale)
            | {"tooltip": {"show": False}}
        )
    return single_plot(
        bold + faint,  # each run's bold line first: its legend entry shows that one
        {"type": "value", "scale": True, **axis_name("optimisation step")} | pointer_label("step {value}"),
        log_axis(raw["value"], **axis_name("training loss (log scale)", 45)),
        legend={"top": 0},
        grid={
            "left": 45,
            "right": 30,
            "top": 20 + 22 * legend_rows(labels.values()),
            "bottom": 40,
            "containLabel": True,
        },
    )


def calibration_curves(history: pd.DataFrame, rising_from: int | None) -> Figure:
    """Validation loss (left axis) and expected calibration error (right axis) per epoch, with the epoch from which
    the loss rises while accuracy holds marked. `history` is wide: index epoch, columns val_loss and val_ece."""
    loss = line(
        "val loss", pairs(history.index, history[Metric.VAL_LOSS]), TRAIN_COLOR, tooltip={"valueFormatter": "%.4g"}
    )
    if rising_from is not None:
        loss["markLine"] = epoch_line(rising_from, f"loss rises after epoch {rising_from}", "#d62728")
    series = [loss]
    if Metric.VAL_ECE in history:
        ece = pairs(history.index, history[Metric.VAL_ECE], percent=True)
        dashed = {"type": TRAIN_DASH}
        series.append(line("val ECE", ece, BASELINE_COLOR, yAxisIndex=1, lineStyle=dashed, tooltip=PERCENT_TOOLTIP))
    return single_plot(
        series,
        epoch_axis(history.index.max()),
        [
            {"type": "value", "min": 0, **axis_name("val loss (cross-entropy)", 45)},
            {
                "type": "value",
                "min": 0,
                **axis_name("val ECE", 45),
                "axisLabel": PERCENT_LABEL,
                "alignTicks": True,  # its ticks on the loss axis's grid lines
            },
        ],
    )


def reliability_diagram(table: dict, epoch: int) -> Figure:
    """One epoch's reliability table ({edges, counts, accuracy, confidence}) as bars of accuracy per confidence bin,
    each labelled with its image count (a bin of 3 images says little), a marker at each bin's mean confidence and
    accuracy, and the diagonal of perfect calibration: a marker below it is an overconfident bin."""
    edges = np.asarray(table["edges"], dtype=float)
    accuracy, confidence = (np.asarray(table[k], dtype=float) for k in ("accuracy", "confidence"))
    counts = np.asarray(table["counts"])
    centres = (edges[:-1] + edges[1:]) / 2
    bins = [
        {
            "value": point,
            "label": {"formatter": f"{n:,}" if n else ""},
            "tooltip": {
                "formatter": f"mean confidence {formats.percent(conf)}: accuracy {formats.percent(acc)} of {n:,} images"
            },
        }
        for point, n, conf, acc in zip(
            pairs(centres * 100, accuracy, percent=True), counts, confidence, accuracy, strict=True
        )
    ]
    series = [
        {"type": "bar", "name": "accuracy", "data": bins, "barWidth": "95%"}
        | {"label": {"show": True, "position": "top", "fontSize": 10}},
        {
            "type": "scatter",
            "name": "at the bin's mean confidence",
            "data": pairs(confidence * 100, accuracy, percent=True),
        }
        | {"itemStyle": {"color": "#d62728"}, "symbolSize": 7, "silent": True},
        line(
            "perfectly calibrated",
            [[0, 0], [100, 100]],
            "gray",
            symbol="none",
            silent=True,
            lineStyle={"type": "dotted"},
        ),
    ]
    return single_plot(
        series,
        {**percent_axis("confidence (top class probability)"), "nameGap": 30},
        percent_axis("accuracy"),  # full bars' counts above the plot, in its margin
        title=centred_title(f"Reliability, validation set after epoch {epoch}"),
        legend={"bottom": 0},
        tooltip={"trigger": "item"},
        grid={"left": 45, "right": 40, "top": 50, "bottom": 60, "containLabel": True},
    )


def heat_limit(frame: pd.DataFrame, values: list[str]) -> float:
    """The largest size among `values` (fractions): heatmaps drawn side by side share it as their colour scale's
    end, so the same red means the same number of points in each."""
    sizes = np.abs(frame[values].to_numpy(dtype=float))
    return float(np.nanmax(sizes)) if np.isfinite(sizes).any() and np.nanmax(sizes) > 0 else 1.0


def heat_words(value: float, difference: bool) -> str:
    """A heatmap cell's value as the tables write it: a difference in pp, a rate in percent."""
    return formats.points(value) if difference else formats.percent(value)


def class_epoch_heatmap(frame: pd.DataFrame, value: str, title: str, diverging: bool, limit: float) -> Figure:
    """One value per class and epoch (long frame with columns epoch, name and `value`, fractions) as a heatmap,
    classes down, epochs across; diverging is a red-blue scale from -limit to +limit centred on zero (for a gap),
    else white to red from 0 to limit."""
    grid = frame.pivot_table(index="name", columns="epoch", values=value, sort=False)
    unit = " pp" if diverging else "%"
    cells = [
        {
            "value": [col, row, drawn([grid.iat[row, col]], percent=True)[0]],
            "tooltip": {
                "formatter": f"class {escaped(name)}, epoch {epoch}: {heat_words(grid.iat[row, col], diverging)}"
            },
        }
        for row, name in enumerate(grid.index)
        for col, epoch in enumerate(grid.columns)
        if pd.notna(grid.iat[row, col])
    ]
    top = limit * 100
    low = -top if diverging else 0.0
    colors = sampled("RdBu_r", np.linspace(0, 1, 9)) if diverging else sampled("Reds", np.linspace(0, 1, 6))
    sign = "+" if diverging else ""
    return Figure(
        {
            "title": centred_title(title),
            "tooltip": {"trigger": "item"},
            "grid": {"left": 20, "right": 90, "top": 40, "bottom": 40, "containLabel": True},
            "xAxis": {"type": "category", "data": [str(e) for e in grid.columns], **axis_name("epoch")},
            "yAxis": {"type": "category", "data": [str(n) for n in grid.index], "inverse": True},
            "visualMap": color_scale(low, top, colors, (f"{sign}{top:.1f}{unit}", f"{low:.1f}{unit}")),
            "series": [{"type": "heatmap", "name": title, "data": cells}],
        },
        height=360,
    )


def capacity_curve(points: pd.DataFrame, sweet_spot: int) -> Figure:
    """Train and validation error against parameter count (columns params_total, width, train_error, val_error;
    rows in order of parameters, log x), each point labelled with its width, the lowest validation error (row
    position `sweet_spot`) starred: left of it the model underfits, right of it the extra capacity buys nothing or
    overfits."""
    hover = {"formatter": "{a}: width ×{@[2]}, {@[0]} parameters: {@[1]}%"}
    train, validation = error_lines(points["params_total"], points["train_error"], points["val_error"], tooltip=hover)
    for series in (train, validation):
        series["data"] = [[*point, w] for point, w in zip(series["data"], drawn(points["width"]), strict=True)]
    validation["label"] = {"show": True, "formatter": "×{@[2]}", "position": "bottom"}
    best = points.iloc[sweet_spot]
    star = {"type": "scatter", "name": "sweet spot", "symbol": STAR, "symbolSize": 18, "silent": True}
    star |= {
        "data": pairs([best["params_total"]], [best["val_error"]], percent=True),
        "itemStyle": {"color": BEST_COLOR},
    }
    return single_plot(
        [train, validation, star],
        log_x(points["params_total"], "parameters"),
        value_axis(True, name="error", min=0),
        height=380,
        tooltip={"trigger": "item"},
    )

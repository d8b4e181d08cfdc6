"""Pure figure builders: DataFrames in, Plotly figures out. No Streamlit calls, so each is unit-tested."""

import html
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.data_scaling import PowerLaw
from core.schema import Metric
from dashboard import formats

TRAIN_DASH, VAL_DASH = "dash", "solid"
BEST_COLOR = "#2ca02c"  # the best trial or run: green reads as good, red as failure
BASELINE_COLOR = "#ff7f0e"  # the run others are measured against: marked, not judged
MODEBAR_PX = 36  # the band at the top of a figure where Plotly's toolbar appears on hover


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
    """One panel of curves side by side: its title and its lines."""

    title: str
    lines: tuple[Line, ...]
    percent: bool = False  # accuracies and errors: axis and hover in percent
    loss: bool = False  # the panel the "log-scale loss" choice makes logarithmic


CURVES = {  # what curves of runs can show, one choice each: its panels, drawn side by side
    "loss and accuracy": (
        Panel("loss", (Line(Metric.TRAIN_LOSS, "train"), Line(Metric.VAL_LOSS, "val")), loss=True),
        Panel("accuracy", (Line(Metric.TRAIN_ACC, "train"), Line(Metric.VAL_ACC, "val")), percent=True),
    ),
    "bias and variance": (
        Panel("bias (train error)", (Line(Metric.BIAS),), percent=True),
        Panel("variance (val error - train error)", (Line(Metric.VARIANCE),), percent=True),
    ),
    "calibration": (
        Panel("validation loss", (Line(Metric.VAL_LOSS),), loss=True),
        Panel("validation ECE", (Line(Metric.VAL_ECE),), percent=True),
    ),
    "speed": (
        Panel("seconds per epoch", (Line(Metric.EPOCH_SECONDS),)),
        Panel("training images per second", (Line(Metric.SAMPLES_PER_S),)),
    ),
}
LEARNING_CURVES = CURVES["loss and accuracy"]


def curve_metrics(panels: tuple[Panel, ...] | None = None) -> tuple[str, ...]:
    """Every metric the panels draw (default: every choice of CURVES)."""
    chosen = panels if panels is not None else [panel for choice in CURVES.values() for panel in choice]
    return tuple(dict.fromkeys(str(line.metric) for panel in chosen for line in panel.lines))


def panels_layout(
    fig: go.Figure, panels: tuple[Panel, ...], log_loss: bool = False, metrics: pd.DataFrame | None = None
) -> None:
    """Each panel's y axis: percent for accuracies and errors, logarithmic for a loss when asked (ticks placed
    from the panel's values in `metrics`)."""
    for col, panel in enumerate(panels, start=1):
        if panel.percent:
            fig.update_yaxes(tickformat=formats.AXIS_PERCENT, row=1, col=col)
        if panel.loss and log_loss:
            drawn = metrics[metrics["metric"].isin([str(line.metric) for line in panel.lines])]["value"]
            fig.update_yaxes(**log_axis(drawn), row=1, col=col)


def log_axis(values) -> dict:
    """A logarithmic axis labelled at 1, 2 and 5 times the powers of ten within the values, each label written
    whole ("0.2", "0.5", "1"): Plotly's own minor labels are bare digits, where 0.9 reads like 9."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    if not len(values):
        return {"type": "log"}
    low, high = values.min(), values.max()
    multiples = (1, 2, 5) if high / low <= 1e3 else (1,)  # over three decades, the powers of ten alone
    ticks = [
        m * 10.0**k for k in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1) for m in multiples
    ]
    inside = [t for t in ticks if low <= t <= high]
    axis = {"type": "log", "tickmode": "array"}
    if len(inside) < 2:  # a narrow range: widen it to the 1-2-5 values on either side, so that two are labelled
        below, above = max(t for t in ticks if t < low), min(t for t in ticks if t > high)
        inside = sorted({below, *inside, above})
        axis["range"] = [math.log10(below), math.log10(above)]
    return {**axis, "tickvals": inside, "ticktext": [f"{t:g}" for t in inside]}


def legend_title(panels: tuple[Panel, ...], drawn: str) -> str:
    """What the line styles mean, where a panel has both a train and a validation line."""
    both = any({line.split for line in panel.lines} == {"train", "val"} for panel in panels)
    return drawn + ("; solid: validation, dashed: train" if both else "")


def epoch_axis(last_epoch) -> dict:
    """An epoch axis with whole-number ticks only (never 1.5), at most about a dozen of them, none past the last
    epoch (the axis's padding would otherwise show epoch 31 of a 30-epoch run)."""
    last = int(last_epoch) if pd.notna(last_epoch) else 1
    return {
        "title": {"text": "epoch"},
        "tickmode": "array",
        "tickformat": "d",
        "tickvals": list(range(1, last + 1, max(1, math.ceil(last / 12)))),
    }


def value_format(panel: Panel) -> str:
    """The hover format of a panel's values: a percentage, or four significant digits."""
    return formats.HOVER_PERCENT if panel.percent else ",.4~r"  # 12,350 images/s, not 1.235e+4


def escaped(texts) -> list[str]:
    """Labels from run data, with HTML escaped: Plotly renders tags such as <a> and <b> in text."""
    return [html.escape(str(t)) for t in texts]


def run_colors(run_ids: list[str]) -> dict[str, str]:
    """One distinct colour per run: the qualitative palette up to 10 runs, a sampled scale beyond."""
    if len(run_ids) <= 10:
        palette = px.colors.qualitative.Plotly
    else:
        palette = px.colors.sample_colorscale("Turbo", list(np.linspace(0.05, 0.95, len(run_ids))))
    return {run_id: palette[i % len(palette)] for i, run_id in enumerate(run_ids)}


def learning_curves(
    metrics: pd.DataFrame,
    labels: dict[str, str],
    colors: dict[str, str] | None = None,
    x_title: str = "epoch",
    log_loss: bool = False,
    panels: tuple[Panel, ...] = LEARNING_CURVES,
) -> go.Figure:
    """The panels' curves per epoch (or along another x, as analysis.along puts it in `step`) for every run: train
    dashed, validation solid, one colour per run (run_colors of the labels' order unless given).

    `metrics` is long (run_id, metric, step, value); every logged point is drawn.
    """
    fig = make_subplots(
        rows=1,
        cols=len(panels),
        subplot_titles=[panel.title + " (log scale)" * (panel.loss and log_loss) for panel in panels],
    )
    colors = colors or run_colors(list(labels))
    for run_id, label in labels.items():
        label = html.escape(label)
        legend_entry(fig, label, run_id, colors[run_id])
        for col, panel in enumerate(panels, start=1):
            for line in panel.lines:
                points = metrics[(metrics["run_id"] == run_id) & (metrics["metric"] == line.metric)]
                if points.empty:
                    continue
                fig.add_trace(
                    go.Scatter(
                        x=points["step"],
                        y=points["value"],
                        mode="lines+markers",
                        name=f"{label} ({line.split})" if line.split else label,
                        legendgroup=run_id,
                        showlegend=False,
                        line={"color": colors[run_id], "dash": line.dash},
                        marker={"size": 4},
                        hovertemplate=f"{line.metric} %{{y:{value_format(panel)}}}<extra>{label}</extra>",
                    ),
                    row=1,
                    col=col,
                )
    if x_title == "epoch":
        fig.update_xaxes(**epoch_axis(metrics["step"].max() if len(metrics) else 1))
    else:
        fig.update_xaxes(title_text=x_title, tickformat=",~r")
    panels_layout(fig, panels, log_loss, metrics)
    fig.update_layout(
        height=440,
        margin={"t": 40},
        hovermode="x unified",
        legend={"font": {"size": 10}, "title": {"text": legend_title(panels, "runs")}},
    )
    return fig


def legend_entry(fig: go.Figure, label: str, group: str, color: str) -> None:
    """One legend entry for a run or group whose traces (train and validation, two panels) carry none: a click
    on it shows or hides all of them."""
    fig.add_trace(
        go.Scatter(
            x=[None],
            y=[None],
            mode="lines",
            name=label,
            legendgroup=group,
            showlegend=True,
            line={"color": color},
            hoverinfo="skip",
        )
    )


def error_gap(history: pd.DataFrame, best_epoch: int | None = None) -> go.Figure:
    """Train and validation error per epoch with the gap between them shaded and the best epoch marked.

    `history` is wide: index epoch, columns train_acc and val_acc.
    """
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=history.index,
            y=1 - history[Metric.TRAIN_ACC],
            name="train error",
            mode="lines+markers",
            line={"dash": TRAIN_DASH},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=history.index,
            y=1 - history[Metric.VAL_ACC],
            name="validation error",
            mode="lines+markers",
            fill="tonexty",
            fillcolor="rgba(239,85,59,0.2)",
        )
    )
    if best_epoch:
        fig.add_vline(x=best_epoch, line_dash="dot", annotation_text=f"best epoch {best_epoch}")
    fig.update_layout(
        xaxis=epoch_axis(history.index.max()),
        yaxis_title="error",
        yaxis_tickformat=formats.AXIS_PERCENT,
        height=360,
        margin={"t": 30},
    )
    return fig


def bias_variance(history: pd.DataFrame) -> go.Figure:
    """Bias, variance and avoidable bias per epoch (wide history indexed by epoch)."""
    fig = go.Figure()
    for name in (Metric.BIAS, Metric.VARIANCE, Metric.AVOIDABLE_BIAS):
        if name in history:
            fig.add_trace(
                go.Scatter(x=history.index, y=history[name], name=str(name).replace("_", " "), mode="lines+markers")
            )
    fig.add_hline(y=0, line_color="gray", line_width=1)
    fig.update_layout(
        xaxis=epoch_axis(history.index.max()), yaxis_tickformat=formats.AXIS_PERCENT, height=360, margin={"t": 30}
    )
    return fig


def cell_grid(
    values: np.ndarray, class_names: list[str], text: list[str], marker: dict, hover: str, counts: np.ndarray
) -> go.Figure:
    """A class x class grid of square markers (rows true, columns predicted) coloured by `values`.

    Markers rather than a heatmap because Plotly heatmaps emit no selection events: a click on a cell
    selects it (x = predicted, y = true). `hover` reads customdata: true, predicted, and the cell's count.
    """
    n = len(class_names)
    true, pred = np.meshgrid(range(n), range(n), indexing="ij")
    fig = go.Figure(
        go.Scatter(
            x=pred.ravel(),
            y=true.ravel(),
            mode="markers+text",
            text=text,
            textfont={"size": 11, "color": "#222"},
            marker={
                "symbol": "square",
                "size": 34,
                "color": values.ravel(),
                "showscale": True,
                "line": {"width": 0},
                **marker,
            },
            selected={"marker": {"opacity": 1}},
            unselected={"marker": {"opacity": 1}},
            customdata=np.stack([true.ravel(), pred.ravel(), np.asarray(counts).ravel()], axis=1),
            hovertemplate=hover + "<extra></extra>",
        )
    )
    ticks = {"tickmode": "array", "tickvals": list(range(n)), "ticktext": escaped(class_names)}
    fig.update_layout(
        xaxis={**ticks, "title": "predicted", "side": "top"},
        yaxis={**ticks, "title": "true", "autorange": "reversed"},
        height=480,
        width=540,
        margin={"t": 60},
    )  # no clickmode or dragmode of its own: a figure's clickmode="event+select" or dragmode="select" stops a plain
    # click from selecting a cell under Streamlit's point selection
    return fig


def confusion_matrix(matrix: np.ndarray, class_names: list[str], normalize: bool = False) -> go.Figure:
    """The confusion matrix (rows true, columns predicted), counts or row-normalised; text white on dark cells."""
    counts = np.asarray(matrix)
    rows = counts.sum(axis=1, keepdims=True)
    values = (
        np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
        if normalize
        else counts.astype(float)
    )
    fig = cell_grid(
        values,
        class_names,
        [f"{v:.0%}" if normalize else f"{int(v)}" for v in values.ravel()],  # whole percent: a cell is small
        {"colorscale": "Blues", **({"colorbar": {"tickformat": formats.AXIS_PERCENT}} if normalize else {})},
        "true %{customdata[0]} / predicted %{customdata[1]}: %{customdata[2]} images",
        counts,
    )
    dark = values.ravel() > 0.5 * max(values.max(), 1e-9)
    fig.update_traces(textfont_color=np.where(dark, "white", "#222"))
    return fig


def confusion_difference(a: np.ndarray, b: np.ndarray, class_names: list[str], labels: tuple[str, str]) -> go.Figure:
    """Row-normalised matrix of B minus A (two runs, or two epochs of one), in percentage points of each true
    class's images: red where B puts more of them, blue where fewer; the title says so. A click on a cell
    selects it, as on the confusion matrix."""

    def normalised(m):
        m = np.asarray(m, dtype=float)
        return m / np.maximum(m.sum(axis=1, keepdims=True), 1)

    diff = (normalised(b) - normalised(a)) * 100
    limit = max(abs(diff).max(), 1e-9)
    a_name, b_name = escaped(labels)
    change = np.asarray(b) - np.asarray(a)
    fig = cell_grid(
        diff,
        class_names,
        [f"{v:+.1f}" if round(v, 1) else "" for v in diff.ravel()],
        {"colorscale": "RdBu_r", "cmin": -limit, "cmax": limit, "colorbar": {"title": {"text": "pp"}}},
        f"true %{{customdata[0]}} / predicted %{{customdata[1]}}: {b_name} %{{marker.color:+.1f}} pp of "
        f"the true class's images (%{{customdata[2]:+d}} images) against {a_name}",
        change,
    )
    text_color = np.where(abs(diff.ravel()) > 0.6 * limit, "white", "#222")
    fig.update_traces(textfont_color=text_color, selected_textfont_color="#222", unselected_textfont_color="#222")
    fig.update_layout(
        title={
            "text": f"{b_name} minus {a_name}<br><sup>red: {b_name} puts more of the true class "
            f"here, blue: fewer (percentage points of the row)</sup>",
            "yref": "container",
            "y": 1,
            "yanchor": "top",
            "pad": {"t": MODEBAR_PX},  # below Plotly's toolbar, which a hover shows over the figure's top edge
        },
        height=560,
        width=580,
        margin={"t": 150},
    )
    return fig


def per_class_accuracy(per_class: pd.DataFrame) -> go.Figure:
    fig = go.Figure(
        go.Bar(
            x=escaped(per_class["name"]),
            y=per_class["accuracy"],
            text=[formats.percent(a) for a in per_class["accuracy"]],
            textposition="outside",
        )
    )
    fig.update_layout(
        yaxis_tickformat=".0%",
        yaxis_range=[0, 1.08],
        xaxis={"title": "class", "type": "category"},
        yaxis_title="test accuracy",
        height=360,
        margin={"t": 30},
    )
    return fig


@dataclass(frozen=True)
class Axis:
    """One axis of parallel coordinates: its title, each line's position on it, and its labelled ticks."""

    title: str
    values: np.ndarray  # positions: the values, their log10 for a log axis, or category codes
    tickvals: tuple[float, ...]
    ticktext: tuple[str, ...]


def parallel_axes(params: pd.DataFrame, score, score_label: str) -> list[Axis]:
    """Each param's axis (text values become categories; a span of 100x or more a log axis; a few whole numbers,
    e.g. seeds, whole ticks), then the score's in percent."""
    axes = []
    for name in params.columns:
        values = pd.to_numeric(params[name], errors="coerce")
        numeric = values.notna().all()
        if numeric and (values > 0).all() and values.max() >= 100 * values.min():  # e.g. lr: a log axis, as values
            ticks = sorted(values.unique())
            if len(ticks) > 8:  # a search's many values: label the powers of ten instead
                ticks = [10.0**p for p in range(math.floor(np.log10(ticks[0])), math.ceil(np.log10(ticks[-1])) + 1)]
            axes.append(
                Axis(
                    f"{name} (log)", np.log10(values.to_numpy()), tuple(np.log10(ticks)), tuple(f"{t:g}" for t in ticks)
                )
            )
        elif numeric and (values == values.round()).all() and values.nunique() <= 10:  # a seed: no 0.5 ticks
            ticks = sorted(values.unique())
            axes.append(Axis(name, values.to_numpy(), tuple(ticks), tuple(f"{v:g}" for v in ticks)))
        elif numeric:
            ticks = sorted({values.min(), values.max()})
            axes.append(Axis(name, values.to_numpy(), tuple(ticks), tuple(f"{v:.4g}" for v in ticks)))
        else:
            codes, names = pd.factorize(params[name].astype(str))
            axes.append(Axis(name, codes.astype(float), tuple(range(len(names))), tuple(names)))
    score = np.asarray(score, dtype=float)
    ticks = sorted({np.nanmin(score), np.nanmax(score)}) if np.isfinite(score).any() else []
    axes.append(Axis(score_label, score, tuple(ticks), tuple(formats.percent(t) for t in ticks)))
    return axes


def on_axis(axis: Axis, values) -> np.ndarray:
    """Positions on an axis scaled to 0..1 over its values and ticks (the middle when they are all one)."""
    known = np.concatenate([axis.values[np.isfinite(axis.values)], np.asarray(axis.tickvals, dtype=float)])
    low, high = (known.min(), known.max()) if len(known) else (0.0, 0.0)
    return (np.asarray(values, dtype=float) - low) / (high - low) if high > low else np.full(len(values), 0.5)


def polylines(axes: list[Axis], rows) -> tuple[list, list]:
    """The x and y of one line per row across the axes, the lines separated by gaps (one trace draws them all)."""
    scaled = np.column_stack([on_axis(axis, axis.values) for axis in axes])
    x, y = [], []
    for row in rows:
        x += [*range(len(axes)), None]
        y += [None if not np.isfinite(v) else float(v) for v in scaled[row]] + [None]
    return x, y


def parallel_coordinates(
    params: pd.DataFrame,
    score,
    score_label: str = "test acc",
    highlight: int | None = None,
    highlight_color: str = BEST_COLOR,
    highlight_name: str = "best trial",
) -> go.Figure:
    """Params (one axis each) against a score, one line per run in blues, darker for a higher score; the line at
    position `highlight` (the best trial, a baseline) thick in `highlight_color`, on top.

    Drawn as plain SVG lines rather than Plotly's Parcoords: Parcoords draws with WebGL, which costs a page about a
    second in a browser without a GPU (benchmarks/page_times.py), labels each axis's range again beside its ticks,
    and draws a highlighted line as thin as the others. Hovering a line's end on the score axis names the run's
    values."""
    axes = parallel_axes(params, score, score_label)
    score = axes[-1].values
    levels = on_axis(axes[-1], score)
    bins = np.minimum((np.nan_to_num(levels, nan=0.0) * 6).astype(int), 5)
    shades = px.colors.sample_colorscale("Blues", [0.35 + 0.13 * b for b in range(6)])
    fig = go.Figure()
    for shade in range(6):
        rows = [i for i in range(len(score)) if bins[i] == shade and i != highlight]
        if rows:
            x, y = polylines(axes, rows)
            fig.add_scatter(
                x=x, y=y, mode="lines", line={"color": shades[shade], "width": 1.5}, hoverinfo="skip", showlegend=False
            )
    if highlight is not None:
        x, y = polylines(axes, [highlight])
        fig.add_scatter(
            x=x, y=y, mode="lines", line={"color": highlight_color, "width": 4}, name=highlight_name, hoverinfo="skip"
        )
    hover = [
        "<br>".join(f"{html.escape(str(name))}: {html.escape(str(value))}" for name, value in row.items())
        + f"<br><b>{html.escape(score_label)}: {formats.percent(value)}</b>"
        for (_, row), value in zip(params.iterrows(), score, strict=True)
    ]
    fig.add_scatter(
        x=[len(axes) - 1] * len(score),
        y=levels,
        mode="markers",
        marker={
            "color": score,
            "colorscale": [[0, shades[0]], [1, shades[-1]]],
            "size": 7,
            "showscale": True,
            "colorbar": {"tickformat": formats.AXIS_PERCENT, "title": {"text": html.escape(score_label)}},
        },
        hovertext=hover,
        hoverinfo="text",
        showlegend=False,
    )
    for i, axis in enumerate(axes):
        fig.add_shape(type="line", x0=i, x1=i, y0=0, y1=1, line={"color": "#888", "width": 1}, layer="below")
        fig.add_annotation(x=i, y=1.08, text=f"<b>{html.escape(axis.title)}</b>", showarrow=False)
        for position, text in zip(on_axis(axis, axis.tickvals), axis.ticktext, strict=True):
            fig.add_annotation(
                x=i, y=position, text=html.escape(text), showarrow=False, xanchor="left", xshift=4, font={"size": 11}
            )
    fig.update_xaxes(visible=False, range=[-0.2, len(axes) - 0.4])
    fig.update_yaxes(visible=False, range=[-0.05, 1.14])
    fig.update_layout(height=420, margin={"l": 20, "r": 20, "t": 30, "b": 20}, legend={"orientation": "h", "y": -0.05})
    return fig


def param_importances(importances: dict[str, float]) -> go.Figure:
    """Optuna's importance of each searched parameter for the objective, largest on top."""
    ordered = sorted(importances.items(), key=lambda kv: kv[1])
    fig = go.Figure(
        go.Bar(
            x=[v for _, v in ordered],
            y=escaped(k for k, _ in ordered),
            orientation="h",
            text=[f"{v:.0%}" for _, v in ordered],
            textposition="outside",
        )
    )
    fig.update_layout(
        xaxis_title="importance (fANOVA, share of objective variance)",
        xaxis_tickformat=".0%",
        xaxis_range=[0, 1.1],
        height=80 + 40 * len(ordered),
        margin={"t": 20},
    )
    return fig


def data_size_curve(points: pd.DataFrame, fit: PowerLaw | None = None) -> go.Figure:
    """Train and validation error against training-set size (columns train_size, train_error, val_error), and the
    validation error's fitted power law up to twice the largest size, in its 95% band where it has one."""
    points = points.sort_values("train_size")
    fig = go.Figure()
    if fit is not None:
        grid = np.geomspace(min(fit.sizes), 2 * max(fit.sizes), 60)
        bounds = [fit.interval_at(n) for n in grid]
        if all(bounds):
            fig.add_trace(
                go.Scatter(
                    x=list(grid) + list(grid[::-1]),
                    y=[high for _, high in bounds] + [low for low, _ in bounds[::-1]],
                    fill="toself",
                    fillcolor="rgba(239,85,59,0.12)",
                    line={"width": 0},
                    hoverinfo="skip",
                    name="fit's 95% band",
                )
            )
        fig.add_trace(
            go.Scatter(
                x=grid,
                y=[fit.error_at(n) for n in grid],
                mode="lines",
                name="fitted a·n^-b + c",
                line={"dash": "dot", "color": "rgb(239,85,59)"},
                hovertemplate=f"%{{x:,.0f}} images: %{{y:{formats.HOVER_PERCENT}}}<extra>fit</extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=points["train_size"],
            y=points["train_error"],
            name="train error",
            mode="lines+markers",
            line={"dash": TRAIN_DASH},
        )
    )
    fig.add_trace(
        go.Scatter(x=points["train_size"], y=points["val_error"], name="validation error", mode="lines+markers")
    )
    sizes = list(points["train_size"]) + ([2 * max(fit.sizes)] if fit is not None else [])
    fig.update_layout(
        xaxis={
            "type": "log",
            "title": "training images",
            "tickmode": "array",
            "tickvals": sizes,
            "ticktext": [formats.count(n) for n in sizes],
        },
        yaxis_title="error",
        yaxis_tickformat=formats.AXIS_PERCENT,
        height=360,
        margin={"t": 30},
    )
    return fig


def translucent(color: str, alpha: float) -> str:
    """A Plotly colour ('#rrggbb' or 'rgb(r, g, b)') with the given opacity."""
    if color.startswith("#"):
        r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    else:
        r, g, b = (int(float(v)) for v in color[color.index("(") + 1 : color.index(")")].split(",")[:3])
    return f"rgba({r},{g},{b},{alpha})"


def banded_curves(
    band_frame: pd.DataFrame,
    members: pd.DataFrame | None = None,
    member_group: dict[str, str] | None = None,
    panels: tuple[Panel, ...] = LEARNING_CURVES,
) -> go.Figure:
    """The panels' curves per epoch for every group of runs: the mean over its runs as a line (train dashed,
    validation solid) inside its shaded 95% interval, N in the legend; `members` (long points, with
    member_group mapping each run to its group) draws each run faintly behind."""
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[panel.title for panel in panels])
    colors = run_colors(list(dict.fromkeys(band_frame["group"])))
    for group, color in colors.items():
        rows = band_frame[band_frame["group"] == group]
        label = html.escape(f"{group} (N={int(rows['n'].max())})")
        shown_in_legend = False
        for col, panel in enumerate(panels, start=1):
            for line in panel.lines:
                name, dash = line.metric, line.dash
                band = rows[rows["metric"] == name].sort_values("step")
                if band.empty:
                    continue
                if members is not None:
                    for run_id in [r for r, g in (member_group or {}).items() if g == group]:
                        own = members[(members["run_id"] == run_id) & (members["metric"] == name)]
                        fig.add_trace(
                            go.Scatter(
                                x=own["step"],
                                y=own["value"],
                                mode="lines",
                                showlegend=False,
                                legendgroup=group,
                                hoverinfo="skip",
                                line={"color": translucent(color, 0.35), "width": 1, "dash": dash},
                            ),
                            row=1,
                            col=col,
                        )
                banded = band.dropna(subset=["low", "high"])
                if not banded.empty:
                    fig.add_trace(
                        go.Scatter(
                            x=list(banded["step"]) + list(banded["step"])[::-1],
                            y=list(banded["high"]) + list(banded["low"])[::-1],
                            fill="toself",
                            mode="lines",
                            fillcolor=translucent(color, 0.18),
                            line={"width": 0},
                            hoverinfo="skip",
                            showlegend=False,
                            legendgroup=group,
                        ),
                        row=1,
                        col=col,
                    )
                shown = value_format(panel)
                fig.add_trace(
                    go.Scatter(
                        x=band["step"],
                        y=band["mean"],
                        mode="lines+markers",
                        name=label,
                        legendgroup=group,
                        showlegend=not shown_in_legend,
                        line={"color": color, "dash": dash},
                        marker={"size": 4},
                        customdata=np.stack([band["low"], band["high"], band["n"]], axis=1),
                        hovertemplate=f"{label}<br>{name}: mean %{{y:{shown}}} (95% CI %{{customdata[0]:{shown}}} to "
                        f"%{{customdata[1]:{shown}}}, N=%{{customdata[2]}}) at epoch %{{x}}<extra></extra>",
                    ),
                    row=1,
                    col=col,
                )
                shown_in_legend = True
    fig.update_xaxes(**epoch_axis(band_frame["step"].max() if len(band_frame) else 1))
    panels_layout(fig, panels)
    fig.update_layout(
        height=420,
        margin={"t": 40},
        hovermode="x unified",
        legend={"font": {"size": 10}, "title": {"text": legend_title(panels, "mean, 95% band")}},
    )
    return fig


def step_losses(
    raw: pd.DataFrame, smooth: pd.DataFrame, labels: dict[str, str], colors: dict[str, str] | None = None
) -> go.Figure:
    """Training loss per optimisation step for every run: the smoothed curve bold, the raw one faint behind; one
    colour per run (run_colors of the labels' order unless given)."""
    fig = go.Figure()
    colors = colors or run_colors(list(labels))
    for run_id, label in labels.items():
        label = html.escape(label)
        for frame, width, alpha, shown in ((raw, 1, 0.3, False), (smooth, 2, 1.0, True)):
            points = frame[frame["run_id"] == run_id]
            fig.add_trace(
                go.Scatter(
                    x=points["step"],
                    y=points["value"],
                    mode="lines",
                    name=label,
                    legendgroup=run_id,
                    showlegend=shown,
                    hoverinfo="skip" if not shown else None,
                    line={"color": translucent(colors[run_id], alpha), "width": width},
                    hovertemplate=f"{label}<br>loss %{{y:.4f}} at step %{{x}}<extra></extra>",
                )
            )
    fig.update_layout(
        xaxis_title="optimisation step",
        yaxis={"title": "training loss", **log_axis(raw["value"])},
        height=360,
        margin={"t": 30},
        legend={"font": {"size": 10}},
    )
    return fig


def calibration_curves(history: pd.DataFrame, rising_from: int | None) -> go.Figure:
    """Validation loss (left axis) and expected calibration error (right axis) per epoch, with the epoch from which
    the loss rises while accuracy holds marked. `history` is wide: index epoch, columns val_loss and val_ece."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(
        go.Scatter(
            x=history.index, y=history[Metric.VAL_LOSS], name="val loss", mode="lines+markers", hovertemplate="%{y:.4f}"
        ),
        secondary_y=False,
    )
    if Metric.VAL_ECE in history:
        fig.add_trace(
            go.Scatter(
                x=history.index,
                y=history[Metric.VAL_ECE],
                name="val ECE",
                mode="lines+markers",
                line={"dash": TRAIN_DASH, "color": "#ff7f0e"},
                hovertemplate=f"%{{y:{formats.HOVER_PERCENT}}}",
            ),
            secondary_y=True,
        )
    if rising_from is not None:
        fig.add_vline(
            x=rising_from,
            line_dash="dot",
            line_color="#d62728",
            annotation_text=f"loss rises after epoch {rising_from}",
        )
    fig.update_xaxes(**epoch_axis(history.index.max()))
    fig.update_yaxes(title_text="val loss (cross-entropy)", secondary_y=False, rangemode="tozero")
    fig.update_yaxes(title_text="val ECE", tickformat=formats.AXIS_PERCENT, secondary_y=True, rangemode="tozero")
    fig.update_layout(height=360, margin={"t": 30}, hovermode="x unified", legend={"orientation": "h", "y": 1.12})
    return fig


def reliability_diagram(table: dict, epoch: int) -> go.Figure:
    """One epoch's reliability table ({edges, counts, accuracy, confidence}) as bars of accuracy per confidence bin,
    each labelled with its image count (a bin of 3 images says little), a marker at each bin's mean confidence and
    accuracy, and the diagonal of perfect calibration: a marker below it is an overconfident bin."""
    edges = np.asarray(table["edges"], dtype=float)
    accuracy, confidence = (np.asarray(table[k], dtype=float) for k in ("accuracy", "confidence"))
    counts = np.asarray(table["counts"])
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=(edges[:-1] + edges[1:]) / 2,
            y=accuracy,
            width=np.diff(edges) * 0.95,
            name="accuracy",
            customdata=np.c_[counts, confidence],
            text=[f"{n:,}" if n else "" for n in counts],
            textposition="outside",
            textfont={"size": 10},
            hovertemplate=f"mean confidence %{{customdata[1]:{formats.HOVER_PERCENT}}}: accuracy "
            f"%{{y:{formats.HOVER_PERCENT}}} of %{{customdata[0]:,}} images<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=confidence,
            y=accuracy,
            mode="markers",
            name="at the bin's mean confidence",
            marker={"color": "#d62728", "size": 7},
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated", line={"dash": "dot", "color": "gray"})
    )
    fig.update_layout(
        xaxis={
            "title": {"text": "confidence (top class probability)"},
            "range": [0, 1],
            "tickformat": formats.AXIS_PERCENT,
        },
        yaxis={  # up to 112%: the counts of full bars sit inside the plot, under the title, not over it
            "title": {"text": "accuracy"},
            "range": [0, 1.12],
            "tickvals": [0, 0.2, 0.4, 0.6, 0.8, 1],
            "tickformat": formats.AXIS_PERCENT,
        },
        title={"text": f"Reliability, validation set after epoch {epoch}", "font": {"size": 14}},
        height=360,
        margin={"t": 60, "r": 40},
        legend={"orientation": "h", "y": -0.25},
    )
    return fig


def heat_limit(frame: pd.DataFrame, values: list[str]) -> float:
    """The largest size among `values` (fractions): heatmaps drawn side by side share it as their colour scale's
    end, so the same red means the same number of points in each."""
    sizes = np.abs(frame[values].to_numpy(dtype=float))
    return float(np.nanmax(sizes)) if np.isfinite(sizes).any() and np.nanmax(sizes) > 0 else 1.0


def class_epoch_heatmap(frame: pd.DataFrame, value: str, title: str, diverging: bool, limit: float) -> go.Figure:
    """One value per class and epoch (long frame with columns epoch, name and `value`, fractions) as a heatmap,
    classes down, epochs across; diverging is a red-blue scale from -limit to +limit centred on zero (for a gap),
    else white to red from 0 to limit."""
    grid = frame.pivot_table(index="name", columns="epoch", values=value, sort=False)
    scale = {"colorscale": "RdBu_r", "zmin": -limit} if diverging else {"colorscale": "Reds", "zmin": 0.0}
    scale["zmax"] = limit
    fig = go.Figure(
        go.Heatmap(
            z=grid.to_numpy() * 100,
            x=grid.columns,
            y=escaped(grid.index),
            colorbar={"title": {"text": "pp" if diverging else "%"}},
            hovertemplate="class %{y}, epoch %{x}: %{z:.1f}" + (" pp" if diverging else "%") + "<extra></extra>",
            **{k: v * 100 if k.startswith("z") else v for k, v in scale.items()},
        )
    )
    fig.update_layout(
        title={"text": title, "font": {"size": 14}},
        xaxis=epoch_axis(grid.columns.max()),
        yaxis={"type": "category", "autorange": "reversed"},
        height=360,
        margin={"t": 40},
    )
    return fig


def capacity_curve(points: pd.DataFrame, sweet_spot: int) -> go.Figure:
    """Train and validation error against parameter count (columns params_total, width, train_error, val_error;
    rows in order of parameters, log x), the lowest validation error (row position `sweet_spot`) marked: left of it
    the model underfits, right of it the extra capacity buys nothing or overfits."""
    hover = "width %{customdata:g}, %{x:,} params: %{y:" + formats.HOVER_PERCENT + "}"
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=points["params_total"],
            y=points["train_error"],
            name="train error",
            mode="lines+markers",
            line={"dash": TRAIN_DASH},
            customdata=points["width"],
            hovertemplate=hover,
        )
    )
    fig.add_trace(
        go.Scatter(
            x=points["params_total"],
            y=points["val_error"],
            name="validation error",
            mode="lines+markers",
            customdata=points["width"],
            hovertemplate=hover,
        )
    )
    best = points.iloc[sweet_spot]
    fig.add_trace(
        go.Scatter(
            x=[best["params_total"]],
            y=[best["val_error"]],
            mode="markers",
            name="sweet spot",
            marker={"symbol": "star", "size": 16, "color": BEST_COLOR},
            hoverinfo="skip",
        )
    )
    fig.update_layout(
        xaxis={
            "type": "log",
            "title": "parameters",
            "tickmode": "array",
            "tickvals": list(points["params_total"]),
            "ticktext": [
                f"{formats.count(n)}<br>×{w:g}" for n, w in zip(points["params_total"], points["width"], strict=True)
            ],
        },
        yaxis_title="error",
        yaxis_tickformat=formats.AXIS_PERCENT,
        yaxis_rangemode="tozero",
        height=380,
        margin={"t": 30},
    )
    return fig

"""One number format for every page: accuracies and rates as percentages with two decimals, differences in
percentage points (pp), counts with thousands separators, durations in s, min or h.

Text gets the functions below; tables get their column configs here and are drawn from `shown(table, config)`.
Streamlit's own "percent" column format drops trailing zeros (83%, 79.8% and 82.5% in one column) and a printf
format cannot scale a fraction, so percentage columns are drawn from a copy scaled to 0-100.
"""

import math

import pandas as pd
import streamlit as st  # column configs only: nothing here draws

from core import stats
from core.schema import Tag

DECIMALS = 2
PERCENT_FORMAT = f"%.{DECIMALS}f%%"
POINTS_FORMAT = f"%+.{DECIMALS}f pp"  # a signed difference
SPREAD_FORMAT = f"%.{DECIMALS}f pp"  # a standard deviation


def missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def percent(fraction) -> str:
    """0.8688 -> '86.88%'; empty for a missing value."""
    return "" if missing(fraction) else f"{fraction * 100:.{DECIMALS}f}%"


def points(difference) -> str:
    """A difference of two fractions in percentage points: 0.0031 -> '+0.31 pp'."""
    return "" if missing(difference) else stats.points_text(difference)


def image_caption(index: int, true: str, predicted: str, confidence: float | None = None) -> str:
    """One image of a gallery, captioned the same on every page: its index in its file, its true class, what the
    model took it for and, when known, how sure it was: '#18 3→5 (99.99%)'."""
    return f"#{index} {true}→{predicted}" + (f" ({percent(confidence)})" if confidence is not None else "")


def count(number) -> str:
    """1199882 -> '1,199,882'."""
    return "" if missing(number) else f"{number:,.0f}"


def duration(seconds) -> str:
    """'4.2 s' under ten seconds, '42 s' under two minutes, '3.5 min' under two hours, else '2.1 h'."""
    if missing(seconds):
        return ""
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def percent_column(label: str, help: str | None = None, width=None) -> dict:
    return st.column_config.NumberColumn(label, format=PERCENT_FORMAT, help=help, width=width)


def points_column(label: str, help: str | None = None, width=None) -> dict:
    return st.column_config.NumberColumn(label, format=POINTS_FORMAT, help=help, width=width)


def spread_column(label: str, help: str | None = None, width=None) -> dict:
    return st.column_config.NumberColumn(label, format=SPREAD_FORMAT, help=help, width=width)


def count_column(label: str, help: str | None = None) -> dict:
    return st.column_config.NumberColumn(label, format="%,d", help=help)


def seconds_column(label: str, help: str | None = None) -> dict:
    return st.column_config.NumberColumn(label, format="%.1f s", help=help)  # a sweep trial can last 0.5 s


def shown(table: pd.DataFrame, config: dict) -> pd.DataFrame:
    """The table as drawn with `config`: its percentage and percentage-point columns scaled from fractions."""
    scaled = [
        name
        for name, column in config.items()
        if name in table.columns
        and isinstance(column, dict)
        and column.get("type_config", {}).get("format") in (PERCENT_FORMAT, POINTS_FORMAT, SPREAD_FORMAT)
    ]
    return table.assign(**{name: table[name] * 100 for name in scaled})


def tag_value(name: str, value: str) -> str:
    """A tag's value as a person reads it: the heartbeat, logged in ms since the epoch, as a UTC time."""
    if name == Tag.HEARTBEAT:
        try:
            return pd.to_datetime(int(value), unit="ms", utc=True).strftime("%Y-%m-%d %H:%M:%S UTC")
        except (ValueError, OverflowError, pd.errors.OutOfBoundsDatetime):  # another tool's tag of that name
            return value
    return value

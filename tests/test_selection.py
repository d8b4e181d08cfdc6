"""The Runs tables' ticks as the selection (dashboard.state.ticks_applied): pure, so every case is checked."""

from dashboard.state import ticks_applied

ROWS = [["a", "b", "c"], ["d", "e"], "f"]  # two config groups and a run alone


def test_a_tick_adds_the_rows_runs_and_an_untick_removes_them():
    assert ticks_applied(["f"], ROWS, before=[2], after=[2, 1]) == ["f", "d", "e"]
    assert ticks_applied(["f", "d", "e"], ROWS, before=[1, 2], after=[2]) == ["f"]


def test_runs_the_table_does_not_show_stay_selected():
    assert ticks_applied(["hidden", "f"], ROWS, before=[2], after=[]) == ["hidden"]


def test_ticking_a_group_keeps_the_runs_of_a_partly_selected_group():
    """A group shows unticked while only some of its runs are selected: ticking another row leaves them be."""
    assert ticks_applied(["a"], ROWS, before=[], after=[1]) == ["a", "d", "e"]
    assert ticks_applied(["a", "d", "e"], ROWS, before=[1], after=[]) == ["a"]


def test_a_row_that_is_no_longer_there_changes_nothing():
    assert ticks_applied(["f"], ROWS, before=[2], after=[2, 7]) == ["f"]

"""Capacity: conv-conv's width multiplier, a suite over it, and the inspector's capacity curve drawn from the runs."""

import pytest
from mlflow.tracking import MlflowClient

from core.schema import Metric
from experiments import cli as command_line
from experiments.models import ConvConv, conv_conv_sequential
from tests.helpers import (
    CHART,
    chart_series,
    charts,
    cli_in_process,
    needs_chromium,
    on_tab,
    shoot,
    sqlite_uri,
    start_server,
    texts,
    wait_idle,
    ys,
)


@pytest.mark.parametrize("width, params", [(0.125, 18_954), (1, 1_199_882), (4, 19_176_458)])
def test_the_width_multiplies_filters_and_hidden_units_in_both_styles(width, params):
    for model in (conv_conv_sequential(width), ConvConv(width)):
        assert sum(p.numel() for p in model.parameters()) == params


# The tests share the module fixture `widths`, which trains: one worker builds it once and runs them all.
pytestmark = pytest.mark.xdist_group("capacity-module")


@pytest.fixture(scope="module")
def widths(tmp_path_factory, mnist_dir):
    """A store of its own holding a three-width suite, run through the command line (in this process)."""
    folder = tmp_path_factory.mktemp("widths")
    spec = folder / "widths.toml"
    spec.write_text(
        'method = "grid"\nfixed = { model = "conv-conv", train_size = 600, test_size = 1000, epochs = 2 }\n'
        'space = { width = [0.125, 0.5, 1] }\nrun_name = "cc-x{width}"\n'
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", sqlite_uri(folder))

        assert command_line.dispatch(["suite", str(spec)]) in (0, None)
        client = MlflowClient(sqlite_uri(folder))
        experiment = client.get_experiment_by_name("cnn-experiments").experiment_id
        yield client, {r.info.run_name: r for r in client.search_runs([experiment])}


def test_a_width_suite_draws_train_and_validation_error_against_parameters_with_the_sweet_spot(widths):
    _, runs = widths
    assert sorted(runs) == ["cc-x0.125", "cc-x0.5", "cc-x1"]
    params = [runs[name].data.metrics[Metric.PARAMS_TOTAL] for name in ("cc-x0.125", "cc-x0.5", "cc-x1")]
    assert params == [18_954, 300_426, 1_199_882]

    at = on_tab("overfitting", [], "More data and capacity")
    assert not at.exception and "3 widths: error against parameter count" in texts(at)
    capacity = next(chart_series(c) for c in charts(at) if '"sweet spot"' in c.proto.spec)
    train, val, spot = capacity
    assert [point[0] for point in train["data"]] == params
    expected_val = [1 - runs[name].data.metrics[Metric.VAL_ACC] for name in ("cc-x0.125", "cc-x0.5", "cc-x1")]
    assert ys(val) == pytest.approx([100 * e for e in expected_val], abs=0.006)  # in percent
    assert ys(spot)[0] == pytest.approx(100 * min(expected_val), abs=0.006)
    assert ys(train)[0] > ys(train)[-1]  # the widest net fits its training images better than the narrowest


@needs_chromium
def test_the_capacity_curve_in_chromium(widths, page):
    client, _ = widths
    with start_server(client.tracking_uri) as url:
        page.set_viewport_size({"width": 1500, "height": 2600})  # Streamlit scrolls inside its own pane
        page.goto(f"{url}/overfitting?section=More+data+and+capacity")
        page.get_by_text("3 widths: error against parameter count").wait_for(timeout=60_000)
        page.get_by_text("Lowest validation error").wait_for(timeout=30_000)
        wait_idle(page)
        assert page.locator('[data-testid="stException"]').count() == 0
        page.locator(CHART).last.scroll_into_view_if_needed()
        page.wait_for_timeout(1000)
        shoot(page, "inspector-capacity")


def test_a_width_on_a_model_of_fixed_width_is_one_line(store, capsys):
    refused = cli_in_process(capsys, "train", "--model", "lenet5", "--width", "2")
    assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1].endswith(
        "error: --width: lenet5 in pytorch has a fixed width (scalable: conv-conv in pytorch)"
    )
    assert not store.search_experiments(filter_string="name = 'cnn-experiments'")  # nothing logged

"""The pure figure builders and DataFrame computations, without Streamlit."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from core import diagnosis, stats
from core.data_scaling import fit_power_law, power_law
from core.diagnosis import Yardstick, verdict
from core.schema import Metric
from dashboard import analysis, figures, state


def long_metrics(run_id, train_acc, val_acc, train_loss=None, val_loss=None):
    rows = []
    for name, values in (
        (Metric.TRAIN_ACC, train_acc),
        (Metric.VAL_ACC, val_acc),
        (Metric.TRAIN_LOSS, train_loss or []),
        (Metric.VAL_LOSS, val_loss or []),
    ):
        rows += [(run_id, str(name), step, v) for step, v in enumerate(values, start=1)]
    return pd.DataFrame(rows, columns=["run_id", "metric", "step", "value"])


def series(fig, name=None) -> list[dict]:
    """The figure's series (of that legend name)."""
    return [s for s in fig.option["series"] if name is None or s.get("name") == name]


def ys(line) -> list:
    return [point[1] for point in line["data"]]


def test_learning_curves_draw_every_point_train_dashed_val_solid_one_colour_per_run():
    metrics = pd.concat(
        [
            long_metrics("a", [0.8, 0.9, 0.95], [0.78, 0.85, 0.84], [0.6, 0.3, 0.2], [0.7, 0.4, 0.45]),
            long_metrics("b", [0.5] * 40, [0.4] * 40),
        ]
    )
    fig = figures.learning_curves(metrics, {"a": "run A", "b": "run B"})
    by_id = {s["id"]: s for s in series(fig)}
    assert len(by_id[f"b/{Metric.VAL_ACC}"]["data"]) == 40  # no downsampling
    train, val = by_id[f"a/{Metric.TRAIN_ACC}"], by_id[f"a/{Metric.VAL_ACC}"]
    assert train["lineStyle"]["type"] == "dashed" and val["lineStyle"]["type"] == "solid"
    assert (
        train["lineStyle"]["color"] == val["lineStyle"]["color"] != by_id[f"b/{Metric.VAL_ACC}"]["lineStyle"]["color"]
    )
    assert ys(val) == [78.0, 85.0, 84.0]  # accuracies drawn in percent
    assert len(series(fig)) == 6  # run A: loss and accuracy, train and val; B: accuracy
    assert {s["name"] for s in series(fig)} == {"run A", "run B"}  # one legend entry per run, for all its lines
    assert val["tooltip"]["valueFormatter"] == "val acc %.2f%%"  # which line of the run, in percent


def test_every_choice_of_curves_draws_its_metrics_in_its_panels_with_percent_where_it_is_a_rate():
    per_epoch = {
        Metric.BIAS: [0.2, 0.1],
        Metric.VARIANCE: [0.01, 0.03],
        Metric.VAL_ECE: [0.05, 0.04],
        Metric.VAL_LOSS: [0.5, 0.4],
        Metric.EPOCH_SECONDS: [3.0, 2.5],
        Metric.SAMPLES_PER_S: [900, 1100],
    }
    metrics = pd.DataFrame(
        [("a", str(name), step, v) for name, values in per_epoch.items() for step, v in enumerate(values, start=1)],
        columns=["run_id", "metric", "step", "value"],
    )
    assert set(figures.curve_metrics()) >= {str(m) for m in per_epoch}
    for choice, panels in figures.CURVES.items():
        fig = figures.learning_curves(metrics, {"a": "run A"}, panels=panels, log_loss=True)
        for col, panel in enumerate(panels):
            axis = fig.option["yAxis"][col]
            lines = [s for s in series(fig) if s["yAxisIndex"] == col]
            expected = [
                [v * 100 if panel.percent else v for v in per_epoch[line.metric]]
                for line in panel.lines
                if line.metric in per_epoch
            ]
            assert [pytest.approx(ys(s)) for s in lines] == expected, (choice, panel.title)
            unit = figures.POINTS_LABEL if panel.points else figures.PERCENT_LABEL if panel.percent else None
            assert panel.loss or axis.get("axisLabel") == unit, (choice, panel.title)  # variance in pp
            assert (axis["type"] == "log") == panel.loss, (choice, panel.title)
    bias = figures.learning_curves(metrics, {"a": "run A"}, panels=figures.CURVES["bias and variance"])
    assert "dashed" not in bias.option["title"][-1]["subtext"]  # one line per panel: no line styles to explain
    speed = figures.learning_curves(metrics, {"a": "run A"}, panels=figures.CURVES["speed"])
    assert [s["tooltip"]["valueFormatter"] for s in series(speed)] == [
        "epoch seconds %.2f s",
        "samples per s %,.0f images/s",  # 12,350 images/s, not 1.235e+4
    ]
    band_frame = pd.DataFrame(
        {
            "group": "g",
            "metric": str(Metric.VARIANCE),
            "step": [1, 2],
            "mean": [0.01, 0.03],
            "low": [0.0, 0.02],
            "high": [0.02, 0.04],
            "n": 3,
        }
    )
    banded = figures.banded_curves(band_frame, panels=figures.CURVES["bias and variance"])
    means = [s for s in series(banded) if s.get("id")]
    assert [(s["yAxisIndex"], ys(s)) for s in means] == [(1, [1.0, 3.0])]  # the variance panel, second
    low, width = [s for s in series(banded) if s.get("stack")]
    assert ys(low) == [0.0, 2.0] and ys(width) == pytest.approx([2.0, 2.0]) and "areaStyle" in width  # the band


@pytest.mark.parametrize("epochs", [2, 3, 30, 100])
def test_epoch_axes_have_whole_number_ticks_only(epochs):
    history = pd.DataFrame(
        {
            Metric.TRAIN_ACC: np.linspace(0.5, 0.9, epochs),
            Metric.BIAS: 0.1,
            Metric.VARIANCE: 0.1,
            Metric.VAL_ACC: np.linspace(0.4, 0.8, epochs),
        },
        index=range(1, epochs + 1),
    )
    metrics = long_metrics("a", list(history[Metric.TRAIN_ACC]), list(history[Metric.VAL_ACC]))
    drawn = figures.learning_curves(metrics, {"a": "A"}), figures.error_gap(history), figures.bias_variance(history)
    for fig in drawn:
        axes = fig.option["xAxis"] if isinstance(fig.option["xAxis"], list) else [fig.option["xAxis"]]
        for axis in axes:
            assert axis["minInterval"] == 1 and axis["max"] == epochs  # none past the last


def test_per_class_accuracy_labels_every_class_on_an_axis_from_zero():
    per_class = pd.DataFrame({"name": [str(i) for i in range(10)], "accuracy": np.linspace(0.9, 0.99, 10)})
    fig = figures.per_class_accuracy(per_class)
    assert fig.option["xAxis"]["type"] == "category" and fig.option["xAxis"]["data"] == [str(i) for i in range(10)]
    assert fig.option["yAxis"]["min"] == 0 and series(fig)[0]["data"][-1] == {
        "value": 99.0,
        "label": {"formatter": "99.00%"},
    }


def test_fifty_runs_get_distinct_colours():
    colours = figures.run_colors([f"r{i}" for i in range(50)])
    assert len(set(colours.values())) == 50


def test_confusion_matrix_normalises_rows_and_carries_cells_for_clicks():
    matrix = np.array([[8, 2], [0, 0]])
    fig = figures.confusion_matrix(matrix, ["cat", "dog"], normalize=True)
    heatmap = series(fig)[0]
    cells = heatmap["data"]
    assert [c["value"] for c in cells] == [[0, 0, 80.0], [1, 0, 20.0], [0, 1, 0.0], [1, 1, 0.0]]  # x pred, y true
    assert [c["label"]["formatter"] for c in cells] == ["80%", "20%", "0%", "0%"]  # an empty row stays 0, not NaN
    assert "true cat / predicted dog: 2 images" in cells[1]["tooltip"]["formatter"]
    assert heatmap["selectedMode"] == "single"  # a click selects a cell: item k is true k // 2, predicted k % 2
    assert fig.option["xAxis"]["data"] == ["cat", "dog"] and fig.option["yAxis"]["inverse"]


def test_a_click_on_a_class_grid_names_its_cell():
    fig = figures.confusion_matrix(np.arange(9).reshape(3, 3), ["a", "b", "c"])
    cell = series(fig)[0]["data"][5]
    assert cell["value"][:2] == [2, 1] and cell["label"]["formatter"] == "5"  # x predicted c, y true b
    event = {"selection": {"selected": [{"series_index": 0, "data_indices": [5]}], "areas": []}}
    assert state.selected_cell(event, 3) == (1, 2)  # true b, predicted c: the cell clicked
    assert state.selected_cell({}, 3) is None and state.selected_cell({"selection": {"selected": []}}, 3) is None
    stale = {"selection": {"selected": [{"series_index": 0, "data_indices": [9]}]}}  # from a larger grid
    assert state.selected_cell(stale, 3) is None


def test_confusion_difference_is_b_minus_a_row_normalised():
    fig = figures.confusion_difference(np.array([[9, 1], [5, 5]]), np.array([[10, 0], [5, 5]]), ["x", "y"], ("A", "B"))
    cells = series(fig)[0]["data"]
    assert [c["value"][2] for c in cells] == pytest.approx([10, -10, 0, 0])  # points of the row, row by row
    assert "(-1 image) against A" in cells[1]["tooltip"]["formatter"]  # images moved
    assert "red: B puts more of the true class here, blue: fewer" in fig.option["title"]["subtext"]
    assert fig.option["visualMap"]["min"] == -fig.option["visualMap"]["max"]  # centred on no change
    assert series(fig)[0]["selectedMode"] == "single"
    two_runs = figures.confusion_difference(np.eye(2), np.eye(2), ["x", "y"], ("A", "B"), selectable=False)
    assert "selectedMode" not in series(two_runs)[0]  # where a click opens nothing, it selects nothing


def test_error_gap_shades_between_train_and_val_error_and_marks_best_epoch():
    history = pd.DataFrame({Metric.TRAIN_ACC: [0.9, 0.99], Metric.VAL_ACC: [0.88, 0.9]}, index=[1, 2])
    fig = figures.error_gap(history, best_epoch=2)
    (validation,) = series(fig, "validation error")
    assert ys(validation) == pytest.approx([12.0, 10.0])
    low, width = series(fig, "gap")
    assert ys(low) == pytest.approx([10.0, 1.0]) and ys(width) == pytest.approx([2.0, 9.0])  # from train to val
    assert validation["markLine"]["data"] == [{"xAxis": 2}]


def test_parallel_axes_code_text_params_as_categories_and_tick_seeds_whole():
    params = pd.DataFrame({"model": ["softmax-regression", "tiny", "lenet5"], "seed": ["0", "1", "2"]})
    model, seed, score = figures.parallel_axes(params, np.array([0.8, 0.9, 0.95]), "test acc")
    assert model.spec["type"] == "category" and model.spec["data"] == ["softmax-regression", "tiny", "lenet5"]
    assert seed.spec["minInterval"] == 1 and seed.values == [0, 1, 2]
    assert score.values == [80.0, 90.0, 95.0] and score.spec["axisLabel"] == figures.PERCENT_LABEL  # in percent


def test_verdict_finds_best_epoch_loss_after_it_and_diagnosis_of_the_last_epoch():
    history = pd.DataFrame({Metric.TRAIN_ACC: [0.95, 0.99, 1.0], Metric.VAL_ACC: [0.94, 0.97, 0.95]}, index=[1, 2, 3])
    judged = verdict(history, Yardstick(best_error=0.002))
    assert judged.best_epoch == 2 and judged.lost_after_best == pytest.approx(0.02) and judged.epochs_trained == 3
    assert judged.gap == pytest.approx(0.05) and judged.avoidable_bias == pytest.approx(-0.002)
    assert judged.diagnosis == "high variance" and "regularisation" in judged.advice


def test_verdict_takes_the_first_best_epoch_and_ignores_epochs_missing_an_accuracy():
    history = pd.DataFrame({Metric.TRAIN_ACC: [0.5, 0.6, np.nan], Metric.VAL_ACC: [0.4, 0.4, 0.9]}, index=[1, 2, 3])
    judged = verdict(history, Yardstick(best_error=0.0))
    assert (judged.best_epoch, judged.epochs_trained, judged.diagnosis) == (1, 2, "high bias and variance")
    assert verdict(history[[Metric.VAL_ACC]], Yardstick(0.0)) is None


def test_differing_params_keeps_only_columns_that_vary():
    params = pd.DataFrame({"lr": ["0.1", "0.01"], "seed": ["0", "0"]}, index=["a", "b"])
    assert list(analysis.differing_params(params).columns) == ["lr"]


def test_filter_runs_by_model_and_param_text():
    runs = pd.DataFrame(
        {
            "model": ["tiny", "lenet5", "tiny"],
            "dataset": ["mnist"] * 3,
            "status": ["FINISHED"] * 3,
            "suite": ["", "", "quick"],
            "run_name": ["a", "b", "c"],
            "params": [{"lr": "0.1"}, {"lr": "0.1"}, {"lr": "0.01"}],
        }
    )
    assert list(analysis.filter_runs(runs, models=["tiny"], text="LR=0.1")["run_name"]) == ["a"]
    assert list(analysis.filter_runs(runs, suites=["quick"])["run_name"]) == ["c"]


def test_search_combines_comparisons_on_params_and_words_with_and_and_says_why_nothing_matched():
    runs = pd.DataFrame(
        {
            "run_name": ["fast-adam", "slow-adam", "sgd", "foreign"],
            "params": [
                {"lr": "0.02", "optimizer": "adam", "batch_size": "64"},
                {"lr": "0.001", "optimizer": "Adam"},
                {"lr": "0.1", "optimizer": "sgd"},
                {"learning_rate": "0.5"},
            ],
        }
    )

    def names(text):
        return list(analysis.filter_runs(runs, text=text)["run_name"])

    assert analysis.search_terms("lr>0.01  optimizer = adam fast") == [
        ("lr", ">", "0.01"),
        ("optimizer", "=", "adam"),
        "fast",
    ]
    assert names("lr>0.01") == ["fast-adam", "sgd"]  # as numbers: "0.1" > "0.01", "0.001" is not
    assert names("optimizer=adam lr=0.02") == ["fast-adam"] and names("optimizer=ADAM") == ["fast-adam", "slow-adam"]
    assert names("lr<=0.02 optimizer!=sgd") == ["fast-adam", "slow-adam"] and names("batch_size>=64") == ["fast-adam"]
    assert names("adam") == ["fast-adam", "slow-adam"] and names("learning_rate") == ["foreign"]
    assert names("optimizer>adam") == []  # only = and != compare text
    # a comparison without its value is left out, and named, however it is typed (it never matches every run)
    assert names("model=") == names("=") == names("lr>") == names("") and names("sgd lr>") == ["sgd"]
    assert analysis.incomplete_terms("lr>0.1 model=") == ["model="] and analysis.incomplete_terms("sgd =") == ["="]
    assert (
        analysis.search_hint(runs, "momentum=0.9") == "no run has a param 'momentum' (the Run detail page lists a "
        "run's params)."
    )
    assert analysis.search_hint(runs, "lr>1") == (
        'lr>1 matches no run; lr is one of "0.001", "0.02", "0.1", typed as written, e.g. lr=0.001.'
    )
    assert analysis.search_hint(runs, "lr>0.05 optimizer=adam").startswith("each term matches some runs")
    assert analysis.search_hint(runs, "zebra") == "no run's name or params contain 'zebra'."
    assert (
        len(analysis.search_hint(runs, "z" * 3000)) < 100 and len(analysis.search_hint(runs, "lr>" + "9" * 3000)) < 200
    )
    spaced = runs.assign(params=[{"note": "two words"}] * 4)
    assert analysis.search_hint(spaced, "note=x") == 'note=x matches no run; note is one of "two words".'  # no example


def test_a_validation_accuracy_well_above_test_is_explained_and_a_close_one_is_not():
    note = analysis.val_above_test_note(0.73, 0.6035)  # demo-04-lenet5 as the issue measured it
    assert note.startswith("Best validation accuracy reads 12.65 pp above test") and "statistics.md" in note
    assert analysis.val_above_test_note(0.90, 0.89) is None and analysis.val_above_test_note(float("nan"), 0.5) is None


def test_off_diagonal_cells_most_frequent_first():
    cells = analysis.off_diagonal_cells(np.array([[5, 1, 0], [3, 4, 0], [0, 2, 6]]), ["a", "b", "c"])
    assert cells[["true", "predicted", "count"]].values.tolist() == [[1, 0, 3], [2, 1, 2], [0, 1, 1]]


def series_runs(configs: dict, status="FINISHED") -> pd.DataFrame:
    return pd.DataFrame({"run_id": list(configs), "status": status, "config": list(configs.values())})


def test_series_over_groups_runs_that_differ_only_in_the_setting():
    base = {"model": "conv-conv", "epochs": "10", "seed": "0"}
    runs = series_runs(
        {
            "s": {**base, "train_size": "1000", "train_eval_size": "1000"},
            "l": {**base, "train_size": "5000", "train_eval_size": "5000"},  # capped by train_size: still one series
            "other-seed": {**base, "seed": "1", "train_size": "1000", "train_eval_size": "1000"},
            "lonely": {**base, "epochs": "3", "train_size": "2000", "train_eval_size": "2000"},
        }
    )
    assert analysis.series_over(runs, "train_size") == [["s", "l"]]
    assert analysis.series_over(runs.assign(status=["FINISHED", "RUNNING", "FINISHED", "FINISHED"]), "train_size") == []


def test_series_points_take_final_epoch_errors():
    metrics = pd.concat([long_metrics("s", [0.9, 1.0], [0.8, 0.85]), long_metrics("l", [0.95, 0.97], [0.9, 0.95])])
    runs = series_runs({"l": {"train_size": "5000"}, "s": {"train_size": "1000"}})
    points = analysis.series_points(runs, metrics, "train_size")
    np.testing.assert_allclose(points["val_error"], [0.15, 0.05])
    fig = figures.data_size_curve(points)
    (train,) = series(fig, "train error")
    assert [p[0] for p in train["data"]] == [1000, 5000] and fig.option["xAxis"]["type"] == "log"


def test_the_data_size_curve_draws_the_fitted_power_law_to_twice_the_data_in_its_band():
    sizes = np.array([1000, 5000, 20000, 60000])
    points = pd.DataFrame(
        {
            "train_size": sizes,
            "train_error": 0.0,
            "val_error": power_law(sizes, 3.0, 0.6, 0.01) * np.array([1.02, 0.98, 1.02, 0.98]),
        }
    )
    fit = fit_power_law(points["train_size"], points["val_error"])
    fig = figures.data_size_curve(points, fit)
    low, width = series(fig, "fit's 95% band")
    (curve,) = series(fig, "fitted a·n^-b + c")
    assert curve["data"][-1][0] == 120_000
    assert curve["data"][-1][1] == pytest.approx(fit.error_at(120_000) * 100, abs=0.006)
    assert low["data"][-1][1] <= fit.error_at(120_000) * 100 <= low["data"][-1][1] + width["data"][-1][1]
    assert fig.option["xAxis"]["type"] == "log" and fig.option["xAxis"]["axisLabel"]["customValues"][-1] == 120_000


def test_parallel_coordinates_draw_the_highlighted_line_thick_on_top_and_the_rest_by_score():
    params = pd.DataFrame({"lr": [0.1, 0.01, 0.001]})
    fig = figures.parallel_coordinates(params, np.array([0.5, 0.9, 0.7]), "best val acc", highlight=1)
    others, best = series(fig)
    assert best["name"] == "best trial" and best["lineStyle"]["color"] == figures.BEST_COLOR
    assert best["lineStyle"]["width"] > others["lineStyle"]["width"] and best["z"] > others.get("z", 2)
    assert best["data"] == [[0.01, 90.0]] and others["data"] == [[0.1, 50.0], [0.001, 70.0]]
    scale = fig.option["visualMap"]
    assert scale["seriesIndex"] == 0 and scale["dimension"] == 1 and (scale["min"], scale["max"]) == (50.0, 90.0)
    assert fig.option["parallelAxis"][0]["type"] == "log" and fig.option["parallelAxis"][0]["name"] == "lr (log)"
    assert "lr (log): {@[0]}" in others["tooltip"]["formatter"]  # hovering a line names its values


def sweep_trials(rng, n=40) -> pd.DataFrame:
    """Trials whose objective depends on lr only; optimizer is noise-free irrelevant."""
    lrs = rng.choice([0.001, 0.01, 0.1], n)
    optimizers = rng.choice(["sgd", "adam"], n)
    return pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(n)],
            "state": "complete",
            "best_val_acc": 0.9 - np.abs(np.log10(lrs) + 2) * 0.2,
            "params": [{"lr": float(lr), "optimizer": str(o)} for lr, o in zip(lrs, optimizers, strict=True)],
        }
    )


DISTRIBUTIONS = {
    "lr": {"name": "CategoricalDistribution", "attributes": {"choices": [0.001, 0.01, 0.1]}},
    "optimizer": {"name": "CategoricalDistribution", "attributes": {"choices": ["sgd", "adam"]}},
}


def test_param_importances_rank_the_parameter_that_decides_the_objective_first(rng):
    importances = analysis.param_importances(sweep_trials(rng), DISTRIBUTIONS)
    assert set(importances) == {"lr", "optimizer"}
    assert importances["lr"] > 0.9 > importances["optimizer"]
    fig = figures.param_importances(importances)
    assert fig.option["yAxis"]["data"] == ["optimizer", "lr"]  # largest on top (a category axis goes up)


def test_param_importances_need_two_complete_trials_that_differ(rng):
    trials = sweep_trials(rng, n=4)
    assert analysis.param_importances(trials.assign(state="pruned"), DISTRIBUTIONS) == {}
    assert analysis.param_importances(trials.assign(best_val_acc=0.5), DISTRIBUTIONS) == {}


def test_trial_table_spreads_chosen_values_and_finds_the_best_complete_trial():
    trials = pd.DataFrame(
        {
            "run_id": ["a", "b", "c"],
            "state": ["complete", "pruned", "complete"],
            "best_val_acc": [0.8, 0.95, 0.9],
            "params": [{"lr": 1}, {"lr": 2}, {"lr": 3}],
        }
    )
    table = analysis.trial_table(trials)
    assert list(table["lr"]) == [1, 2, 3] and "params" not in table
    assert analysis.best_trial_position(table) == 2  # the pruned trial's higher value does not count


def test_story_runs_are_the_newest_finished_run_of_each_diagnosis():
    runs = pd.DataFrame(
        {
            "run_id": list("abcde"),
            "status": ["FINISHED", "FINISHED", "RUNNING", "FINISHED", "FINISHED"],
            "diagnosis": ["high bias", "high bias", "good fit", "high variance", "inconclusive"],
            "start": pd.to_datetime([1, 2, 3, 4, 5], unit="s"),
        }
    )
    found = analysis.story_runs(runs)
    assert found == {"high bias": "b", "high variance": "d"}  # c is still running
    assert analysis.story_description(found).endswith("underfits, overfits (no run fits well by a firm diagnosis yet)")
    assert "(no run" not in analysis.story_description({**found, "good fit": "e"})


def test_comparability_warnings_name_different_datasets_test_and_validation_sizes_and_tools():
    runs = pd.DataFrame(
        {
            "run_id": list("abc"),
            "dataset": ["mnist", "mnist", "fashion-mnist"],
            "test_size": [400, 1000, 1000],
            "val_size": [600, 600, np.nan],
            "convention": ["this project's runner"] * 2 + ["Keras autolog"],
        }
    )
    assert analysis.comparability_warnings(runs, ["a", "b"]) == [
        "The selected runs' test accuracies are measured on 400 to 1,000 test images: one measured on fewer images is "
        "less certain (Runs shows each test accuracy's 95% interval)."
    ]
    found = " ".join(analysis.comparability_warnings(runs, ["b", "c"]))
    assert "different datasets (fashion-mnist, mnist)" in found and "Keras autolog" in found
    assert "validation" not in found  # c's size is unknown: nothing to compare
    assert analysis.comparability_warnings(runs, ["a", "a"]) == []


def test_verdicts_of_many_runs_equal_each_runs_own_verdict_with_gaps_and_repeated_steps():
    rows = [
        ("a", Metric.TRAIN_ACC, 1, 0.5),
        ("a", Metric.VAL_ACC, 1, 0.4),
        ("a", Metric.TRAIN_ACC, 2, 0.9),
        ("a", Metric.VAL_ACC, 2, 0.2),
        ("a", Metric.VAL_ACC, 2, 0.8),  # epoch 2 logged twice: the last counts
        ("b", Metric.TRAIN_ACC, 1, 0.7),
        ("b", Metric.VAL_ACC, 3, 0.6),
        ("b", Metric.TRAIN_ACC, 3, 0.99),
        ("b", Metric.VAL_ACC, 4, 0.9),  # only epoch 3 has both
        ("c", Metric.VAL_ACC, 1, 0.5),
    ]  # no train accuracy: no verdict
    points = pd.DataFrame(rows, columns=["run_id", "metric", "step", "value"])
    yardsticks = {run_id: Yardstick(0.0) for run_id in "abc"}
    judged = diagnosis.verdicts(points, yardsticks, diverged={"b"})
    assert set(judged) == {"a", "b"}
    for run_id in judged:
        alone = diagnosis.verdict(diagnosis.history_of(points, run_id), yardsticks[run_id], run_id == "b")
        assert judged[run_id] == alone
    assert (judged["a"].best_epoch, judged["a"].best_val_acc, judged["b"].epochs_trained) == (2, 0.8, 3)
    assert judged["b"].diagnosis == diagnosis.DIVERGED


def test_group_table_gives_each_config_group_its_seeds_mean_std_and_t_interval():
    tiny = {"model": "tiny", "lr": "0.005", "seed": "0", "epochs": "3", "train_size": "2000", "train_eval_size": "2000"}
    other_tiny = {**tiny, "lr": "0.01", "train_size": "500", "train_eval_size": "500"}
    runs = pd.DataFrame(
        {
            "run_id": list("abcdef"),
            "config_group": ["g", "g", "g", "", "h", "k"],
            "model": ["tiny"] * 4 + ["lenet5", "tiny"],
            "dataset": ["mnist"] * 6,
            "status": ["FINISHED", "FINISHED", "RUNNING", "FINISHED", "FINISHED", "FINISHED"],
            "test_acc": [0.90, 0.94, np.nan, 0.5, 0.97, 0.8],
            "best_val_acc": [0.91, 0.95, 0.9, 0.5, 0.96, 0.8],
            "test_size": [1000] * 4 + [400, 1000],
            "config": [tiny, {**tiny, "seed": "1"}, {**tiny, "seed": "2"}, {}, {"model": "lenet5"}, other_tiny],
        }
    )
    groups = analysis.group_table(runs).set_index("run_ids", drop=False)
    g = groups.loc[groups["group"] == "g"].iloc[0]
    expected = stats.accuracy_mean_interval([0.90, 0.94])
    assert (g["runs"], g["seeds"], g["run_ids"]) == (3, 2, ["a", "b", "c"])
    assert (g["test_acc_mean"], g["test_acc_low"], g["test_acc_high"]) == pytest.approx(
        (0.92, expected.low, expected.high)
    )
    assert g["test_acc_std"] == pytest.approx(np.std([0.90, 0.94], ddof=1))
    assert g["best_val_acc_mean"] == pytest.approx(0.93)  # the running run's 0.9 is not a finished seed
    alone = groups.loc[groups["run_ids"].map(lambda ids: ids == ["d"])].iloc[0]
    assert alone["group"] == "" and alone["seeds"] == 1
    h = groups.loc[groups["group"] == "h"].iloc[0]  # a group of one run: its test accuracy's Wilson interval
    wilson = stats.accuracy_interval(388, 400)
    assert (h["test_acc_low"], h["test_acc_high"]) == pytest.approx((wilson.low, wilson.high))
    assert alone["test_acc_low"] == pytest.approx(stats.accuracy_interval(500, 1000).low)
    k = groups.loc[groups["group"] == "k"].iloc[0]  # tiny's groups differ in lr and train_size (train_eval_size
    # follows train_size, so it is left out)
    assert (g["settings"], k["settings"]) == ("lr=0.005, train_size=2000", "lr=0.01, train_size=500")
    assert (alone["settings"], h["settings"]) == ("", "")  # another tool's run has no settings to compare
    assert len(groups) == 4


def test_a_group_row_says_how_many_of_its_runs_are_selected_when_only_some_are():
    assert analysis.partly_selected([["a", "b", "c"], ["d"], ["e", "f"]], ["a", "d", "e", "f"]) == ["1 of 3", "", ""]


def test_the_closest_run_to_compare_with_is_another_seed_then_same_data_and_model_then_fewest_differences():
    base = {"model": "lenet5", "dataset": "mnist", "lr": "0.001", "seed": "0"}
    rows = {  # run id: (config group, dataset, test size, model, config)
        "me": ("g1", "mnist", 1000, "lenet5", base),
        "fashion": ("g2", "fashion-mnist", 1000, "lenet5", {**base, "dataset": "fashion-mnist"}),
        "other-lr": ("g3", "mnist", 1000, "lenet5", {**base, "lr": "0.01"}),
        "other-model": ("g4", "mnist", 1000, "tiny", {**base, "model": "tiny"}),
        "fewer-test": ("g5", "mnist", 400, "lenet5", {**base, "test_size": "400"}),
        "my-seed": ("g1", "mnist", 1000, "lenet5", {**base, "seed": "1"}),
    }
    runs = pd.DataFrame(
        [
            {"run_id": r, "config_group": g, "dataset": d, "test_size": t, "model": m, "config": c}
            for r, (g, d, t, m, c) in rows.items()
        ]
    )
    assert analysis.closest_runs(runs, "me", [r for r in rows if r != "me"]) == [
        "my-seed",
        "other-lr",
        "other-model",
        "fewer-test",
        "fashion",
    ]


def test_per_class_epochs_become_a_long_frame_and_heatmaps_of_gap_and_train_error():
    per_class = {
        "class_names": ["zero", "one"],
        "epochs": [1, 2],
        "train_error": [[0.2, 0.1], [0.0, None]],
        "val_error": [[0.25, 0.1], [0.15, 0.05]],
        "train_support": [[90, 10], [90, 0]],
        "val_support": [[20, 20], [20, 20]],
    }
    frame = analysis.per_class_frame(per_class)
    assert list(frame["name"]) == ["zero", "one", "zero", "one"]
    assert frame["gap"].iloc[:3].tolist() == pytest.approx([0.05, 0.0, 0.15]) and np.isnan(frame["gap"].iloc[3])
    limit = figures.heat_limit(frame, ["gap", "train_error"])
    gap = figures.class_epoch_heatmap(frame, "gap", "gap", True, limit).option
    assert gap["yAxis"]["data"] == ["zero", "one"] and gap["xAxis"]["data"] == ["1", "2"]
    cells = {tuple(c["value"][:2]): c["value"][2] for c in gap["series"][0]["data"]}
    assert cells[(1, 0)] == pytest.approx(15.0) and (0, 1) in cells and (1, 1) not in cells  # in points; no NaN cell
    assert gap["visualMap"]["min"] == -gap["visualMap"]["max"]  # centred on no gap
    bias = figures.class_epoch_heatmap(frame, "train_error", "bias", False, limit).option
    assert bias["visualMap"]["min"] == 0 and bias["visualMap"]["max"] == pytest.approx(20.0)
    # side by side, one scale: the gap's largest is 15 pp, yet its red ends where the bias's does, at 20
    assert gap["visualMap"]["max"] == bias["visualMap"]["max"] == pytest.approx(20.0)


def test_the_reliability_diagram_draws_a_bar_and_a_mean_confidence_marker_per_bin_and_the_diagonal():
    table = {
        "epochs": [1, 2],
        "edges": [[0, 0.5, 1.0]] * 2,
        "counts": [[5, 15], [2, 18]],
        "accuracy": [[0.4, 0.9], [None, 0.8]],
        "confidence": [[0.3, 0.95], [None, 0.97]],
    }
    entry = analysis.epoch_entry(table, 2)
    assert entry == {"edges": [0, 0.5, 1.0], "counts": [2, 18], "accuracy": [None, 0.8], "confidence": [None, 0.97]}
    fig = figures.reliability_diagram(entry, 2)
    bars, means, diagonal = series(fig)
    assert [b["value"] for b in bars["data"]] == [[25.0, None], [75.0, 80.0]]
    assert [b["label"]["formatter"] for b in bars["data"]] == ["2", "18"]
    assert fig.option["yAxis"]["max"] == 100 and fig.option["grid"]["top"] >= 40  # a full bar's count above it
    assert means["data"][1] == [97.0, 80.0]  # read against the diagonal at the bin's mean confidence
    assert diagonal["data"] == [[0, 0], [100, 100]]


def test_calibration_curves_put_loss_and_ece_on_two_axes_and_mark_the_rising_epoch():
    history = pd.DataFrame(
        {Metric.VAL_LOSS: [0.5, 0.4, 0.45, 0.5], Metric.VAL_ECE: [0.02, 0.03, 0.05, 0.06]}, index=range(1, 5)
    )
    fig = figures.calibration_curves(history, rising_from=2)
    loss, ece = series(fig)
    assert ys(loss) == [0.5, 0.4, 0.45, 0.5] and "yAxisIndex" not in loss and ece["yAxisIndex"] == 1
    assert ys(ece) == pytest.approx([2.0, 3.0, 5.0, 6.0])
    assert loss["markLine"]["data"] == [{"xAxis": 2}]


def test_the_capacity_curve_marks_the_lowest_validation_error_against_parameters_on_a_log_axis():
    points = pd.DataFrame(
        {
            "width": [0.25, 1.0, 4.0],
            "params_total": [75_338, 1_199_882, 19_176_458],
            "train_error": [0.08, 0.01, 0.0],
            "val_error": [0.10, 0.05, 0.06],
        }
    )
    spot = analysis.sweet_spot(points)
    assert spot == 1
    fig = figures.capacity_curve(points, spot)
    train, val, star = series(fig)
    assert [p[0] for p in train["data"]] == [75_338, 1_199_882, 19_176_458] and ys(val) == pytest.approx([10, 5, 6])
    assert val["data"][0][2] == 0.25  # the width, for the tooltip
    assert star["data"] == [[1_199_882, 5.0]] and star["name"] == "sweet spot"
    assert fig.option["xAxis"]["type"] == "log"


def test_each_run_is_marked_best_where_it_is_and_measured_against_a_baseline():
    table = pd.DataFrame(
        {
            "run": ["a", "b", "c"],
            "final val acc": [0.90, 0.95, 0.95],
            "best val acc": [0.91, 0.96, 0.95],
            "test acc": [0.89, 0.94, np.nan],
            "s / epoch": [3.0, 2.0, 4.0],
        }
    )
    marked = analysis.marked_best(table, baseline=0)
    assert list(marked["best at"]) == ["", "final val acc, best val acc, test acc, s / epoch", "final val acc"]
    assert list(marked["test acc vs baseline"].iloc[:2]) == pytest.approx([0.0, 0.05])
    assert list(marked.columns[2:6]) == ["best val acc", "best val acc vs baseline", "test acc", "test acc vs baseline"]
    assert "test acc vs baseline" not in analysis.marked_best(table)


def test_curves_go_along_epochs_training_seconds_or_images_seen():
    metrics = pd.concat(
        [
            long_metrics("a", [0.5, 0.6, 0.7], [0.4, 0.5, 0.6]),
            pd.DataFrame({"run_id": "a", "metric": "epoch_seconds", "step": [1, 2, 3], "value": [2.0, 3.0, 4.0]}),
            long_metrics("b", [0.5], [0.4]),
        ]
    )
    runs = pd.DataFrame({"run_id": ["a", "b"], "train_size": [1000, 500]})
    assert analysis.along(metrics, runs, "epoch") is metrics
    timed = analysis.along(metrics, runs, "training time")
    assert list(timed[timed["metric"] == Metric.VAL_ACC]["step"]) == [2.0, 5.0, 9.0]  # b logged no epoch_seconds
    seen = analysis.along(metrics, runs, "images seen")
    assert list(seen[seen["metric"] == Metric.VAL_ACC]["step"]) == [1000, 2000, 3000, 500]


def test_bands_over_two_seeds_stay_where_each_metric_can_be():
    """Two seeds give a t interval 12.7 standard errors wide: cut to [0, 1] for rates, at 0 for a loss, and left
    free for variance, which has either sign; the cut interval is scipy's t interval where it is inside."""
    metrics = [str(Metric.VAL_LOSS)] * 2 + [str(Metric.VAL_ACC)] * 2 + [str(Metric.VARIANCE)] * 2
    points = pd.DataFrame(
        {"run_id": ["a", "b"] * 3, "step": 1, "metric": metrics, "value": [0.1, 0.9, 0.8, 0.99, -0.02, 0.03]}
    )
    drawn = analysis.bands(points, {"group": ["a", "b"]}).set_index("metric")
    for metric, values in points.groupby("metric")["value"]:
        low, high = scipy_stats.t.interval(0.95, 1, loc=values.mean(), scale=values.std(ddof=1) / np.sqrt(2))
        assert (drawn.loc[metric, "low"], drawn.loc[metric, "high"]) == pytest.approx(
            (
                max(low, 0) if metric != str(Metric.VARIANCE) else low,
                min(high, 1) if metric == str(Metric.VAL_ACC) else high,
            )
        ), metric
    assert drawn.loc[str(Metric.VAL_LOSS), "low"] == 0 and drawn.loc[str(Metric.VAL_ACC), "high"] == 1
    assert drawn.loc[str(Metric.VARIANCE), "low"] < 0


@pytest.mark.parametrize(
    "values, labels",
    [
        ([0.05, 0.9, 2.3], [0.05, 0.1, 0.2, 0.5, 1, 2]),
        ([0.3, 0.45], [0.2, 0.5]),  # narrow: widened to two labels
        ([1e-4, 3.0], [0.0001, 0.001, 0.01, 0.1, 1]),
        ([0.0, -1.0, 0.3, float("nan"), 0.45, float("inf")], [0.2, 0.5]),  # a diverged or foreign run's points
    ],
)
def test_a_log_axis_writes_each_label_whole(values, labels):
    axis = figures.log_axis(values)
    assert axis["type"] == "log" and axis["axisLabel"]["customValues"] == labels  # exact values: written whole
    drawable = [v for v in values if 0 < v < float("inf")]
    assert 0 < axis["min"] <= min([*labels, *drawable]) and max([*labels, *drawable]) <= axis["max"] < float("inf")


def test_the_best_trials_lead_over_the_runner_up_has_newcombes_interval_on_their_validation_images():
    trials = pd.DataFrame(
        {
            "run_id": ["a", "b", "c", "d"],
            "state": ["complete", "complete", "pruned", "complete"],
            "best_val_acc": [0.87, 0.90, 0.99, 0.80],
        }
    )
    found = analysis.best_trial_lead(trials, pd.Series({"a": 100, "b": 100, "c": 100, "d": 100}))
    expected = stats.rate_difference_interval(0.87, 100, 0.90, 100)  # the pruned trial's 99% is no objective
    assert found.runner_up == 0 and found.val_size == 100
    assert (found.lead.estimate, found.lead.low, found.lead.high) == pytest.approx((0.03, expected.low, expected.high))
    assert found.lead.low < 0  # 3 points on 100 images: within the noise
    wide = analysis.best_trial_lead(trials, pd.Series({"a": 10_000, "b": 10_000, "d": 10_000}))
    assert wide.lead.low > 0  # the same lead on 10,000 images is real
    assert analysis.best_trial_lead(trials.iloc[:1], pd.Series({"a": 100})) is None
    unknown = analysis.best_trial_lead(trials, pd.Series({"a": 100, "d": 100}))  # the green trial's size unknown
    assert unknown is None  # rather than a lead of the runner-up over the third


def test_runs_rank_within_their_comparable_set():
    runs = pd.DataFrame(
        {
            "dataset": ["mnist", "mnist", "mnist", "fashion-mnist", "mnist"],
            "test_size": [2000, 2000, 400, 2000, 2000],
            "status": ["FINISHED", "FINISHED", "FINISHED", "FINISHED", "RUNNING"],
            "test_acc": [0.97, 0.98, 0.99, 0.90, np.nan],
        }
    )
    assert list(analysis.ranks(runs)) == ["2 of 2", "★ 1 of 2", "★ 1 of 1", "★ 1 of 1", ""]  # other test images

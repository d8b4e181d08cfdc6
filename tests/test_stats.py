"""core.stats and the noise-aware diagnosis: each result checked against scipy or a published value."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from core import stats
from core.comparison import Side, which_is_better
from core.diagnosis import (
    HIGH_BIAS_VARIANCE_UNSURE,
    INCONCLUSIVE,
    Yardstick,
    diagnose,
    early_stop,
    judged_figures,
    standing,
)
from core.settings import config_group
from experiments.config import RunConfig


@pytest.mark.parametrize("correct, n", [(0, 10), (580, 600), (9_912, 10_000), (50, 100)])
def test_accuracy_interval_is_scipys_wilson_interval(correct, n):
    expected = scipy_stats.binomtest(correct, n).proportion_ci(method="wilson")
    got = stats.accuracy_interval(correct, n)
    assert (got.low, got.high, got.estimate) == pytest.approx((expected.low, expected.high, correct / n))
    z = scipy_stats.norm.ppf(0.975)  # and Wilson's own formula
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (got.low, got.high) == pytest.approx((centre - half, centre + half))


def test_wilson_bounds_of_many_accuracies_are_scipys_one_at_a_time():
    rng = np.random.default_rng(0)
    n = np.concatenate([rng.integers(1, 20_000, 500), [1, 2, 10_000]])
    correct = np.concatenate([rng.integers(0, n[:500] + 1), [0, 2, 10_000]])
    low, high = stats.wilson_bounds(correct, n)
    expected = [
        scipy_stats.binomtest(int(k), int(m)).proportion_ci(method="wilson") for k, m in zip(correct, n, strict=True)
    ]
    assert low == pytest.approx([e.low for e in expected], abs=1e-12)
    assert high == pytest.approx([e.high for e in expected], abs=1e-12)
    assert np.isnan(stats.wilson_bounds(np.array([3, 1]), np.array([0, np.nan]))[0]).all()


def test_mean_interval_is_the_t_interval_and_needs_two_values():
    values = [0.981, 0.984, 0.979, 0.983]
    got = stats.mean_interval(values)
    half = scipy_stats.t.ppf(0.975, 3) * np.std(values, ddof=1) / 2
    assert (got.low, got.high, got.n) == pytest.approx((np.mean(values) - half, np.mean(values) + half, 4))
    assert math.isnan(stats.mean_interval([0.98]).low) and stats.mean_interval([0.98]).estimate == 0.98


def test_welch_comparison_is_scipys_and_its_interval_matches_the_welch_formula():
    a, b = np.array([0.90, 0.91, 0.905, 0.899]), np.array([0.97, 0.972, 0.968])
    got = stats.compare_groups(a, b)
    expected = scipy_stats.ttest_ind(b, a, equal_var=False)
    assert got.p_value == pytest.approx(expected.pvalue)
    assert got.difference.estimate == pytest.approx(b.mean() - a.mean())
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = scipy_stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert got.difference.half_width == pytest.approx(half)
    assert got.hedges_g > 0


def test_exact_mcnemar_is_the_binomial_test_on_the_discordant_pairs():
    right_a = np.array([1] * 30 + [0] * 12 + [1] * 900 + [0] * 58, dtype=bool)
    right_b = np.array([0] * 30 + [1] * 12 + [1] * 900 + [0] * 58, dtype=bool)
    got = stats.mcnemar(right_a, right_b)
    assert (got.only_a, got.only_b, got.both_right, got.both_wrong) == (30, 12, 900, 58)
    assert got.p_value == pytest.approx(scipy_stats.binomtest(30, 42, 0.5).pvalue)
    by_hand = min(1.0, 2 * sum(math.comb(42, k) for k in range(0, 13)) / 2**42)  # two-sided exact, symmetric
    assert got.p_value == pytest.approx(by_hand)
    assert got.difference == pytest.approx((12 - 30) / 1000)


def test_newcombe_interval_matches_his_published_example():
    # Newcombe (1998), Statistics in Medicine 17:873, table II, example (a): 56/70 - 48/80, method 10
    got = stats.rate_difference_interval(48 / 80, 80, 56 / 70, 70)
    assert (round(got.low, 4), round(got.high, 4)) == (0.0524, 0.3339)


def test_welch_rejects_about_five_percent_of_a_a_comparisons():
    rng = np.random.default_rng(12)
    p_values = [
        stats.compare_groups(rng.normal(0.98, 0.002, 5), rng.normal(0.98, 0.002, 5)).p_value for _ in range(1000)
    ]
    assert 0.03 <= np.mean(np.array(p_values) < 0.05) <= 0.07


def test_seeds_to_resolve_reach_the_power_and_one_fewer_does_not():
    n = stats.seeds_to_resolve(0.001, 0.001)
    assert stats.welch_power(0.001, 0.001, n) >= 0.8 > stats.welch_power(0.001, 0.001, n - 1)
    simulated = np.mean(
        [
            scipy_stats.ttest_ind(
                *np.random.default_rng(s).normal([[0], [0.001]], 0.001, (2, n)), equal_var=False
            ).pvalue
            < 0.05
            for s in range(400)
        ]
    )
    assert simulated == pytest.approx(stats.welch_power(0.001, 0.001, n), abs=0.07)


def test_p_values_are_written_as_reports_write_them():
    assert (stats.p_text(0.0012), stats.p_text(0.41), stats.p_text(3e-9)) == ("p = 0.0012", "p = 0.41", "p < 1e-6")


def test_a_gap_whose_interval_straddles_the_threshold_is_inconclusive_with_the_size_that_settles_it():
    bias, variance = judged_figures(0.983, 0.966, Yardstick(0.002, train_eval_size=2400, val_size=600))
    assert bias.high is True and variance.high is None
    label, rule = diagnose(bias, variance)  # the firm part still speaks
    assert label == HIGH_BIAS_VARIANCE_UNSURE and "straddles 1.00 pp" in rule and "would settle it" in rule
    assert diagnose(*judged_figures(0.985, 0.98, Yardstick(0.002, 900, 100)))[0] == INCONCLUSIVE
    needed = int(variance.settling.split()[1].replace(",", ""))
    assert standing(stats.rate_difference_interval(0.017, 2400, 0.034, needed), 0.01) is not None
    # counts are whole numbers, so the edge is jagged: a fifth fewer images leaves it straddling
    assert standing(stats.rate_difference_interval(0.017, 2400, 0.034, int(needed * 0.8)), 0.01) is None


def test_large_sets_give_firm_verdicts_and_unknown_sizes_fall_back_to_the_point_estimates():
    assert diagnose(*judged_figures(0.995, 0.99, Yardstick(0.002, 10_000, 6_000)))[0] == "good fit"
    assert diagnose(*judged_figures(0.999, 0.97, Yardstick(0.002, 10_000, 6_000)))[0] == "high variance"
    label, rule = diagnose(*judged_figures(0.983, 0.966, Yardstick(0.002)))
    assert label == "high bias and variance" and "point estimates" in rule


def test_config_group_ignores_the_seed_and_nothing_else():
    params = {"model": "lenet5", "lr": "0.001", "seed": "0", "device": "cpu", "epochs": "2"}
    assert config_group(params) == config_group({**params, "seed": "7", "device": "cuda"})
    assert config_group(params) != config_group({**params, "lr": "0.01"})
    assert config_group({"epochs": "3", "batch_size": "32"}) == ""  # another tool's run (Keras autolog): no group
    replicas = RunConfig.from_recipe("lenet5", repeats=3, seed=5).replicas()
    assert [c.seed for c in replicas] == [5, 6, 7] and len({c.run_name for c in replicas}) == 3


def test_which_is_better_needs_seeds_on_both_sides_to_compare_a_group():
    group = Side("g", ("a", "b"), (0.98, 0.981), (1000, 1000))
    single = Side("s", ("c",), (0.97,), (1000,))
    answer = which_is_better(group, single)
    assert answer.p_value is None and "--repeats" in answer.sentence and "`" not in answer.sentence
    tie = which_is_better(group, Side("h", ("d", "e"), (0.9805, 0.9802), (1000, 1000)))
    assert not tie.significant and "no detectable difference" in tie.sentence and "seeds per side would" in tie.sentence


def test_early_stopping_replays_a_history_with_and_without_patience():

    val = pd.Series([0.90, 0.93, 0.92, 0.95, 0.94, 0.94, 0.93, 0.95], index=range(1, 9))
    seconds = pd.Series(10.0, index=range(1, 9))
    hindsight = early_stop(val, seconds)  # stop at the best epoch: 4 (the first of the two 0.95s)
    assert (hindsight.stopped_after, hindsight.best_epoch, hindsight.epochs_saved) == (4, 4, 4)
    assert hindsight.seconds_saved == 40.0 and hindsight.best_val_acc == 0.95
    two = early_stop(val, seconds, patience=2)  # 0.92 at 3 is no better than 0.93 at 2; 4 is: 5 and 6 are not
    assert (two.stopped_after, two.best_epoch, two.epochs_saved, two.seconds_saved) == (6, 4, 2, 20.0)
    one = early_stop(val, seconds, patience=1)  # stops at epoch 3, keeping epoch 2: a worse model than the run's
    assert (one.stopped_after, one.best_epoch, one.best_val_acc) == (3, 2, 0.93)
    patient = early_stop(val, seconds, patience=5)  # never 5 epochs without a better one: trains to the end
    assert (patient.stopped_after, patient.epochs_saved, patient.seconds_saved) == (8, 0, 0.0)
    assert math.isnan(early_stop(val, pd.Series(dtype=float), patience=2).seconds_saved)  # no timing logged

"""The data-size fit (core/data_scaling.py) against known synthetic curves."""

import numpy as np
import pytest

from core.data_scaling import fit_power_law, more_data_sentence, power_law
from experiments.run import execute
from tests.helpers import on_tab, small_config, texts


def test_the_fit_recovers_a_known_power_law_and_its_extrapolation():
    sizes = np.array([1_000, 2_000, 5_000, 10_000, 20_000, 60_000])
    fit = fit_power_law(sizes, power_law(sizes, 3.0, 0.6, 0.008))
    assert (fit.a, fit.b, fit.c) == pytest.approx((3.0, 0.6, 0.008), rel=1e-4)
    assert fit.error_at(120_000) == pytest.approx(power_law(120_000, 3.0, 0.6, 0.008), rel=1e-6)


def test_the_interval_covers_the_truth_from_noisy_points_and_widens_beyond_them():
    rng = np.random.default_rng(0)
    sizes = np.array([1_000, 2_000, 5_000, 10_000, 20_000, 60_000])
    truth = power_law(sizes, 3.0, 0.6, 0.008)
    covered = 0
    for _ in range(50):
        fit = fit_power_law(sizes, truth * (1 + rng.normal(0, 0.03, len(sizes))))
        low, high = fit.interval_at(120_000)
        covered += low <= power_law(120_000, 3.0, 0.6, 0.008) <= high
        near, far = fit.interval_at(20_000), fit.interval_at(1_000_000)
        assert far[1] - far[0] >= near[1] - near[0]
    assert covered >= 40  # a 95% interval, from 50 noisy draws


def test_three_sizes_fit_exactly_without_an_interval_and_two_do_not_fit():
    sizes = [1_000, 4_000, 16_000]
    fit = fit_power_law(sizes, power_law(np.array(sizes), 2.0, 0.5, 0.01))
    assert fit is not None and fit.interval_at(32_000) is None
    assert "no interval: 3 sizes fit the curve's 3 numbers exactly" in more_data_sentence(fit)
    assert fit_power_law([1_000, 1_000, 4_000], [0.1, 0.1, 0.05]) is None


def test_the_sentence_says_what_doubling_would_bring():
    sizes = np.array([1_000, 5_000, 20_000, 60_000])
    fit = fit_power_law(sizes, power_law(sizes, 3.0, 0.6, 0.008) * np.array([1.01, 0.99, 1.01, 0.99]))
    said = more_data_sentence(fit)
    assert said.startswith(
        "Doubling the data (60,000 to 120,000 training images) would bring validation error to "
        f"about {fit.error_at(120_000):.2%} (95% interval "
    )
    assert f"error = {fit.a:.3g}·n^-{fit.b:.2f} + {fit.c:.3g} (as fractions: a floor of {fit.c:.2%})" in said


def test_the_inspector_fits_a_real_data_size_series_and_says_what_doubling_would_bring(store, mnist_dir):

    for size in (250, 500, 1000, 2000):
        execute(small_config("softmax-regression", epochs=1, train_size=size, run_name=f"sr-{size}"))
    at = on_tab("overfitting", [], "More data and capacity")
    assert not at.exception
    said = texts(at).replace("\\", "")
    assert "Doubling the data (1,600 to 3,200 training images) would bring validation error to about" in said
    assert "95% interval" in said  # four sizes: the fit has one degree of freedom left for its uncertainty

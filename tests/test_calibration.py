"""Calibration, per-class errors and the rising-loss flag against direct computations on known inputs."""

import math

import numpy as np
import pandas as pd
import pytest

from core.calibration import class_errors, loss_rising_while_accuracy_holds, reliability
from core.diagnosis import class_gaps
from experiments.run_logger import grown


def test_the_reliability_table_and_ece_match_a_bin_by_bin_count(rng):
    confidence = rng.uniform(0.1, 1.0, 5000)
    correct = rng.uniform(size=5000) < confidence**2  # overconfident: right less often than it claims
    table = reliability(confidence, correct)
    edges = np.linspace(0, 1, 16)
    assert table.edges == pytest.approx(edges.tolist())
    ece = 0.0
    for b in range(15):
        inside = (confidence >= edges[b]) & (confidence < edges[b + 1])
        assert table.counts[b] == inside.sum()
        if inside.any():
            assert table.accuracy[b] == pytest.approx(correct[inside].mean())
            assert table.confidence[b] == pytest.approx(confidence[inside].mean())
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
        else:
            assert math.isnan(table.accuracy[b])
    assert table.ece == pytest.approx(ece)
    assert table.ece > 0.1


def test_a_calibrated_model_has_an_ece_near_zero_and_an_overconfident_one_its_excess(rng):
    confidence = rng.uniform(0.5, 1.0, 200_000)
    assert reliability(confidence, rng.uniform(size=confidence.size) < confidence).ece < 0.005
    overconfident = rng.uniform(size=confidence.size) < confidence - 0.2
    assert reliability(confidence, overconfident).ece == pytest.approx(0.2, abs=0.01)
    assert reliability([1.0, 1.0], [True, False]).counts[-1] == 2  # a confidence of 1 falls in the last bin


def test_class_errors_are_one_minus_recall_and_nan_for_an_absent_class():
    confusion = np.zeros((3, 3), int)
    confusion[0] = [8, 2, 0]
    confusion[1] = [0, 5, 0]
    errors = class_errors(confusion)
    assert errors[:2] == pytest.approx([0.2, 0.0])
    assert math.isnan(errors[2])


def history(val_loss, val_acc):
    return pd.DataFrame({"val_loss": val_loss, "val_acc": val_acc}, index=range(1, len(val_loss) + 1))


@pytest.mark.parametrize(
    "val_loss, val_acc, expected",
    [
        (
            [0.9, 0.5, 0.4, 0.45, 0.5, 0.6],
            [0.8, 0.9, 0.92, 0.92, 0.921, 0.918],
            3,
        ),  # rises from epoch 3, accuracy holds
        ([0.9, 0.5, 0.4, 0.45, 0.5, 0.6], [0.8, 0.9, 0.92, 0.9, 0.88, 0.85], None),  # accuracy falls with it
        ([0.9, 0.5, 0.4, 0.35, 0.3, 0.29], [0.8, 0.9, 0.92, 0.92, 0.93, 0.93], None),  # still falling
        (
            [0.9, 0.5, 0.4, 0.35, 0.3, 0.35],
            [0.8, 0.9, 0.92, 0.92, 0.93, 0.93],
            None,
        ),  # one epoch of rise is not a trend
        ([0.9, 0.5, 0.4, 0.401, 0.402], [0.8, 0.9, 0.92, 0.92, 0.92], None),  # a rise within noise
    ],
)
def test_the_rising_loss_flag(val_loss, val_acc, expected):
    assert loss_rising_while_accuracy_holds(history(val_loss, val_acc)) == expected


def test_a_class_overfits_only_when_its_whole_gap_interval_is_above_the_threshold():
    gaps = class_gaps(
        train_error=[0.0, 0.02, 0.05],
        val_error=[0.12, 0.05, 0.06],
        train_support=[900, 100, 40],
        val_support=[100, 20, 10],
        names=["zero", "one", "two"],
    )
    assert [g.name for g in gaps] == ["zero", "one", "two"]  # widest gap first
    assert gaps[0].overfits is True  # 12 of 100 wrong, none of 900
    assert gaps[1].overfits is None  # 1 of 20 against 2 of 100: the interval straddles 1 point
    assert gaps[2].overfits is None  # 1 point of gap on 10 and 40 images
    assert gaps[0].gap.low > 0.01 and gaps[0].gap.estimate == pytest.approx(0.12)


def test_a_per_epoch_artifact_grows_by_one_entry_and_a_repeated_epoch_replaces_the_later_ones():
    series = {"class_names": ["a", "b"]}
    for epoch in (1, 2, 3):
        series = grown(series, epoch, {"matrices": epoch * 10})
    assert series == {"class_names": ["a", "b"], "epochs": [1, 2, 3], "matrices": [10, 20, 30]}
    again = grown(series, 2, {"matrices": 99})  # resumed from epoch 1's checkpoint after epoch 3 was logged
    assert again["epochs"] == [1, 2] and again["matrices"] == [10, 99]
    fresh = grown({"class_names": ["a", "b"]}, 3, {"predicted": [0, 1]})  # an artifact an older run never logged
    assert fresh == {"class_names": ["a", "b"], "epochs": [3], "predicted": [[0, 1]]}  # starts at the resumed epoch

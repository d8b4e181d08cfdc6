"""Calibration and per-class errors of one evaluated set: the numbers the Overfitting inspector follows per epoch.

A model is calibrated when, among the images it predicts with confidence c, a fraction c is right. The
reliability table bins the predictions by their confidence (the top class's softmax probability) into
CALIBRATION_BINS equal-width bins and gives each bin's count, accuracy and mean confidence; the expected
calibration error (ECE) is the count-weighted mean of |accuracy - confidence| over the bins (Guo et al. 2017,
"On Calibration of Modern Neural Networks", which uses 15 bins). Overfitting often shows here first: the
validation loss rises while the accuracy holds because the wrong predictions grow confident.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import binned_statistic

CALIBRATION_BINS = 15


@dataclass(frozen=True)
class Reliability:
    """One set's reliability table: per confidence bin, its edges, the number of predictions, their accuracy and
    their mean confidence (NaN for an empty bin)."""

    edges: list[float]
    counts: list[int]
    accuracy: list[float]
    confidence: list[float]

    @property
    def ece(self) -> float:
        """Expected calibration error: sum over bins of count / n * |accuracy - confidence|."""
        counts = np.asarray(self.counts, dtype=float)
        gaps = np.abs(np.asarray(self.accuracy) - np.asarray(self.confidence))
        return float(np.nansum(counts * gaps) / counts.sum())


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = CALIBRATION_BINS) -> Reliability:
    """The reliability table of predictions with these top-class confidences, `correct` saying which were right."""
    confidence = np.asarray(confidence, dtype=float)
    accuracy, edges, _ = binned_statistic(confidence, np.asarray(correct, dtype=float), "mean", bins, (0.0, 1.0))
    mean_confidence = binned_statistic(confidence, confidence, "mean", bins, (0.0, 1.0))[0]
    counts = binned_statistic(confidence, confidence, "count", bins, (0.0, 1.0))[0]
    return Reliability(
        edges=edges.tolist(),
        counts=counts.astype(int).tolist(),
        accuracy=accuracy.tolist(),
        confidence=mean_confidence.tolist(),
    )


def class_errors(confusion: np.ndarray) -> np.ndarray:
    """Each class's error (1 - recall) from a confusion matrix (rows true, columns predicted); NaN for a class
    absent from the set."""
    confusion = np.asarray(confusion, dtype=float)
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - np.diag(confusion) / support


def loss_rising_while_accuracy_holds(history: pd.DataFrame, tolerance: float = 0.01, rise: float = 0.05) -> int | None:
    """The epoch after which validation loss rises while validation accuracy holds: the epoch of the lowest
    validation loss, when two or more epochs follow it, the last loss is at least `rise` (relative) above it, and the
    mean accuracy of the later epochs is no more than `tolerance` below its accuracy there (a mean: one epoch's
    accuracy on a few hundred images moves by points). The model grows confident on what it gets wrong: often the
    first sign of overfitting. None when that does not happen.

    `history` is indexed by epoch with columns val_loss and val_acc."""
    both = history[["val_loss", "val_acc"]].dropna().sort_index()
    loss, acc = both["val_loss"].to_numpy(), both["val_acc"].to_numpy()
    start = int(np.argmin(loss)) if len(loss) else 0
    if start > len(loss) - 3 or loss[-1] < loss[start] * (1 + rise) or acc[start + 1 :].mean() < acc[start] - tolerance:
        return None
    return int(both.index[start])

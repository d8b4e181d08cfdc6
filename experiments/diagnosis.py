"""Bias/variance arithmetic and the plain-words diagnosis shared by runners and dashboard.

bias = train error; variance = val error - train error;
avoidable bias = train error - best achievable error (an estimate, e.g. the best published error).
The diagnosis compares avoidable bias and variance with fixed thresholds (in error fractions):

| avoidable bias > BIAS_THRESHOLD | variance > VARIANCE_THRESHOLD | diagnosis |
|---|---|---|
| yes | no  | high bias |
| no  | yes | high variance |
| yes | yes | high bias and variance |
| no  | no  | good fit |
"""
from experiments.schema import Metric

BIAS_THRESHOLD = 0.01
VARIANCE_THRESHOLD = 0.01

# Best error reached on each dataset in the literature: the floor avoidable bias is measured against.
BEST_ERROR = {"mnist": 0.002, "fashion-mnist": 0.035}

HIGH_BIAS, HIGH_VARIANCE, BOTH, GOOD_FIT = "high bias", "high variance", "high bias and variance", "good fit"
ADVICE = {
    HIGH_BIAS: "the model underfits: try a bigger model, train longer, or a better optimizer",
    HIGH_VARIANCE: "the model overfits: try more data, regularisation (dropout, weight decay) or early stopping",
    BOTH: "fix the bias first (bigger model, train longer), then the variance (more data, regularisation)",
    GOOD_FIT: "train and validation errors are both close to the best achievable",
}


def bias_variance(train_acc: float, val_acc: float, best_error: float) -> dict:
    train_error, val_error = 1 - train_acc, 1 - val_acc
    return {
        Metric.BIAS: train_error,
        Metric.VARIANCE: val_error - train_error,
        Metric.AVOIDABLE_BIAS: train_error - best_error,
    }


def diagnose(avoidable_bias: float, variance: float, bias_threshold: float = BIAS_THRESHOLD,
             variance_threshold: float = VARIANCE_THRESHOLD) -> tuple[str, str]:
    """The diagnosis and the rule that gave it, in words."""
    high_bias, high_variance = avoidable_bias > bias_threshold, variance > variance_threshold
    label = {(True, False): HIGH_BIAS, (False, True): HIGH_VARIANCE,
             (True, True): BOTH, (False, False): GOOD_FIT}[(high_bias, high_variance)]
    rule = (f"avoidable bias {avoidable_bias:.2%} {'>' if high_bias else '<='} {bias_threshold:.2%}, "
            f"variance {variance:.2%} {'>' if high_variance else '<='} {variance_threshold:.2%}")
    return label, rule

"""Advice you can run: from a configuration's diagnosis, up to four follow-up experiments, each a change of that
configuration's settings with the effect it expects and why.

The rules are one declared table (RULES); each reads a Situation (the configuration as trained, its diagnosis and
what its model can honour) and returns the settings of the runs it proposes, or none where the model or data
cannot honour it. docs/advice.md gives the evidence each rule rests on.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

from core.diagnosis import (
    BOTH,
    DIVERGED,
    HIGH_BIAS,
    HIGH_BIAS_VARIANCE_UNSURE,
    HIGH_VARIANCE,
    HIGH_VARIANCE_BIAS_UNSURE,
    INCONCLUSIVE,
)
from core.schema import Metric

MAX_PROPOSALS = 4
SEEDS, MAX_RUNS = 3, 24  # seeds of each follow-up, and runs one launch may train, unless asked otherwise
OVERFITS = frozenset({HIGH_VARIANCE, HIGH_VARIANCE_BIAS_UNSURE, BOTH})
UNDERFITS = frozenset({HIGH_BIAS, HIGH_BIAS_VARIANCE_UNSURE, BOTH})
MAX_WEIGHT_DECAY = 0.01  # beyond it the penalty outweighs the loss of a small CNN: it underfits instead
MAX_VAL_SPLIT = 0.5  # more than half of the images held out for validation leaves too few to train or test on


class AdviceError(ValueError):
    """Nothing can be advised for this run or group (no firm diagnosis, or a split one); one line says why."""


@dataclass(frozen=True)
class Situation:
    """What the rules read: the settings the configuration was trained with (as core.settings names them), its
    diagnosis of the last epoch, and what its model and data can honour."""

    settings: dict
    diagnosis: str
    best_epoch: int
    epochs_trained: int
    train_pool: int | None  # images the dataset's training file holds (None: unknown)
    dropout_rate: float | None  # the highest rate of the model's dropout layers as trained (None: it has none)
    takes_weight_decay: bool  # the setting `weight_decay` reaches the model's optimizer
    scalable: bool  # the setting `width` scales the model
    bigger_model: str | None  # the next model of the registry by parameter count, in the same framework
    val_settling: float | None = None  # how many times more validation images would settle an unsure variance


@dataclass(frozen=True)
class Proposal:
    """One follow-up experiment: the runs it trains (each a dict of changed settings), what it expects, why."""

    rule: str
    runs: tuple[dict, ...]
    expects: str
    why: str


@dataclass(frozen=True)
class Rule:
    name: str
    treats: frozenset[str]
    runs: Callable[[Situation], list[dict]]
    expects: str
    why: str
    measures: str | None = None  # the metric the rule sets out to lower, judged after (None: test accuracy alone)


def dropout_up(s: Situation) -> list[dict]:
    """One rate for every dropout layer above the highest the model trained with (conv-conv's own are 0.25 and
    0.5: nothing below 0.5 would be more)."""
    if s.dropout_rate is None or s.dropout_rate >= 0.5:
        return []
    return [{"dropout": 0.3 if s.dropout_rate < 0.3 else 0.5}]


def weight_decay_up(s: Situation) -> list[dict]:
    """A first L2 penalty (5e-4, the usual first value for small CNNs), or ten times the one trained with."""
    if not s.takes_weight_decay:
        return []
    now = float(s.settings.get("weight_decay") or 0)
    more = 5e-4 if now == 0 else float(f"{10 * now:.3g}")
    return [{"weight_decay": more}] if more <= MAX_WEIGHT_DECAY else []


def more_data(s: Situation) -> list[dict]:
    """Twice the training file's images taken (validation is carved from them as before), where it has them."""
    taken = s.settings.get("train_size")
    if s.train_pool is None or taken is None:
        return []  # all of it taken already, or a dataset whose size is unknown
    more = min(2 * int(taken), s.train_pool)
    return [{"train_size": more}] if more > 1.2 * int(taken) else []


def stop_at_best(s: Situation) -> list[dict]:
    return [{"epochs": s.best_epoch}] if s.best_epoch < s.epochs_trained else []


def wider(s: Situation) -> list[dict]:
    return [{"width": 2 * float(s.settings.get("width") or 1)}] if s.scalable else []


def bigger_model(s: Situation) -> list[dict]:
    return [{"model": s.bigger_model}] if not s.scalable and s.bigger_model else []


def longer(s: Situation) -> list[dict]:
    """Twice the epochs, where validation accuracy was still at its best on the last epoch."""
    return [{"epochs": 2 * s.epochs_trained}] if s.best_epoch == s.epochs_trained else []


def lr_search(s: Situation) -> list[dict]:
    lr = float(s.settings["lr"])
    return [{"lr": float(f"{lr / 3:.3g}")}, {"lr": float(f"{lr * 3:.3g}")}]


def lr_down(s: Situation) -> list[dict]:
    return [{"lr": float(f"{float(s.settings['lr']) / 10:.3g}")}]


def more_validation(s: Situation) -> list[dict]:
    """A validation set large enough to settle the figure, carved by the same split (from train or from test), at
    most half of what it is carved from."""
    if not s.val_settling:
        return []
    split = "val_split" if float(s.settings.get("val_split") or 0) > 0 else "val_from_test"
    now = float(s.settings.get(split) or 0)
    wanted = math.ceil(round(now * s.val_settling * 100, 6)) / 100  # rounded up: at least the images that settle it
    return [{split: wanted}] if now > 0 and 1.1 * now < wanted <= MAX_VAL_SPLIT else []


RULES = (
    Rule(
        "dropout-up",
        OVERFITS,
        dropout_up,
        "a smaller gap (variance), at a similar or better validation accuracy.",
        "dropout keeps units from co-adapting to the training images; the model has dropout layers to set.",
        Metric.VARIANCE,
    ),
    Rule(
        "weight-decay",
        OVERFITS,
        weight_decay_up,
        "a smaller gap: smaller weights fit the training images' noise less.",
        "an L2 penalty keeps the weights small, which limits how closely the model can follow its training images.",
        Metric.VARIANCE,
    ),
    Rule(
        "more-data",
        OVERFITS,
        more_data,
        "a smaller gap: the model cannot memorise twice the images as easily.",
        "variance falls as the training set grows (the inspector's data-size curve measures it per model).",
        Metric.VARIANCE,
    ),
    Rule(
        "stop-at-best",
        OVERFITS,
        stop_at_best,
        "the same test accuracy in fewer epochs (the runner tests the best epoch's weights already).",
        "validation accuracy peaked before the last epoch: the epochs after it only fit the training images more.",
        Metric.TOTAL_SECONDS,
    ),
    Rule(
        "wider",
        UNDERFITS,
        wider,
        "a lower training error (avoidable bias) with twice the filters and hidden units.",
        "a model that cannot fit its training images needs more capacity; this one scales with `width`.",
        Metric.AVOIDABLE_BIAS,
    ),
    Rule(
        "bigger-model",
        UNDERFITS,
        bigger_model,
        "a lower training error from a model of more parameters.",
        "a model that cannot fit its training images needs more capacity; this one has a fixed width.",
        Metric.AVOIDABLE_BIAS,
    ),
    Rule(
        "longer",
        UNDERFITS,
        longer,
        "a lower training error: the best epoch was the last, so training had not levelled off.",
        "validation accuracy was still rising at the last epoch.",
        Metric.AVOIDABLE_BIAS,
    ),
    Rule(
        "lr-search",
        UNDERFITS,
        lr_search,
        "one of the two learning rates fits the training images faster.",
        "a learning rate off by a factor of a few slows training more than any other single setting.",
        Metric.AVOIDABLE_BIAS,
    ),
    Rule(
        "lr-down",
        frozenset({DIVERGED}),
        lr_down,
        "training that no longer blows up.",
        "the loss became NaN, infinite or exploded: steps too large for the loss surface.",
    ),
    Rule(
        "more-validation",
        frozenset({INCONCLUSIVE}),
        more_validation,
        "a firm diagnosis: the figure's interval no longer straddles its threshold.",
        "the rule's interval is too wide on this few validation images; this many settle it, the rates held.",
    ),
)


def changes_words(changes: dict) -> str:
    """A follow-up's changes as every report writes them: 'dropout 0.3, lr 0.003'."""
    return ", ".join(f"{name} {value}" for name, value in changes.items()) or "the original configuration"


def propose(situation: Situation) -> list[Proposal]:
    """The proposals of every rule that treats the diagnosis and that the model and data can honour, at most
    MAX_PROPOSALS, in the table's order."""
    found = []
    for rule in RULES:
        runs = rule.runs(situation) if situation.diagnosis in rule.treats else []
        if runs:
            found.append(Proposal(rule.name, tuple(runs), rule.expects, rule.why))
    return found[:MAX_PROPOSALS]

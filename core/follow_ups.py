"""Advice's follow-ups as the store holds them, and whether each helped.

The runs `advise --run` trained carry advice_of (what they follow), advice_rule and advice_changes; one rule's one
change over seeds is a follow-up. Each is judged against the original configuration's config group with compare's
own test on test accuracy (core.comparison), and with Welch's test on the figure its rule set out to lower (the
last epoch's variance or avoidable bias): the same numbers for `advise`, the inspector, Compare and the advice record.
"""

import json
import math
from dataclasses import dataclass

import numpy as np
from mlflow.exceptions import MlflowException

from core import stats
from core.advice import RULES, changes_words
from core.comparison import GROUP_PREFIX, Answer, ComparisonError, Side, group_side, seeds_to_resolve, which_is_better
from core.schema import Metric, Tag
from core.store import search_all

BASELINE = "baseline"  # the rule tag of the original configuration's own missing seeds
MEASURES = {rule.name: rule.measures for rule in RULES}
FIGURE_WORDS = {Metric.TOTAL_SECONDS: ("training time", 1, "s")}  # (name, scale, unit); fractions are in pp
HELPED, HURT, NO_EFFECT, PENDING = "helped", "hurt", "no detectable effect", "not judged yet"
UNTESTED = "cannot be tested"  # one run against a group of seeds: compare's sentence says what to train


@dataclass(frozen=True)
class FollowUp:
    """One rule's one change, trained over seeds after `target`'s diagnosis; `runs` are MLflow runs, any status."""

    target: str
    rule: str
    changes: str  # the advice_changes JSON, as tagged
    diagnosis: str  # the diagnosis it followed (advice_diagnosis; empty for runs tagged before it existed)
    runs: tuple

    @property
    def words(self) -> str:
        return changes_words(json.loads(self.changes))

    @property
    def group(self) -> str:
        return self.runs[0].data.tags.get(Tag.CONFIG_GROUP, "")

    def count(self, status: str) -> int:
        return sum(run.info.status == status for run in self.runs)


@dataclass(frozen=True)
class Effect:
    """The figure a rule set out to lower, before (the original's runs) and after (the follow-up's), as fractions;
    Welch's test where both sides have two values or more."""

    metric: str
    before: tuple[float, ...]
    after: tuple[float, ...]

    @property
    def test(self) -> stats.GroupComparison | None:
        if len(self.before) < 2 or len(self.after) < 2:
            return None
        return stats.compare_groups(self.before, self.after)

    @property
    def lowered(self) -> bool:
        found = self.test
        return found is not None and found.p_value < stats.ALPHA and found.difference.estimate < 0

    def words(self) -> str:
        """'variance 7.10 → 2.30 pp (p = 0.004)', 'training time 61.2 → 35.0 s (p = 0.01)'."""
        name, scale, unit = FIGURE_WORDS.get(self.metric, (self.metric.replace("_", " "), 100, "pp"))
        before, after = np.mean(self.before) * scale, np.mean(self.after) * scale
        found = self.test
        p = f" ({stats.p_text(found.p_value)})" if found else " (a side of one run: no test)"
        return f"{name} {before:.2f} → {after:.2f} {unit}{p}"


@dataclass(frozen=True)
class Judgement:
    """A follow-up against the original configuration: compare's answer on test accuracy, the effect on the
    rule's figure, and the outcome in one word (HELPED, HURT, NO_EFFECT, PENDING)."""

    follow_up: FollowUp
    original_group: str
    outcome: str
    accuracy: Answer | None = None
    original: Side | None = None
    side: Side | None = None
    effect: Effect | None = None
    why_not: str = ""  # why it is not judged yet

    def accuracy_words(self) -> str:
        """'test accuracy +1.20 ± 0.40 pp (p = 0.01)', as compare finds it."""
        answer = self.accuracy
        if answer is None or answer.difference is None:
            return answer.sentence if answer else ""
        d = answer.difference
        margin = "" if math.isnan(d.half_width) else f"95% CI ± {d.half_width * 100:.2f} pp, "
        return f"test accuracy {d.estimate * 100:+.2f} pp ({margin}{stats.p_text(answer.p_value)})"

    @property
    def heading(self) -> str:
        """'dropout-up, dropout 0.3 (group:HASH)': the follow-up's rule, its change and its config group."""
        return f"{self.follow_up.rule}, {self.follow_up.words} ({GROUP_PREFIX}{self.follow_up.group})"

    def findings(self) -> str:
        """The rule's figure and test accuracy, then the outcome (and why, for an outcome without a test); or why it
        is not judged yet."""
        if self.outcome == PENDING:
            return f"{PENDING} ({self.why_not})"
        figures = "; ".join(part for part in (self.effect and self.effect.words(), self.accuracy_words()) if part)
        why = f" ({self.why_not})" if self.why_not else ""
        return f"{self.seeds_words()}{figures + ': ' if figures else ''}{self.outcome}{why}{self.seeds_needed()}"

    def seeds_words(self) -> str:
        """'3 seeds against the original's 2: ', what the means and the test rest on."""
        if not self.side:
            return ""
        against = f" against the original's {self.original.n}" if self.original else ""
        return f"{self.side.n} seed{'s' * (self.side.n != 1)}{against}: "

    def sentence(self) -> str:
        return f"{self.heading}: {self.findings()}"

    def seeds_needed(self) -> str:
        """For no detectable effect over seeds: how many seeds per side would resolve the difference seen."""
        if self.outcome != NO_EFFECT or not self.original or not self.side or min(self.original.n, self.side.n) < 2:
            return ""
        target, needed = seeds_to_resolve(self.original, self.side)
        return f" (about {needed} seeds per side would resolve {target * 100:.2f} pp)" if needed else ""


def follow_ups(client, target: str | None = None) -> list[FollowUp]:
    """The follow-ups of `target` (a run id or group:HASH), or of every target in the store, in the order trained."""
    where = f"tags.{Tag.ADVICE_OF} = '{target}'" if target else f"tags.{Tag.ADVICE_OF} LIKE '%'"
    found: dict[tuple, list] = {}
    for run in sorted(search_all(client, where), key=lambda run: run.info.start_time):
        tags = run.data.tags
        key = (tags[Tag.ADVICE_OF], tags.get(Tag.ADVICE_RULE, "?"), tags.get(Tag.ADVICE_CHANGES, "{}"))
        found.setdefault(key, []).append(run)
    return [FollowUp(*key, diagnosis_of(runs), tuple(runs)) for key, runs in found.items()]


def diagnosis_of(runs: list) -> str:
    """The diagnosis the follow-up's runs were tagged with ('' for runs tagged before advice_diagnosis)."""
    return next((d for run in runs if (d := run.data.tags.get(Tag.ADVICE_DIAGNOSIS))), "")


def original_group(client, target: str) -> str:
    """The config group of the configuration advice follows: the group named, or the run's own."""
    if target.startswith(GROUP_PREFIX):
        return target[len(GROUP_PREFIX) :]
    try:
        return client.get_run(target).data.tags.get(Tag.CONFIG_GROUP, "")
    except MlflowException:  # deleted since: its follow-ups cannot be judged against it
        return ""


def final_values(runs: list, metric: str) -> tuple[float, ...]:
    """Each run's last logged value of `metric` (the last epoch's), where it has one."""
    return tuple(run.data.metrics[metric] for run in runs if metric in run.data.metrics)


def judge(client, follow_up: FollowUp, original: str) -> Judgement:
    """The follow-up against the original configuration's group `original`, once none of its runs is RUNNING. An
    original that diverged at every seed, or a follow-up that did, has no test accuracy: that the other trains is
    the answer."""
    if follow_up.count("RUNNING"):
        return Judgement(follow_up, original, PENDING, why_not=f"{follow_up.count('RUNNING')} runs still training")
    try:
        after_side, after_runs = group_side(client, follow_up.group)
    except ComparisonError as err:
        if all(Tag.DIVERGED_AT_STEP in run.data.tags for run in follow_up.runs):
            return Judgement(follow_up, original, HURT, why_not="it diverged at every seed")
        return Judgement(follow_up, original, PENDING, why_not=str(err))
    try:
        before_side, before_runs = group_side(client, original)
    except ComparisonError:
        return Judgement(follow_up, original, HELPED, side=after_side, why_not="it trains where the original diverged")
    answer = which_is_better(before_side, after_side)
    metric = MEASURES.get(follow_up.rule)
    effect = Effect(metric, final_values(before_runs, metric), final_values(after_runs, metric)) if metric else None
    if effect is not None and not (effect.before and effect.after):
        effect = None  # runs logged without the figure
    outcome = outcome_of(answer, effect, before_side, after_side)
    return Judgement(follow_up, original, outcome, answer, before_side, after_side, effect)


def outcome_of(accuracy: Answer, effect: Effect | None, before: Side, after: Side) -> str:
    """HURT when test accuracy fell beyond chance; HELPED when it rose, or the rule's figure fell, beyond chance;
    UNTESTED where the sides allow no test (one run against a group); else NO_EFFECT."""
    if accuracy.p_value is None:
        return HELPED if effect is not None and effect.lowered else UNTESTED
    difference = float(np.mean(after.test_accs) - np.mean(before.test_accs))  # McNemar gives no interval
    if accuracy.significant and difference < 0:
        return HURT
    if (accuracy.significant and difference > 0) or (effect is not None and effect.lowered):
        return HELPED
    return NO_EFFECT


def judgements(client, target: str | None = None) -> list[Judgement]:
    """Every follow-up of `target` (or of the whole store) but the original's own seeds, judged."""
    groups: dict[str, str] = {}
    found = []
    for follow_up in follow_ups(client, target):
        if follow_up.rule == BASELINE:
            continue
        if follow_up.target not in groups:
            groups[follow_up.target] = original_group(client, follow_up.target)
        found.append(judge(client, follow_up, groups[follow_up.target]))
    return found

"""Advice's follow-ups as tables: each verdict in a row, and each rule's record over the store (which advice works
on these models). Pure functions of core.follow_ups' judgements."""

import pandas as pd

from core.comparison import GROUP_PREFIX
from core.follow_ups import HELPED, HURT, NO_EFFECT, PENDING, Judgement

OUTCOMES = (HELPED, NO_EFFECT, HURT)  # those a rule's record counts: judged with a test


def status_words(statuses: list[str]) -> str:
    """'3 finished', '2 finished, 1 running', in the order runs go through them; empty for none."""
    order = ("FINISHED", "RUNNING", "KILLED", "FAILED")
    return ", ".join(f"{statuses.count(status)} {status.lower()}" for status in order if status in statuses)


def target_words(target: str, names: dict[str, str]) -> str:
    """What advice followed, as a person reads it: the run's name, or the config group."""
    if target.startswith(GROUP_PREFIX):
        return f"config group {target.removeprefix(GROUP_PREFIX)[:10]}"
    return names.get(target, target[:8])


def verdict_frame(judgements: list[Judgement], names: dict[str, str]) -> pd.DataFrame:
    """One row per follow-up: what it followed (`names`: run id -> name), what it changed, its runs, the rule's
    figure before and after, test accuracy against the original (compare's test) and the verdict."""
    rows = []
    for judged in judgements:
        follow_up = judged.follow_up
        rows.append(
            {
                "followed": target_words(follow_up.target, names),
                "diagnosis": follow_up.diagnosis,
                "follow-up": f"{follow_up.rule}: {follow_up.words}",
                "verdict": judged.outcome if judged.outcome != PENDING else f"{PENDING}: {judged.why_not}",
                "rule's figure": judged.effect.words() if judged.effect else "",
                "test accuracy": judged.accuracy_words().removeprefix("test accuracy "),
                "to resolve": judged.seeds_needed().strip(" ()"),
                "runs": status_words([run.info.status for run in follow_up.runs]),
                "group": follow_up.group,
            }
        )
    return pd.DataFrame(rows)


def rule_record(judgements: list[Judgement]) -> pd.DataFrame:
    """Per rule: how often it was tried (follow-ups judged with a test) and how often it helped, made no
    detectable difference or hurt; the rules that helped most often first."""
    judged = [j for j in judgements if j.outcome in OUTCOMES]
    if not judged:
        return pd.DataFrame(columns=["rule", "tried", *OUTCOMES])
    frame = pd.DataFrame({"rule": [j.follow_up.rule for j in judged], "outcome": [j.outcome for j in judged]})
    table = pd.crosstab(frame["rule"], frame["outcome"]).reindex(columns=list(OUTCOMES), fill_value=0)
    table.insert(0, "tried", table.sum(axis=1))
    return table.sort_values([HELPED, "tried"], ascending=False).reset_index()


def touching(judgements: list[Judgement], run_ids: list[str], groups: set[str]) -> list[Judgement]:
    """The verdicts a set of runs takes part in: those of follow-ups among the runs, or where none is, those of
    advice that followed one of the runs or their configuration (config group)."""
    chosen = set(run_ids)
    follow_ups = [j for j in judgements if chosen & {run.info.run_id for run in j.follow_up.runs}]
    return follow_ups or [j for j in judgements if j.follow_up.target in chosen or j.original_group in groups]

"""`python -m experiments advise RUN_OR_GROUP`: the follow-up experiments core.advice proposes for a run's or a
config group's diagnosis, printed as a suite spec; with --run, trained over seeds, tagged with what they follow
(advice_of, advice_rule), then each compared with the original configuration over the same seeds.

A single run is judged against a group of seeds only once its own configuration has them too, so --run first trains
the original configuration's missing seeds (rule "baseline").
"""

import json
import os
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from mlflow.exceptions import MlflowException

from core.advice import AdviceError, Proposal, Situation
from core.comparison import GROUP_PREFIX, finished_group_runs, read_side, report, which_is_better
from core.datasets import DATASETS
from core.diagnosis import Verdict, Yardstick, best_error_for, verdict
from core.schema import Artifact, Metric, Param, Tag
from core.settings import SETTINGS, SWEEPABLE, ConfigError, is_model_reference
from core.store import search_all
from experiments.config import RunConfig
from experiments.models import MODELS, REGISTRY_DATA
from experiments.run import check, execute
from experiments.train import Diverged

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no download bar for one small file
BASELINE = "baseline"  # the rule tag of the original configuration's own missing seeds


@dataclass(frozen=True)
class Followed:
    """The run or group advice follows: its configuration (the first run's, any seed) and its situation."""

    target: str
    label: str
    group: str
    seeds: tuple[int, ...]  # the seeds of its FINISHED runs
    base: RunConfig
    situation: Situation


def target_runs(client, target: str) -> list:
    """The FINISHED runs of `group:HASH`, or the one run `target` names."""
    if target.startswith(GROUP_PREFIX):
        group = target[len(GROUP_PREFIX) :]
        runs = finished_group_runs(client, group)
        if not runs:
            raise AdviceError(f"{target}: no FINISHED run carries config_group {group!r}")
        return runs
    try:
        run = client.get_run(target)
    except MlflowException as err:
        raise AdviceError(f"{target}: no such run in the tracking store ({err.message.splitlines()[0]})") from err
    if run.info.status != "FINISHED" and Tag.DIVERGED_AT_STEP not in run.data.tags:
        raise AdviceError(f"{target}: the run is {run.info.status}; advice follows a finished or diverged run")
    return [run]


def run_verdict(client, run) -> Verdict:
    """The run's diagnosis as the dashboard derives it: its last epoch's bias and variance with their intervals."""
    params = run.data.params
    history = {
        name: {point.step: point.value for point in client.get_metric_history(run.info.run_id, name)}
        for name in (Metric.TRAIN_ACC, Metric.VAL_ACC)
    }
    yardstick = Yardstick(
        best_error_for(params.get(Param.DATASET), params.get(Param.BEST_ERROR)),
        int(params.get(Param.TRAIN_EVAL_SIZE) or 0) or None,
        int(params.get(Param.VAL_SIZE) or 0) or None,
    )
    found = verdict(pd.DataFrame(history), yardstick, diverged=Tag.DIVERGED_AT_STEP in run.data.tags)
    if found is None:
        raise AdviceError(f"run {run.info.run_id}: no epoch with both a train and a validation accuracy to judge")
    return found


def stored_config(client, run) -> RunConfig:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            stored = json.loads(Path(client.download_artifacts(run.info.run_id, Artifact.CONFIG, tmp)).read_text())
        except (MlflowException, OSError) as err:
            raise AdviceError(
                f"run {run.info.run_id}: no {Artifact.CONFIG} (logged by another tool?), so its settings are unknown"
            ) from err
    return RunConfig.from_dict(stored, f"run {run.info.run_id}'s {Artifact.CONFIG}")


def pytorch_params(name: str) -> int:
    return sum(p.numel() for p in MODELS[name].build(framework="pytorch").parameters())


def bigger_model(config: RunConfig, params_total: float | None) -> str | None:
    """The registry's PyTorch model with the fewest parameters above this run's, for a registry PyTorch model on
    a registry dataset (28x28 grey images); None otherwise."""
    if is_model_reference(config.model) or config.dataset not in DATASETS or not params_total:
        return None
    if MODELS[config.model].framework_of(config.framework) != "pytorch":
        return None
    larger = {
        name: count
        for name, spec in MODELS.items()
        if "pytorch" in spec.frameworks
        and spec.data == REGISTRY_DATA
        and (count := pytorch_params(name)) > params_total
    }
    return min(larger, key=larger.get) if larger else None


def followed(client, target: str) -> Followed:
    """What advice follows: the target's runs, their shared diagnosis and what their model can honour."""
    runs = target_runs(client, target)
    verdicts = [run_verdict(client, run) for run in runs]
    diagnoses = sorted({v.diagnosis for v in verdicts})
    if len(diagnoses) > 1:
        counts = ", ".join(f"{sum(v.diagnosis == d for v in verdicts)} {d}" for d in diagnoses)
        raise AdviceError(f"{target}: its runs' diagnoses differ ({counts}); advise one of its runs instead")
    first = runs[0]
    base = stored_config(client, first)
    spec = MODELS.get(base.model)
    framework = spec.framework_of(base.framework) if spec else None
    logged_dropout = first.data.params.get(Param.DROPOUT, "none")
    variance = [v.figures[1].settling_factor for v in verdicts if v.figures[1].settling_factor]
    situation = Situation(
        settings=base.as_dict(),
        diagnosis=diagnoses[0],
        best_epoch=round(sum(v.best_epoch for v in verdicts) / len(verdicts)),
        epochs_trained=max(v.epochs_trained for v in verdicts),
        train_pool=DATASETS[base.dataset].train_images if base.dataset in DATASETS else None,
        dropout_layers=framework in SETTINGS["dropout"].frameworks and logged_dropout not in ("none", "None", ""),
        scalable=bool(spec) and framework in spec.scalable,
        bigger_model=bigger_model(base, first.data.metrics.get(Metric.PARAMS_TOTAL)) if spec else None,
        val_settling=min(variance) if variance else None,
    )
    name = first.info.run_name if len(runs) == 1 else f"{seedless_name(base)} over {len(runs)} seeds"
    return Followed(
        target,
        f"{name} ({target if target.startswith(GROUP_PREFIX) else target[:8]})",
        first.data.tags.get(Tag.CONFIG_GROUP, ""),
        tuple(sorted(int(run.data.params.get(Param.SEED, 0)) for run in runs)),
        base,
        situation,
    )


def seedless_name(config: RunConfig) -> str:
    """The run name without the '-seedN' that `--repeats` adds, for names of more seeds or of follow-ups."""
    return re.sub(r"-seed\d+$", "", config.name())


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def inline_table(values: dict) -> str:
    return "{ " + ", ".join(f"{key} = {toml_value(value)}" for key, value in values.items()) + " }"


def fixed_settings(base: RunConfig) -> dict:
    """What every follow-up keeps: the configuration's sweepable settings, seed aside, where they differ from the
    model's recipe (both validation splits always: either replaces the recipe's kind), for its framework."""
    recipe = RunConfig.from_recipe(base.model).as_dict()
    framework = MODELS[base.model].framework_of(base.framework) if base.model in MODELS else "pytorch"
    return {
        name: value
        for name, value in base.as_dict().items()
        if name in SWEEPABLE
        and name != "seed"
        and value is not None
        and (value != recipe[name] or name in ("model", "val_split", "val_from_test"))
        and (not SETTINGS[name].frameworks or framework in SETTINGS[name].frameworks)
    }


def spec_text(follow: Followed, proposals: list[Proposal], seeds: int) -> str:
    """The proposals as a list spec that `suite` runs (without the advice tags, which only --run adds)."""
    lines = [
        f"# Follow-ups of {follow.label}: {follow.situation.diagnosis}.",
        f"# Train them with `python -m experiments advise {follow.target} --run` (tagged advice_of, advice_rule),",
        "# or as a suite of this file.",
        'method = "list"',
        f'name = "advice-{follow.target.removeprefix(GROUP_PREFIX)[:8]}"',
        'run_name = "{name}-{index:02d}"',
        f"fixed = {inline_table({**fixed_settings(follow.base), 'seed': min(follow.seeds), 'repeats': seeds})}",
        "runs = [",
    ]
    for proposal in proposals:
        lines.append(f"  # {proposal.rule}: expects {proposal.expects}")
        lines.extend(f"  {inline_table(run)}," for run in proposal.runs)
    return "\n".join([*lines, "]"]) + "\n"


@dataclass(frozen=True)
class Planned:
    """One follow-up run to train: its configuration and the rule it answers."""

    config: RunConfig
    rule: str
    changes: str = ""  # the settings changed, in words ("lr 0.003")


def planned_runs(follow: Followed, proposals: list[Proposal], seeds: int) -> list[Planned]:
    """The original configuration's missing seeds, then each proposal's runs over the same seeds, checked."""
    first = min(follow.seeds)
    name = seedless_name(follow.base)
    base = replace(follow.base, suite=None, repeats=1)

    wanted = range(first, first + seeds)
    plan = [
        Planned(replace(base, seed=seed, run_name=f"{name}-seed{seed}"), BASELINE)
        for seed in wanted
        if seed not in follow.seeds
    ]
    for proposal in proposals:
        for number, changes in enumerate(proposal.runs, start=1):
            variant = f"{proposal.rule}{number if len(proposal.runs) > 1 else ''}"
            for seed in wanted:
                config = replace(base, **changes, seed=seed, run_name=f"{name}-{variant}-seed{seed}")
                try:
                    check(config)
                except ConfigError as err:
                    raise AdviceError(f"rule {proposal.rule}: {err}") from err
                plan.append(Planned(config, variant, ", ".join(f"{k} {v}" for k, v in changes.items())))
    return plan


def trained_before(client, follow: Followed) -> dict[tuple[str, int], str]:
    """The follow-ups of this target already FINISHED: (rule, seed) -> their config group, so a second --run trains
    only what is missing."""
    runs = search_all(client, f"tags.{Tag.ADVICE_OF} = '{follow.target}' and attributes.status = 'FINISHED'")
    return {
        (run.data.tags[Tag.ADVICE_RULE], int(run.data.params.get(Param.SEED, 0))): run.data.tags[Tag.CONFIG_GROUP]
        for run in runs
        if Tag.ADVICE_RULE in run.data.tags and Tag.CONFIG_GROUP in run.data.tags
    }


def train_follow_ups(
    follow: Followed, plan: list[Planned], done: dict[tuple[str, int], str], on_result, on_diverged
) -> dict[str, str]:
    """Train every planned run not in `done` (trained_before); returns each rule's config group. A run that
    diverges is logged FAILED and the others go on."""
    groups = {BASELINE: follow.group}
    for item in plan:
        key = (item.rule, item.config.seed)
        if key in done:
            groups[item.rule] = done[key]
            continue
        tags = {Tag.ADVICE_OF: follow.target, Tag.ADVICE_RULE: item.rule}
        try:
            result = execute(item.config, tags=tags)
        except Diverged as err:
            on_diverged(item, err)
            continue
        on_result(item, result)
        groups[item.rule] = result.group
    return groups


def verdict_lines(client, groups: dict[str, str], plan: list[Planned]) -> list[str]:
    """Each follow-up against the original configuration over the same seeds, with the product's test."""
    original = read_side(client, f"{GROUP_PREFIX}{groups[BASELINE]}")
    changes = {item.rule: item.changes for item in plan}
    lines = []
    for rule, group in groups.items():
        if rule == BASELINE:
            continue
        side = read_side(client, f"{GROUP_PREFIX}{group}")
        lines.append(f"\n{rule}, {changes[rule]} (group:{group}), against the original (group:{groups[BASELINE]}):")
        lines.append(report(original, side, which_is_better(original, side)))
    return lines

"""`python -m experiments advise RUN_OR_GROUP`: the follow-up experiments core.advice proposes for a run's or a
config group's diagnosis, printed as a suite spec; with --run, trained over seeds, tagged with what they follow
(advice_of, advice_rule, advice_changes), then each compared with the original configuration's group.

A single run is judged against a group of seeds only once its own configuration has them too, so --run first trains
the original configuration's missing seeds (rule "baseline"), unless it diverged.
"""

import json
import os
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from mlflow.exceptions import MlflowException

from core.advice import AdviceError, Proposal, Situation, changes_words
from core.comparison import GROUP_PREFIX, finished_group_runs, report
from core.datasets import DATASETS
from core.diagnosis import DIVERGED, Verdict, Yardstick, best_error_for, verdict
from core.follow_ups import BASELINE, PENDING, judgements
from core.schema import Artifact, Metric, Param, Tag
from core.settings import SETTINGS, SWEEPABLE, ConfigError
from core.store import search_all
from experiments.config import RunConfig
from experiments.models import MODELS, REGISTRY_DATA
from experiments.run import check, execute, resume
from experiments.specs import toml_inline
from experiments.train import Diverged
from experiments.user_models import model_spec

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no download bar for one small file


@dataclass(frozen=True)
class Followed:
    """The run or group advice follows: its configuration (the first run's, any seed), the seeds its config group
    has FINISHED, and its situation."""

    target: str
    label: str
    group: str
    seeds: tuple[int, ...]
    base: RunConfig
    situation: Situation


@dataclass(frozen=True)
class Variant:
    """One configuration a follow-up trains: the rule and the settings it changes (none for the baseline)."""

    rule: str
    changes: tuple[tuple[str, object], ...] = ()  # (setting, value) pairs: hashable, one variant one key

    @property
    def key(self) -> str:
        return json.dumps(dict(self.changes), sort_keys=True)

    def words(self) -> str:
        return changes_words(dict(self.changes))


@dataclass(frozen=True)
class Planned:
    """One follow-up run to train."""

    config: RunConfig
    variant: Variant

    @property
    def done_key(self) -> tuple[str, str, int]:
        return self.variant.rule, self.variant.key, self.config.seed


def target_runs(client, target: str) -> list:
    """The runs advice judges: a config group's FINISHED runs not trained by advice itself (so a second --run
    judges what the first did), or the one run `target` names (FINISHED, or FAILED by diverging)."""
    if target.startswith(GROUP_PREFIX):
        group = target[len(GROUP_PREFIX) :]
        if not re.fullmatch(r"[0-9a-f]+", group):
            raise AdviceError(f"{target}: a config group is a hexadecimal hash (the config_group tag)")
        runs = [run for run in finished_group_runs(client, group) if Tag.ADVICE_OF not in run.data.tags]
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


def run_verdict(client, run) -> Verdict | None:
    """The run's diagnosis as the dashboard derives it (its last epoch's bias and variance with their intervals);
    None for a run that diverged before any epoch was judged."""
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
    diverged = Tag.DIVERGED_AT_STEP in run.data.tags
    found = verdict(pd.DataFrame(history), yardstick, diverged=diverged)
    if found is None and not diverged:
        raise AdviceError(f"run {run.info.run_id}: no epoch with both a train and a validation accuracy to judge")
    return found


def stored_config(client, run) -> RunConfig:
    """The run's whole configuration as the runner stored it; refused for a run the runner did not train."""
    not_ours = f"run {run.info.run_id} was not trained by `python -m experiments`, so its settings are unknown"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            stored = json.loads(Path(client.download_artifacts(run.info.run_id, Artifact.CONFIG, tmp)).read_text())
        except (MlflowException, OSError, ValueError) as err:
            raise AdviceError(f"{not_ours} (no {Artifact.CONFIG})") from err
    try:
        return RunConfig.from_dict(stored, f"run {run.info.run_id}'s {Artifact.CONFIG}")
    except (TypeError, ConfigError) as err:
        raise AdviceError(f"{not_ours} ({err})") from err


def pytorch_params(name: str) -> int:
    return sum(p.numel() for p in MODELS[name].build(framework="pytorch").parameters())


def bigger_model(config: RunConfig, params_total: float | None) -> str | None:
    """The registry's PyTorch model with the fewest parameters above this run's, for a registry PyTorch model on
    a registry dataset (28x28 grey images); None otherwise."""
    if config.model not in MODELS or config.dataset not in DATASETS or not params_total:
        return None  # your own model, or your own data: the registry's models may not take it
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


def dropout_rate(logged: str | None, framework: str | None) -> float | None:
    """The highest rate of the model's dropout layers as logged ('0.25,0.5'), where the setting `dropout` can
    change them; None for a model without any."""
    if not SETTINGS["dropout"].applies_to(framework):
        return None
    try:
        rates = [float(rate) for rate in str(logged).split(",")]
    except ValueError:  # 'none': the model has no dropout layers
        return None
    return max(rates)


def followed(client, target: str) -> Followed:
    """What advice follows: the target's runs, their shared diagnosis and what their model can honour."""
    runs = target_runs(client, target)
    verdicts = [run_verdict(client, run) for run in runs]
    diagnoses = sorted({v.diagnosis if v else DIVERGED for v in verdicts})
    if len(diagnoses) > 1:
        counts = ", ".join(f"{sum((v.diagnosis if v else DIVERGED) == d for v in verdicts)} {d}" for d in diagnoses)
        raise AdviceError(f"{target}: its runs' diagnoses differ ({counts}); advise one of its runs instead")
    judged = [v for v in verdicts if v]
    first = runs[0]
    base = stored_config(client, first)
    spec = model_spec(base.model)
    framework = spec.framework_of(base.framework)
    settling = [v.figures[1].settling_factor for v in judged if v.figures[1].settling_factor]
    situation = Situation(
        settings=base.as_dict(),
        diagnosis=diagnoses[0],
        best_epoch=round(sum(v.best_epoch for v in judged) / len(judged)) if judged else 0,
        epochs_trained=max((v.epochs_trained for v in judged), default=0),
        train_pool=DATASETS[base.dataset].train_images if base.dataset in DATASETS else None,
        dropout_rate=dropout_rate(first.data.params.get(Param.DROPOUT), framework),
        takes_weight_decay=SETTINGS["weight_decay"].applies_to(framework),
        scalable=framework in spec.scalable,
        bigger_model=bigger_model(base, first.data.metrics.get(Metric.PARAMS_TOTAL)),
        val_settling=max(settling) if settling else None,  # what settles every run's figure
    )
    group = first.data.tags.get(Tag.CONFIG_GROUP, "")
    seeds = {int(run.data.params.get(Param.SEED, 0)) for run in [*runs, *finished_group_runs(client, group)]}
    name = first.info.run_name if len(runs) == 1 else f"{seedless_name(base)} over {len(runs)} seeds"
    shown = target if target.startswith(GROUP_PREFIX) else target[:8]
    return Followed(target, f"{name} ({shown})".replace("\n", " "), group, tuple(sorted(seeds)), base, situation)


def seedless_name(config: RunConfig) -> str:
    """The run name without the '-seedN' that `--repeats` adds, for names of more seeds or of follow-ups."""
    return re.sub(r"-seed\d+$", "", config.name())


def fixed_settings(base: RunConfig) -> dict:
    """What every follow-up keeps: every sweepable setting of the configuration that is set, seed aside, for its
    framework. All of them, not only those off the recipe: a follow-up of another model keeps them too."""
    framework = model_spec(base.model).framework_of(base.framework)
    return {
        name: value
        for name, value in base.as_dict().items()
        if name in SWEEPABLE and name != "seed" and value is not None and SETTINGS[name].applies_to(framework)
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
        f"fixed = {toml_inline({**fixed_settings(follow.base), 'seed': min(follow.seeds), 'repeats': seeds})}",
        "runs = [",
    ]
    for proposal in proposals:
        lines.append(f"  # {proposal.rule}: expects {proposal.expects}")
        lines.extend(f"  {toml_inline(run)}," for run in proposal.runs)
    return "\n".join([*lines, "]"]) + "\n"


def planned_runs(follow: Followed, proposals: list[Proposal], seeds: int) -> list[Planned]:
    """The original configuration's missing seeds (not for one that diverged), then each proposal's runs over the
    same seeds, each checked before anything trains."""
    first = min(follow.seeds)
    name = seedless_name(follow.base)
    base = replace(follow.base, suite=None, repeats=1)
    wanted = range(first, first + seeds)
    original = Variant(BASELINE)
    plan = [
        Planned(replace(base, seed=seed, run_name=f"{name}-seed{seed}"), original)
        for seed in wanted
        if seed not in follow.seeds and follow.situation.diagnosis != DIVERGED
    ]
    for proposal in proposals:
        for number, changes in enumerate(proposal.runs, start=1):
            variant = Variant(proposal.rule, tuple(changes.items()))
            label = f"{proposal.rule}{number if len(proposal.runs) > 1 else ''}"
            for seed in wanted:
                config = replace(base, **changes, seed=seed, run_name=f"{name}-{label}-seed{seed}")
                try:
                    check(config)
                except ConfigError as err:
                    raise AdviceError(f"rule {proposal.rule}: {err}") from err
                plan.append(Planned(config, variant))
    return plan


def trained_before(client, follow: Followed) -> tuple[dict[tuple[str, str, int], str], dict[tuple[str, str, int], str]]:
    """The follow-ups of this target already trained, (rule, changes, seed) -> config group (FINISHED, or FAILED by
    diverging: it would again), and those stopped on the way, (rule, changes, seed) -> run id (KILLED, or FAILED
    otherwise): a second --run trains only what is missing and resumes what was stopped."""
    done, stopped = {}, {}
    runs = search_all(client, f"tags.{Tag.ADVICE_OF} = '{follow.target}'")
    for run in sorted(runs, key=lambda run: run.info.start_time):  # the newest stopped run of a key is resumed
        tags = run.data.tags
        if Tag.ADVICE_RULE not in tags or Tag.CONFIG_GROUP not in tags:
            continue
        key = (tags[Tag.ADVICE_RULE], tags.get(Tag.ADVICE_CHANGES, "{}"), int(run.data.params.get(Param.SEED, 0)))
        if run.info.status == "FINISHED" or Tag.DIVERGED_AT_STEP in tags:
            done[key] = tags[Tag.CONFIG_GROUP]
        elif run.info.status in ("KILLED", "FAILED"):
            stopped[key] = run.info.run_id
    return done, {key: run_id for key, run_id in stopped.items() if key not in done}


def train_one(item: Planned, follow: Followed, stopped: dict[tuple[str, str, int], str]):
    """A follow-up run: the stopped one of the same rule, changes and seed resumed from its checkpoint, else a new
    run tagged with what it follows."""
    if item.done_key in stopped:
        try:
            return resume(stopped[item.done_key], progress=item.config.progress)[1]
        except ConfigError as err:  # stopped before its first checkpoint: a new run instead
            print(f"# {err}; training it afresh", flush=True)
    tags = {
        Tag.ADVICE_OF: follow.target,
        Tag.ADVICE_RULE: item.variant.rule,
        Tag.ADVICE_CHANGES: item.variant.key,
        Tag.ADVICE_DIAGNOSIS: follow.situation.diagnosis,
    }
    return execute(item.config, tags=tags)


def train_follow_ups(
    follow: Followed,
    plan: list[Planned],
    trained: tuple[dict[tuple[str, str, int], str], dict[tuple[str, str, int], str]],
    on_result,
    on_diverged,
) -> None:
    """Train every planned run not done before (trained_before), resuming those stopped on the way. A run that
    diverges is logged FAILED and the others go on."""
    done, stopped = trained
    for item in plan:
        if item.done_key in done:
            continue
        try:
            result = train_one(item, follow, stopped)
        except Diverged as err:
            on_diverged(item, err)
            continue
        on_result(item, result)


def verdict_lines(client, follow: Followed) -> list[str]:
    """Each follow-up of the target in the store against the original configuration's group: compare's own report
    on test accuracy, the figure its rule set out to lower, and the outcome (core.follow_ups)."""
    lines = []
    for judged in judgements(client, follow.target):
        if judged.outcome == PENDING or judged.accuracy is None:
            lines.append(f"\n{judged.sentence()}")
            continue
        lines.append(f"\n{judged.heading}, against the original ({GROUP_PREFIX}{judged.original_group}):")
        lines.append(report(judged.original, judged.side, judged.accuracy))
        if judged.effect:
            lines.append(judged.effect.words())
        lines.append(f"verdict: {judged.outcome}{judged.seeds_needed()}")
    return lines


def missing_runs(plan: list[Planned], trained: tuple[dict, dict]) -> int:
    """How many planned runs are not trained yet (those stopped on the way count: they are resumed)."""
    return sum(item.done_key not in trained[0] for item in plan)


def advice_record(
    follow: Followed, proposals: list[Proposal], plan: list[Planned], trained: tuple[dict, dict], seeds: int
) -> dict:
    """The advice as the dashboard shows it (advise --json): what it follows, the proposals, the spec, and how
    many runs a --run would train now."""
    done, stopped = trained
    return {
        "target": follow.target,
        "label": follow.label,
        "experiment": follow.base.experiment,
        "diagnosis": follow.situation.diagnosis,
        "proposals": [
            {"rule": p.rule, "runs": [changes_words(run) for run in p.runs], "expects": p.expects, "why": p.why}
            for p in proposals
        ],
        "spec": spec_text(follow, proposals, seeds) if proposals else "",
        "runs": len(plan),
        "missing": missing_runs(plan, trained),
        "resumed": sum(item.done_key in stopped for item in plan if item.done_key not in done),
    }

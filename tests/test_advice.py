"""Advice: each rule of core.advice on the case it answers and on the cases its model or data cannot honour, and
`advise` on the command line: a spec `suite` accepts, follow-ups trained over seeds and tagged, a verdict that
agrees with `compare`, a second --run that trains nothing, and a bound on the runs."""

import re
import tomllib

import pytest

from core.advice import RULES, Situation, propose
from core.diagnosis import BOTH, DIVERGED, GOOD_FIT, HIGH_BIAS, HIGH_VARIANCE, INCONCLUSIVE
from core.schema import Tag
from core.settings import SWEEPABLE, ConfigError
from core.store import search_all
from experiments.adapters.torch_adapter import TorchAdapter
from experiments.advise import dropout_rate
from experiments.config import RunConfig
from experiments.run import check
from experiments.specs import Spec, suite_configs, toml_inline
from experiments.user_models import model_spec
from tests.helpers import cli_in_process


def situation(diagnosis: str, **changes) -> Situation:
    """A conv-conv-like configuration trained 30 epochs on 1,000 of MNIST's images, best at epoch 18."""
    values = dict(
        settings={"lr": 0.001, "dropout": 0.0, "train_size": 1000, "val_split": 0.2, "width": None},
        diagnosis=diagnosis,
        best_epoch=18,
        epochs_trained=30,
        train_pool=60_000,
        dropout_rate=0.0,
        takes_weight_decay=True,
        scalable=True,
        bigger_model=None,
    )
    settings = {**values["settings"], **changes.pop("settings", {})}
    return Situation(**{**values, **changes, "settings": settings})


def advised(found) -> dict[str, list[dict]]:
    return {proposal.rule: list(proposal.runs) for proposal in propose(found)}


@pytest.mark.parametrize(
    "case, expected",
    [
        (  # overfit, with dropout layers, no weight decay, part of the data, past its best epoch: all four
            situation(HIGH_VARIANCE),
            {
                "dropout-up": [{"dropout": 0.3}],
                "weight-decay": [{"weight_decay": 5e-4}],
                "more-data": [{"train_size": 2000}],
                "stop-at-best": [{"epochs": 18}],
            },
        ),
        (  # weight decay at 5e-3 already: ten times more would pass 0.01, so none
            situation(HIGH_VARIANCE, settings={"weight_decay": 5e-3}, dropout_rate=None, best_epoch=30),
            {"more-data": [{"train_size": 2000}]},
        ),
        (  # weight decay at 5e-4: ten times more
            situation(HIGH_VARIANCE, settings={"weight_decay": 5e-4}, dropout_rate=None, best_epoch=30),
            {"weight-decay": [{"weight_decay": 0.005}], "more-data": [{"train_size": 2000}]},
        ),
        (  # no dropout layers to set, every training image taken, best at the last epoch: nothing it can honour
            situation(
                HIGH_VARIANCE,
                dropout_rate=None,
                takes_weight_decay=False,
                settings={"train_size": None},
                best_epoch=30,
                epochs_trained=30,
            ),
            {},
        ),
        (  # a layer at 0.5 already (conv-conv's own 0.25 and 0.5); your own data, of unknown size, cannot be doubled
            situation(HIGH_VARIANCE, dropout_rate=0.5, takes_weight_decay=False, train_pool=None),
            {"stop-at-best": [{"epochs": 18}]},
        ),
        (  # all but 1.1x of MNIST's training images taken: too little more to learn from
            situation(HIGH_VARIANCE, settings={"train_size": 55_000}, takes_weight_decay=False),
            {"dropout-up": [{"dropout": 0.3}], "stop-at-best": [{"epochs": 18}]},
        ),
        (  # an underfit model that scales, still improving at its last epoch
            situation(HIGH_BIAS, best_epoch=30),
            {"wider": [{"width": 2.0}], "longer": [{"epochs": 60}], "lr-search": [{"lr": 0.000333}, {"lr": 0.003}]},
        ),
        (  # an underfit model of fixed width: a bigger registry model instead; levelled off, so not longer
            situation(HIGH_BIAS, scalable=False, bigger_model="lenet5"),
            {"bigger-model": [{"model": "lenet5"}], "lr-search": [{"lr": 0.000333}, {"lr": 0.003}]},
        ),
        (  # fixed width and nothing bigger in the registry: only the learning rate
            situation(HIGH_BIAS, scalable=False),
            {"lr-search": [{"lr": 0.000333}, {"lr": 0.003}]},
        ),
        (situation(DIVERGED, settings={"lr": 0.5}), {"lr-down": [{"lr": 0.05}]}),
        (  # inconclusive: 1.5 times the validation images settle it, carved from the training images as before
            situation(INCONCLUSIVE, val_settling=1.5),
            {"more-validation": [{"val_split": 0.3}]},
        ),
        (  # carved from test: the same split grows
            situation(INCONCLUSIVE, settings={"val_split": 0.0, "val_from_test": 0.2}, val_settling=2.0),
            {"more-validation": [{"val_from_test": 0.4}]},
        ),
        (  # 40 times the images: more than half of the test images, so no split would settle it
            situation(INCONCLUSIVE, settings={"val_split": 0.0, "val_from_test": 0.2}, val_settling=40.0),
            {},
        ),
        (  # no set size would settle it (the figure sits on its threshold): nothing to run
            situation(INCONCLUSIVE, val_settling=None),
            {},
        ),
        (situation(GOOD_FIT), {}),
    ],
)
def test_each_rule_proposes_what_the_model_and_data_can_honour(case, expected):
    assert advised(case) == expected


def test_both_diagnoses_get_at_most_four_proposals_overfitting_first():
    found = propose(situation(BOTH, best_epoch=30))
    assert [p.rule for p in found] == ["dropout-up", "weight-decay", "more-data", "wider"]
    assert all(p.expects and p.why for p in found)


def test_every_rule_changes_only_settings_a_spec_may_set():
    cases = [situation(d, best_epoch=30, val_settling=2.5) for d in (HIGH_VARIANCE, HIGH_BIAS, DIVERGED, INCONCLUSIVE)]
    changed = {key for case in cases for rule in RULES for run in rule.runs(case) for key in run}
    assert changed and changed <= set(SWEEPABLE), changed - set(SWEEPABLE)


def run_ids(client, **tags) -> list:
    return search_all(client, " and ".join(f"tags.{name} = '{value}'" for name, value in tags.items()))


def test_advise_prints_a_suite_spec_then_trains_tags_and_judges_the_follow_ups_as_compare_does(
    store, mnist_dir, capsys, tmp_path
):
    trained = cli_in_process(
        capsys, "train", "--model", "softmax-regression", "--train-size", "1000", "--test-size", "300",
        "--epochs", "1", "--val-split", "0.2", "--no-progress",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    (run,) = store.search_runs([store.get_experiment_by_name("cnn-experiments").experiment_id])
    target = run.info.run_id

    printed = cli_in_process(capsys, "advise", target)
    assert printed.returncode == 0, printed.stderr
    (tmp_path / "advice.toml").write_text(printed.stdout)
    spec = Spec.load(str(tmp_path / "advice.toml"))
    assert [run["lr"] for run in spec.runs if "lr" in run] == [0.000333, 0.003]  # the lr search: 0.001 / 3 and x 3
    assert len(suite_configs(spec)) == 3 * len(spec.runs)  # three seeds each by default

    refused = cli_in_process(capsys, "advise", target, "--run", "--max-runs", "2")
    assert refused.returncode == 2 and "--max-runs: this advice trains" in refused.stderr.strip().splitlines()[-1]
    assert len(store.search_runs([run.info.experiment_id])) == 1  # nothing trained

    ran = cli_in_process(capsys, "advise", target, "--run", "--seeds", "2")
    assert ran.returncode == 0, ran.stderr
    follow_ups = run_ids(store, **{Tag.ADVICE_OF: target})
    rules = sorted(r.data.tags[Tag.ADVICE_RULE] for r in follow_ups)
    assert rules.count("baseline") == 1  # the original configuration's second seed
    assert rules.count("lr-search") == 4 and all(r.info.status == "FINISHED" for r in follow_ups)  # 2 rates x 2 seeds

    header = re.search(r"lr-search, lr 0.003 \(group:(\w+)\), against the original \(group:(\w+)\)", ran.stdout)
    new, original = header.groups()
    compared = cli_in_process(capsys, "compare", f"group:{original}", f"group:{new}")
    assert compared.stdout.strip() in ran.stdout  # the same difference, interval and p-value as `compare`

    again = cli_in_process(capsys, "advise", target, "--run", "--seeds", "2")
    assert "# training 0 of the advice's" in again.stdout
    assert len(run_ids(store, **{Tag.ADVICE_OF: target})) == len(follow_ups)


def test_the_dropout_rate_is_the_highest_of_the_model_layers_where_the_setting_can_change_it():
    assert dropout_rate("0.25,0.5", "pytorch") == 0.5  # conv-conv's own
    assert dropout_rate("none", "pytorch") is None  # no dropout layers
    assert dropout_rate("0.3", "numpy") is None  # the numpy model takes no dropout setting


def test_weight_decay_reaches_the_pytorch_optimizer_and_is_refused_where_it_would_be_ignored():
    learner = TorchAdapter().build(model_spec("tiny"), RunConfig.from_recipe("tiny", weight_decay=5e-4), "cpu")[1]
    assert learner.optimizer.param_groups[0]["weight_decay"] == 5e-4
    with pytest.raises(ConfigError, match=r"^--weight-decay: tiny-numpy in numpy does not take it \(pytorch models"):
        check(RunConfig.from_recipe("tiny-numpy", weight_decay=5e-4))


def test_a_written_spec_reads_back_whatever_its_strings_hold():
    values = {"dataset": 'data/my "😀" set\\x', "lr": 1e-05, "channels_last": True, "epochs": 3}
    assert tomllib.loads(f"fixed = {toml_inline(values)}")["fixed"] == values


def test_advise_refuses_an_unknown_run_in_one_line(store, capsys):
    refused = cli_in_process(capsys, "advise", "no-such-run")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].startswith("python -m experiments: error: no-such-run: no such run")

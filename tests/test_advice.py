"""Advice: each rule of core.advice on the case it answers and on the cases its model or data cannot honour, and
`advise` on the command line: a spec `suite` accepts, follow-ups trained over seeds and tagged, a verdict that
agrees with `compare`, a second --run that trains nothing, and a bound on the runs."""

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import time
import tomllib
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from core.advice import RULES, Situation, propose
from core.comparison import Answer, Side
from core.diagnosis import BOTH, DIVERGED, GOOD_FIT, HIGH_BIAS, HIGH_VARIANCE, INCONCLUSIVE
from core.follow_ups import HELPED, HURT, NO_EFFECT, PENDING, UNTESTED, Effect, FollowUp, Judgement, outcome_of
from core.launches import LAUNCH_DIR_ENV, Launch
from core.schema import Metric, Tag
from core.settings import SWEEPABLE, ConfigError
from core.stats import Interval
from core.store import search_all
from dashboard import launcher
from dashboard.advice_tables import rule_record, touching
from dashboard.launcher import READ_ONLY_ENV
from dashboard.state import Key
from dashboard.widgets import INSPECTOR_SECTIONS
from experiments import cli as command_line
from experiments.adapters.torch_adapter import TorchAdapter
from experiments.advise import dropout_rate
from experiments.config import RunConfig
from experiments.run import check
from experiments.run_logger import RunLogger
from experiments.specs import Spec, suite_configs, toml_inline
from experiments.track import RunInterrupted
from experiments.user_models import model_spec
from tests.helpers import (
    all_runs,
    cli_in_process,
    go,
    needs_chromium,
    on_tab,
    open_app,
    shoot,
    sqlite_uri,
    start_server,
    texts,
    wait_idle,
)


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


def proposed(found) -> dict[str, list[dict]]:
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
    assert proposed(case) == expected


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


def command(*args) -> subprocess.CompletedProcess:
    """`python -m experiments ARGS` in this process (no capsys in a module fixture)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = command_line.dispatch(list(args))
        except SystemExit as exit:
            code = exit.code
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


@dataclass(frozen=True)
class Advised:
    """A store where softmax regression (1 epoch on 1,000 MNIST images: it underfits) was advised, refused a run
    over --max-runs, then trained over 2 seeds: the outputs of each step."""

    client: object
    target: str
    printed: subprocess.CompletedProcess
    refused: subprocess.CompletedProcess
    ran: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def advised(tmp_path_factory, migrated_database, mnist_dir):
    folder = tmp_path_factory.mktemp("advised")
    shutil.copy(migrated_database, folder / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", sqlite_uri(folder))
        patch.setenv(LAUNCH_DIR_ENV, str(folder / "launches"))
        client = MlflowClient(sqlite_uri(folder))
        trained = command(
            "train", "--model", "softmax-regression", "--train-size", "1000", "--test-size", "300",
            "--epochs", "1", "--val-split", "0.2", "--no-progress",
        )  # fmt: skip
        assert trained.returncode == 0, trained.stderr
        (run,) = client.search_runs([client.get_experiment_by_name("cnn-experiments").experiment_id])
        target = run.info.run_id
        printed = command("advise", target)
        refused = command("advise", target, "--run", "--max-runs", "2")
        assert len(client.search_runs([run.info.experiment_id])) == 1  # nothing trained
        ran = command("advise", target, "--run", "--seeds", "2")
        assert ran.returncode == 0, ran.stderr
        yield Advised(client, target, printed, refused, ran)
        launcher.stop(sqlite_uri(folder), target)  # a launch a failed test left training


def test_advise_prints_a_suite_spec_then_trains_tags_and_judges_the_follow_ups_as_compare_does(
    advised, capsys, tmp_path
):
    assert advised.printed.returncode == 0, advised.printed.stderr
    (tmp_path / "advice.toml").write_text(advised.printed.stdout)
    spec = Spec.load(str(tmp_path / "advice.toml"))
    assert [run["lr"] for run in spec.runs if "lr" in run] == [0.000333, 0.003]  # the lr search: 0.001 / 3 and x 3
    assert len(suite_configs(spec)) == 3 * len(spec.runs)  # three seeds each by default

    refused = advised.refused
    assert refused.returncode == 2 and "--max-runs: this advice trains" in refused.stderr.strip().splitlines()[-1]

    follow_ups = run_ids(advised.client, **{Tag.ADVICE_OF: advised.target})
    rules = sorted(r.data.tags[Tag.ADVICE_RULE] for r in follow_ups)
    assert rules.count("baseline") == 1  # the original configuration's second seed
    assert rules.count("lr-search") == 4 and all(r.info.status == "FINISHED" for r in follow_ups)  # 2 rates x 2 seeds
    assert {r.data.tags[Tag.ADVICE_DIAGNOSIS] for r in follow_ups} == {follow_ups[0].data.tags[Tag.ADVICE_DIAGNOSIS]}

    header = re.search(r"lr-search, lr 0.003 \(group:(\w+)\), against the original \(group:(\w+)\)", advised.ran.stdout)
    new, original = header.groups()
    compared = cli_in_process(capsys, "compare", f"group:{original}", f"group:{new}")
    assert compared.stdout.strip() in advised.ran.stdout  # the same difference, interval and p-value as `compare`
    assert re.search(r"avoidable bias [\d.]+ → [\d.]+ pp \(p = [\d.e-]+\)\nverdict: ", advised.ran.stdout)

    again = cli_in_process(capsys, "advise", advised.target, "--run", "--seeds", "2")
    assert "# training 0 of the advice's" in again.stdout
    assert len(run_ids(advised.client, **{Tag.ADVICE_OF: advised.target})) == len(follow_ups)


def test_advice_as_json_counts_what_a_launch_trains_and_a_held_lock_refuses_a_second_training(advised, capsys):
    shown = cli_in_process(capsys, "advise", advised.target, "--json", "--seeds", "3")
    advice = json.loads(shown.stdout)
    assert [p["rule"] for p in advice["proposals"]][-1] == "lr-search" and 'method = "list"' in advice["spec"]
    per_seed = sum(len(p["runs"]) for p in advice["proposals"]) + 1  # each proposal's runs and the original's
    # the original has seeds 0 and 1 (its own, the baseline's): a launch trains seed 2 of all
    assert (advice["runs"], advice["missing"], advice["resumed"]) == (3 * per_seed - 2, per_seed, 0)

    held = Launch(os.environ["MLFLOW_TRACKING_URI"], advised.target).try_lock()
    try:
        busy = cli_in_process(capsys, "advise", advised.target, "--run", "--seeds", "3")
    finally:
        os.close(held)
    assert busy.returncode == 2 and "its advice is being trained already" in busy.stderr.strip().splitlines()[-1]
    assert len(run_ids(advised.client, **{Tag.ADVICE_OF: advised.target})) == 2 * per_seed - 1  # nothing trained


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


def test_a_follow_up_stopped_on_the_way_is_resumed_by_the_next_run_not_trained_again(store, mnist_dir, capsys):
    trained = cli_in_process(
        capsys, "train", "--model", "softmax-regression", "--train-size", "1000", "--test-size", "300",
        "--epochs", "2", "--val-split", "0.2", "--no-progress",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    (original,) = all_runs(store)
    log_epoch = RunLogger.log_epoch

    def stopped_after_one_epoch(self, record, checkpoint):
        log_epoch(self, record, checkpoint)
        raise KeyboardInterrupt("SIGTERM")  # as the dashboard's stop button sends it, after the epoch's checkpoint

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RunLogger, "log_epoch", stopped_after_one_epoch)
        with pytest.raises(RunInterrupted) as stopped:
            command_line.dispatch(["advise", original.info.run_id, "--run", "--seeds", "1"])
    assert stopped.value.status == "KILLED"
    capsys.readouterr()
    again = cli_in_process(capsys, "advise", original.info.run_id, "--run", "--seeds", "1")
    assert again.returncode == 0, again.stderr
    follow_ups = run_ids(store, **{Tag.ADVICE_OF: original.info.run_id})
    resumed = store.get_run(stopped.value.run_id)
    assert resumed.info.status == "FINISHED" and resumed.data.metrics[Metric.EPOCHS_TRAINED] == 2
    keys = [(r.data.tags[Tag.ADVICE_RULE], r.data.tags[Tag.ADVICE_CHANGES]) for r in follow_ups]
    assert len(keys) == len(set(keys)) and all(r.info.status == "FINISHED" for r in follow_ups)  # none twice


def verdicts(at) -> dict[str, str]:
    """The verdict lines on a page, each after the follow-up's config group it names."""
    found = re.findall(r"^- .+? \(group:(\w+)\)\**: (.*)$", texts(at).replace("\\", ""), re.MULTILINE)
    return dict(found)


def test_the_inspector_shows_each_verdict_as_compare_finds_it_and_the_proposals_with_their_launch(
    advised, capsys, monkeypatch
):
    at = on_tab("overfitting", [advised.target], INSPECTOR_SECTIONS[4])
    assert not at.exception
    shown = verdicts(at)
    assert len(shown) == 4  # a bigger model, longer, two learning rates
    original = advised.client.get_run(advised.target).data.tags[Tag.CONFIG_GROUP]
    for group, verdict in shown.items():
        compared = cli_in_process(capsys, "compare", f"group:{original}", f"group:{group}").stdout
        difference, low, high = re.search(r"B - A  (\S+) pp \(95% CI (\S+) to (\S+) pp\)", compared).groups()
        p = re.search(r"Welch's t test over seeds, (p [=<] \S+)", compared).group(1)
        said, margin = re.search(rf"test accuracy (\S+) pp \(95% CI ± (\S+) pp, {p}\): ", verdict).groups()
        assert said == difference and abs(float(margin) - (float(high) - float(low)) / 2) <= 0.01  # as rounded
    shown = texts(at)
    assert "**lr-search** (lr 0.000333; lr 0.003)" in shown.replace("\\", "")
    missing = json.loads(cli_in_process(capsys, "advise", advised.target, "--json").stdout)["missing"]
    assert missing > 0 and [b.label for b in at.button] == [f"Launch {missing} runs"]

    monkeypatch.setenv(READ_ONLY_ENV, "1")
    at = on_tab("overfitting", [advised.target], INSPECTOR_SECTIONS[4])
    assert not at.button and "Launching is off here: this dashboard is opened read-only" in texts(at).replace("\\", "")
    assert f"advise {advised.target} --seeds 3 --run --max-runs 24" in " ".join(c.value for c in at.code)


def test_compare_and_the_advice_record_say_whether_the_advice_helped(advised):
    follow_ups = run_ids(advised.client, **{Tag.ADVICE_OF: advised.target, Tag.ADVICE_RULE: "longer"})
    at = go(open_app(selection=[advised.target, *(r.info.run_id for r in follow_ups)]), "compare")
    assert not at.exception and "Did the advice help?" in texts(at)
    assert list(verdicts(at)) == [follow_ups[0].data.tags[Tag.CONFIG_GROUP]]  # the selected follow-up's alone
    at = go(open_app(), "advice")
    assert not at.exception
    by_rule = next(frame.value for frame in at.dataframe if "tried" in frame.value.columns)
    assert by_rule["tried"].sum() == 4 and set(by_rule["rule"]) == {"bigger-model", "longer", "lr-search"}
    (every,) = [frame.value for frame in at.dataframe if "verdict" in frame.value.columns]
    assert set(every["followed"]) == {"softmax-regression-mnist"} and len(every) == 4
    at = open_app(**{Key.RUNS_COLUMNS: ["advice_of"]})  # the Runs table says which runs follow which
    table = next(frame.value for frame in at.dataframe if "advice_of" in frame.value.columns)
    assert not at.exception and set(table["advice_of"]) == {"", advised.target}


def new_follow_ups(advised, known: set[str]) -> list:
    return [r for r in run_ids(advised.client, **{Tag.ADVICE_OF: advised.target}) if r.info.run_id not in known]


def wait_for(condition, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_a_launch_from_the_inspector_trains_once_in_the_background_and_stops_on_request(advised):
    known = {r.info.run_id for r in new_follow_ups(advised, set())}
    at = on_tab("overfitting", [advised.target], INSPECTOR_SECTIONS[4])
    at.button(key=Key.per_run("advice_launch", advised.target)).click().run()
    uri = os.environ["MLFLOW_TRACKING_URI"]
    launch = Launch(uri, advised.target)
    assert launch.training() and not launcher.start(uri, advised.target, 3, 24, 5)  # a second click starts nothing
    assert [b.label for b in at.button] == ["Stop the launch"] and "Training this advice" in texts(at)
    wait_for(lambda: any(r.info.status == "RUNNING" for r in new_follow_ups(advised, known)), "no run started")
    at.button[0].click().run()
    wait_for(lambda: not launch.training(), "the launch did not stop", 60)
    statuses = [r.info.status for r in new_follow_ups(advised, known)]
    assert "RUNNING" not in statuses and statuses.count("FINISHED") < 5  # stopped in its first run of five
    assert "interrupted" in "\n".join(launch.log_tail())
    at.run()
    assert [b.label for b in at.button] == [f"Launch {5 - statuses.count('FINISHED')} runs"]


@needs_chromium
def test_the_advice_launched_from_the_inspector_in_a_browser_ends_in_verdicts_that_match_compare(advised, page, capsys):
    """After the stop above, the rest of the launch: the stopped run resumed, every follow-up over three seeds. The
    dashboard is stopped while it trains and started again: the launch goes on, and the new one finds it."""
    uri = os.environ["MLFLOW_TRACKING_URI"]
    with start_server(uri) as url:
        page.goto(f"{url}/overfitting?runs={advised.target}")
        wait_idle(page)
        page.get_by_role("tab", name=INSPECTOR_SECTIONS[4]).click()
        page.get_by_text("Next experiments, each over the same seeds").wait_for(timeout=60_000)
        shoot(page, "advice-proposals")
        page.get_by_role("button", name=re.compile(r"^Launch \d+ runs$")).click()
        page.get_by_text("Training this advice").wait_for(timeout=30_000)
        shoot(page, "advice-training")
    assert Launch(uri, advised.target).training()  # the dashboard has stopped, its launch has not
    with start_server(uri) as url:
        page.goto(f"{url}/overfitting?runs={advised.target}")
        wait_idle(page)
        page.get_by_role("tab", name=INSPECTOR_SECTIONS[4]).click()
        page.get_by_text(re.compile(r"All \d+ runs of this advice are trained")).wait_for(timeout=180_000)
        wait_idle(page)
        shoot(page, "advice-verdicts")
        lines = page.get_by_test_id("stMarkdownContainer").all_inner_texts()
    follow_ups = run_ids(advised.client, **{Tag.ADVICE_OF: advised.target})
    finished = [r for r in follow_ups if r.info.status == "FINISHED"]
    keys = {(r.data.tags[Tag.ADVICE_RULE], r.data.tags[Tag.ADVICE_CHANGES], r.data.params["seed"]) for r in finished}
    assert "RUNNING" not in {
        r.info.status for r in follow_ups
    }  # a run stopped before its first checkpoint stays KILLED
    assert len(keys) == len(finished) == 3 * 5 - 1  # every (rule, change, seed) once; the original's seed 0 is its own
    shown = dict(re.findall(r"\(group:(\w+)\): (.*)", "\n".join(lines)))
    original = advised.client.get_run(advised.target).data.tags[Tag.CONFIG_GROUP]
    assert len(shown) == 4
    for group, verdict in shown.items():
        compared = cli_in_process(capsys, "compare", f"group:{original}", f"group:{group}").stdout
        assert "over 3 seeds" in compared
        difference, p = re.search(r"B - A  (\S+) pp .*\n.*Welch's t test over seeds, (p [=<] \S+)", compared).groups()
        assert (
            "3 seeds against the original's 3: " in verdict and f"test accuracy {difference} pp (95% CI ± " in verdict
        )
        assert f", {p}): " in verdict


def answer(difference: float | None, p: float | None, test: str = "Welch's t test over seeds") -> Answer:
    interval = None if difference is None else Interval(difference, difference - 0.01, difference + 0.01, 6)
    return Answer(test, interval, p, "")


def side(*accs: float) -> Side:
    return Side("s", tuple(f"r{i}" for i in range(len(accs))), accs, (1000,) * len(accs))


WELCH = (side(0.90, 0.91), side(0.92, 0.93))


@pytest.mark.parametrize(
    "accuracy, effect, sides, expected",
    [
        (answer(-0.02, 0.01), Effect(Metric.VARIANCE, (0.07, 0.08), (0.02, 0.03)), WELCH[::-1], HURT),  # bought dear
        (answer(0.02, 0.01), None, WELCH, HELPED),
        (answer(0.0, 0.9), Effect(Metric.VARIANCE, (0.07, 0.071, 0.069), (0.02, 0.021, 0.019)), WELCH, HELPED),
        (answer(0.0, 0.9), Effect(Metric.VARIANCE, (0.07, 0.02, 0.12), (0.02, 0.09, 0.01)), WELCH, NO_EFFECT),  # noise
        (answer(0.0, 0.9), Effect(Metric.VARIANCE, (0.02, 0.021, 0.019), (0.07, 0.071, 0.069)), WELCH, NO_EFFECT),
        (answer(None, 0.001, "exact McNemar test"), None, (side(0.90), side(0.95)), HELPED),  # no interval, a sign
        (answer(None, 0.001, "exact McNemar test"), None, (side(0.95), side(0.90)), HURT),
        (answer(None, None, "none"), Effect(Metric.AVOIDABLE_BIAS, (0.1, 0.2), (0.01,)), (side(0.9, 0.8), side(0.9)),
         UNTESTED),  # one run against a group: compare says what to train
        (answer(0.0, 1.0), Effect(Metric.TOTAL_SECONDS, (61.0, 62.0, 60.5), (35.0, 36.1, 34.8)), WELCH, HELPED),
    ],
)  # fmt: skip
def test_a_follow_up_helped_when_its_figure_fell_or_test_accuracy_rose_beyond_chance(accuracy, effect, sides, expected):
    assert outcome_of(accuracy, effect, *sides) == expected
    if effect is not None and effect.metric == Metric.TOTAL_SECONDS:  # stop-at-best's promise: the same, sooner
        assert effect.words().startswith("training time 61.17 → 35.30 s (p = ")


def judged(rule: str, outcome: str, run_ids: tuple[str, ...], target: str = "r0", original: str = "g0") -> Judgement:
    runs = tuple(SimpleNamespace(info=SimpleNamespace(run_id=r, status="FINISHED"), data=None) for r in run_ids)
    return Judgement(FollowUp(target, rule, "{}", "high variance", runs), original, outcome)


def test_the_record_counts_each_rules_outcomes_most_helpful_first_and_a_selection_finds_its_verdicts():
    record = [
        judged("weight-decay", NO_EFFECT, ("a",)),
        judged("dropout-up", HELPED, ("b",)),
        judged("dropout-up", HURT, ("c",), target="group:g1", original="g1"),
        judged("more-data", PENDING, ("d",)),
    ]
    table = rule_record(record)
    assert table.to_dict("records") == [
        {"rule": "dropout-up", "tried": 2, HELPED: 1, NO_EFFECT: 0, HURT: 1},
        {"rule": "weight-decay", "tried": 1, HELPED: 0, NO_EFFECT: 1, HURT: 0},
    ]  # a follow-up still training is not counted
    assert touching(record, ["b", "zz"], set()) == [record[1]]  # a selected follow-up: its verdict alone
    assert touching(record, ["r0"], set()) == [record[0], record[1], record[3]]  # the run advice followed: all of it
    assert touching(record, ["x"], {"g1"}) == [record[2]]  # a run of the original configuration

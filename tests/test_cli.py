"""The command line: listing, bad arguments (exit 2, nothing logged), and a real run end to end."""

import argparse
import re

from core.settings import SETTINGS
from experiments.cli import build_parser
from tests.helpers import all_runs, cli, cli_in_process


def test_models_lists_every_model_with_parameter_counts():
    out = cli("models").stdout
    for name, count in [
        ("conv-conv", "1,199,882"),
        ("tiny", "13,602"),
        ("lenet5", "61,706"),
        ("softmax-regression", "7,850"),
    ]:
        assert name in out and count in out


def test_train_command_logs_a_run_and_prints_a_summary(store):
    result = cli(
        "train",
        "--model",
        "softmax-regression",
        "--epochs",
        "1",
        "--train-size",
        "2000",
        "--test-size",
        "500",
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    assert "test acc" in result.stdout
    runs = all_runs(store)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"


def test_every_command_prints_its_help(capsys):
    """`--help` of every command prints (argparse fails on a stray % in a setting's help), and `train --help` lists
    every setting the command line takes."""
    commands = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    helps = {command: cli_in_process(capsys, command, "--help") for command in commands.choices}
    assert {command: done.returncode for command, done in helps.items()} == dict.fromkeys(commands.choices, 0)
    assert all(done.stdout.startswith("usage:") for done in helps.values())
    assert all(setting.flag in helps["train"].stdout for setting in SETTINGS.values() if setting.on_command_line)


def test_a_bad_argument_exits_2_with_one_line_and_no_run(store):
    result = cli("train", "--model", "tiny", "--epochs", "0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("--epochs: 0 is not allowed; expected an integer > 0")
    assert all_runs(store) == []


def test_repeats_make_config_groups_that_compare_tells_apart(store, capsys):
    """`train --repeats 3` for two models: six FINISHED runs in two config groups; `compare group:A group:B` runs
    Welch's test over the seeds and names the better model; two run ids get the exact McNemar test."""
    size = ["--train-size", "3000", "--test-size", "1000", "--epochs", "2", "--no-progress"]
    groups = {}
    for model in ("softmax-regression", "conv-conv"):
        done = cli_in_process(capsys, "train", "--model", model, "--repeats", "3", *size)
        assert done.returncode == 0, done.stderr
        groups[model] = re.search(r"config group (\w+)", done.stdout).group(1)
    runs = all_runs(store)
    assert len(runs) == 6 and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["config_group"] for r in runs} == set(groups.values())
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "0", "1", "1", "2", "2"]
    done = cli_in_process(capsys, "compare", f"group:{groups['softmax-regression']}", f"group:{groups['conv-conv']}")
    assert done.returncode == 0 and "Welch's t test over seeds" in done.stdout
    sentence = done.stdout.strip().splitlines()[-1]
    assert sentence.startswith("conv-conv (group:") and "beats softmax-regression" in sentence
    p = float(re.search(r"p [=<] ([0-9.e-]+)", done.stdout).group(1))  # "p < 1e-6" when it is below what is printed
    assert p < 0.01
    a, b = (r.info.run_id for r in runs[:2])
    done = cli_in_process(capsys, "compare", a, b)
    assert done.returncode == 0 and "exact McNemar test" in done.stdout
    refused = cli_in_process(capsys, "compare", "group:nope", a)
    assert refused.returncode == 2 and "no FINISHED run" in refused.stderr.strip().splitlines()[-1]

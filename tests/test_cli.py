"""The command line: listing, bad arguments (exit 2, nothing logged), and a real run end to end."""
import subprocess
import sys

import pytest

from experiments.tracking import REPO_ROOT


def cli(*args, env_store=None):
    return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)


def test_models_lists_every_model_with_parameter_counts():
    out = cli("models").stdout
    for name, count in [("conv-conv", "1,199,882"), ("tiny", "13,602"), ("lenet5", "61,706"),
                        ("softmax-regression", "7,850")]:
        assert name in out and count in out


@pytest.mark.parametrize("args, message", [
    (["--model", "nope"], "argument --model: invalid choice"),
    (["--model", "tiny", "--epochs", "0"], "--epochs: 0 is not allowed"),
    (["--model", "tiny", "--batch-size", "-1"], "--batch-size: -1 is not allowed"),
    (["--model", "tiny", "--val-split", "1.5"], "--val-split: 1.5 is not allowed"),
    (["--model", "tiny", "--train-size", "70000"], "--train-size 70000 is larger than the 60000"),
    (["--model", "tiny", "--style", "functional"], "--style: model 'tiny' has no style 'functional'"),
    (["--model", "tiny", "--dataset", "cifar"], "argument --dataset: invalid choice"),
])
def test_bad_arguments_exit_2_and_create_no_run(store, args, message):
    result = cli("train", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not [r for e in store.search_experiments() for r in store.search_runs([e.experiment_id])]


def test_train_command_logs_a_run_and_prints_a_summary(store):
    result = cli("train", "--model", "softmax-regression", "--epochs", "1", "--train-size", "2000",
                 "--test-size", "500", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "test acc" in result.stdout
    runs = [r for e in store.search_experiments() for r in store.search_runs([e.experiment_id])]
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"

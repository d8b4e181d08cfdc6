"""Bad arguments and bad data: exit code 2, one line naming what is wrong, and no MLflow run created."""
import subprocess
import sys

import pytest

from experiments.tracking import REPO_ROOT


def train(*args):
    return subprocess.run([sys.executable, "-m", "experiments", "train", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)


def no_runs(store) -> bool:
    return not [r for e in store.search_experiments() for r in store.search_runs([e.experiment_id])]


@pytest.mark.parametrize("args, message", [
    (["--model", "nope"], "argument --model: invalid choice: 'nope' (choose from 'softmax-regression'"),
    ([], "--model: required; expected one of softmax-regression"),
    (["--model", "tiny", "--epochs", "0"], "--epochs: 0 is not allowed; expected an integer > 0"),
    (["--model", "tiny", "--batch-size", "-1"], "--batch-size: -1 is not allowed; expected an integer > 0"),
    (["--model", "tiny", "--train-size", "0"], "--train-size: 0 is not allowed"),
    (["--model", "tiny", "--val-split", "1.5"], "--val-split: 1.5 is not allowed; expected a fraction in (0, 1)"),
    (["--model", "tiny", "--val-from-test", "-0.2"], "--val-from-test: -0.2 is not allowed"),
    (["--model", "tiny", "--train-size", "70000"], "--train-size 70000 is larger than the 60000 train images"),
    (["--model", "tiny", "--style", "functional"], "--style: model 'tiny' has no style 'functional'"),
    (["--model", "tiny", "--dataset", "cifar"], "argument --dataset: invalid choice: 'cifar'"),
    (["--model", "tiny-numpy", "--optimizer", "adam"], "--optimizer: the numpy model supports only sgd"),
    (["--model", "tiny", "--dropout", "0.3"], "--dropout: model 'tiny' has no dropout layers"),
    (["--model", "conv-conv", "--dropout", "1.5"], "--dropout: 1.5 is not allowed; expected a rate in [0, 1)"),
])
def test_bad_arguments_exit_2_with_one_line_and_no_run(store, args, message):
    result = train(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr.strip().splitlines()[-1]
    assert no_runs(store)


@pytest.mark.parametrize("damage, message", [
    ("empty", "missing train-images-idx3-ubyte"),
    ("truncated", "t10k-images-idx3-ubyte: truncated"),
    ("wrong-magic", "train-labels-idx1-ubyte: not an unsigned-byte IDX file"),
])
def test_bad_data_dir_exits_2_naming_the_file(store, mnist_dir, tmp_path, damage, message):
    folder = tmp_path / "data"
    folder.mkdir()
    if damage != "empty":
        for path in mnist_dir.iterdir():
            (folder / path.name).write_bytes(path.read_bytes())
    if damage == "truncated":
        path = folder / "t10k-images-idx3-ubyte"
        path.write_bytes(path.read_bytes()[:-100])
    if damage == "wrong-magic":
        path = folder / "train-labels-idx1-ubyte"
        path.write_bytes(b"\x00\x00\x09\x01" + path.read_bytes()[4:])
    result = train("--model", "softmax-regression", "--data-dir", str(folder), "--no-progress")
    assert result.returncode == 2
    assert message in result.stderr.splitlines()[-1] and str(folder) in result.stderr.splitlines()[-1]
    assert no_runs(store)


@pytest.mark.parametrize("args, message", [
    (["no-such-spec"], "sweep spec 'no-such-spec': no such file, and not one of sweeps/: "),
    (["smoke", "--heartbeat", "0"], "--heartbeat: expected seconds >= 1"),
    (["smoke", "--storage", "postgresql://cnn:secret@127.0.0.1:1/optuna"], "--storage postgresql://cnn:***@"),
])
def test_bad_sweep_arguments_exit_2_naming_the_problem(store, tmp_path, args, message):
    result = subprocess.run([sys.executable, "-m", "experiments", "sweep", *args], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr.strip().splitlines()[-1]
    assert "secret" not in result.stderr
    assert no_runs(store)

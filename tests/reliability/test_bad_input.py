"""Bad arguments and bad data: exit code 2, one line naming what is wrong, and no MLflow run created.

The command line is called in this process (tests/test_cli.py checks the same through a real process)."""

import pytest

from core.settings import ConfigError, recipe_problems
from experiments.config import RunConfig
from experiments.models import MODELS
from tests.helpers import all_runs, cli_in_process


def no_runs(store) -> bool:
    return not all_runs(store)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "nope"], "--model: unknown model 'nope'; choose one of softmax-regression"),
        (["--model", "nope.py:build"], "nope.py: no such file"),
        ([], "--model: required; expected one of softmax-regression"),
        (["--model", "tiny", "--epochs", "0"], "--epochs: 0 is not allowed; expected an integer > 0"),
        (["--model", "tiny", "--batch-size", "-1"], "--batch-size: -1 is not allowed; expected an integer > 0"),
        (["--model", "tiny", "--train-size", "0"], "--train-size: 0 is not allowed"),
        (["--model", "tiny", "--val-split", "1.5"], "--val-split: 1.5 is not allowed; expected a fraction in [0, 1)"),
        (["--model", "tiny", "--val-from-test", "-0.2"], "--val-from-test: -0.2 is not allowed"),
        (["--model", "tiny", "--train-size", "70000"], "--train-size 70000 is larger than the 60000 train images"),
        (["--model", "tiny", "--style", "functional"], "--style: model 'tiny' has no style 'functional'"),
        (["--model", "tiny", "--dataset", "cifar"], "--dataset: 'cifar' is not allowed; expected one of mnist"),
        (["--model", "tiny", "--dataset", "no/such/folder"], "no/such/folder: no such folder or .npz file"),
        (["--model", "tiny-numpy", "--optimizer", "adam"], "--optimizer: the numpy model supports only sgd"),
        (["--model", "tiny", "--dropout", "0.3"], "--dropout: model 'tiny' has no dropout layers"),
        (["--model", "conv-conv", "--dropout", "1.5"], "--dropout: 1.5 is not allowed; expected a rate in [0, 1)"),
    ],
)
def test_bad_arguments_exit_2_with_one_line_and_no_run(store, capsys, args, message):
    result = cli_in_process(capsys, "train", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr.strip().splitlines()[-1]
    assert "usage:" not in result.stderr  # a value the command cannot use, not a mistyped command line
    assert no_runs(store)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("empty", "missing train-images-idx3-ubyte"),
        ("truncated", "t10k-images-idx3-ubyte: truncated"),
        ("wrong-magic", "train-labels-idx1-ubyte: not an unsigned-byte IDX file"),
    ],
)
def test_bad_data_dir_exits_2_naming_the_file(store, mnist_dir, tmp_path, capsys, damage, message):
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
    result = cli_in_process(
        capsys, "train", "--model", "softmax-regression", "--data-dir", str(folder), "--no-progress"
    )
    assert result.returncode == 2
    assert message in result.stderr.splitlines()[-1] and str(folder) in result.stderr.splitlines()[-1]
    assert no_runs(store)


@pytest.mark.parametrize(
    "args, message",
    [
        (["no-such-spec"], "spec 'no-such-spec': no such file, and not one of specs/: "),
        (["smoke", "--heartbeat", "0"], "--heartbeat: expected seconds >= 1"),
        (["smoke", "--storage", "postgresql://cnn:secret@127.0.0.1:1/optuna"], "--storage postgresql://cnn:***@"),
    ],
)
def test_bad_sweep_arguments_exit_2_naming_the_problem(store, tmp_path, capsys, args, message):
    result = cli_in_process(capsys, "sweep", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr.strip().splitlines()[-1]
    assert "secret" not in result.stderr
    assert no_runs(store)


@pytest.mark.parametrize(
    "command, body",
    [
        ("sweep", 'method = "grid"\nepochz = 3\nfixed = { model = "tiny" }\nspace = { lr = [0.1] }'),
        ("sweep", 'method = "grid"\nfixed = { model = "tiny", epochz = 3 }\nspace = { lr = [0.1] }'),
        ("sweep", 'method = "tpe"\ntrials = 2\nfixed = { model = "tiny" }\nspace = { epochz = { low = 1, high = 3 } }'),
        ("suite", 'method = "list"\nruns = [{ model = "tiny" }, { model = "tiny", epochz = 3 }]'),
        ("suite", 'method = "grid"\nfixed = { model = "tiny", epochs = "three" }\nspace = { lr = [0.1] }'),
    ],
)
def test_a_spec_with_an_unknown_or_mistyped_setting_exits_2_naming_it_before_any_run(
    store, tmp_path, capsys, command, body
):
    path = tmp_path / "typo.toml"
    path.write_text(body)
    result = cli_in_process(capsys, command, str(path))
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "epochz" in last or "--epochs: 'three' is not an integer" in last
    assert no_runs(store)


def test_a_python_construction_with_an_unknown_setting_is_refused_naming_it():
    with pytest.raises(ConfigError, match="unknown run setting epochz"):
        RunConfig.from_recipe("tiny", epochz=3)
    stored = {**RunConfig.from_recipe("tiny").as_dict(), "epochz": 3}
    with pytest.raises(ConfigError, match="config.json: unknown run setting epochz"):
        RunConfig.from_dict(stored, "config.json")
    with pytest.raises(ConfigError, match="--lr: 'fast' is not a number"):
        RunConfig.from_recipe("tiny", lr="fast").validate()


def test_every_recipe_overrides_only_known_settings_with_allowed_values():

    assert {name: recipe_problems(spec.recipe) for name, spec in MODELS.items()} == {name: [] for name in MODELS}


@pytest.mark.parametrize(
    "store_uri, message",
    [
        ("sqlite:///{tmp}/mlflow.db", "file is not a database; MLFLOW_TRACKING_URI must name an MLflow SQLite store"),
        ("http://someone:secret@127.0.0.1:9", "http://someone:***@127.0.0.1:9: connection refused or host unknown"),
    ],
)
def test_a_store_that_cannot_be_used_is_one_line_and_exit_2_before_any_work(
    tmp_path, monkeypatch, capsys, store_uri, message
):
    (tmp_path / "mlflow.db").write_text("not a database, a user's notes\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri.format(tmp=tmp_path))
    for command in (["train", "--model", "tiny"], ["suite", "quick"], ["sweep", "smoke"], ["reap"]):
        result = cli_in_process(capsys, *command)
        assert result.returncode == 2, command
        last = result.stderr.strip().splitlines()[-1]
        assert "cannot read the tracking store at" in last and message in last and "secret" not in result.stderr
        assert "usage:" not in result.stderr  # not a mistake in how the command was typed
    assert (tmp_path / "mlflow.db").read_text() == "not a database, a user's notes\n"  # left as it was

"""Divergence and crashes end a run FAILED with the reason as a tag, earlier epochs kept; suites go on."""

import errno
import math

import numpy as np
import pytest

from core.schema import Metric, Tag
from experiments import cli
from experiments.adapters.torch_adapter import TorchLearner
from experiments.config import RunConfig
from experiments.run import execute
from experiments.run_logger import RunLogger
from experiments.train import Diverged
from tests.helpers import cli_in_process

SMALL = dict(epochs=3, train_size=1000, test_size=300, val_split=0.2, progress=False)


def runs(store):
    experiment = store.get_experiment_by_name("cnn-experiments")
    return store.search_runs([experiment.experiment_id]) if experiment else []


def fail_from_call(monkeypatch, n: int, outcome):
    """Make TorchLearner.train_step behave normally n times, then return/raise `outcome`."""
    real, calls = TorchLearner.train_step, {"n": 0}

    def step(self, inputs, labels):
        calls["n"] += 1
        if calls["n"] > n:
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome, 0
        return real(self, inputs, labels)

    monkeypatch.setattr(TorchLearner, "train_step", step)


def test_nan_loss_stops_at_once_fails_the_run_and_keeps_earlier_epochs(store, mnist_dir, monkeypatch):
    steps_per_epoch = math.ceil(800 / 128)
    fail_from_call(monkeypatch, steps_per_epoch + 2, float("nan"))  # the third step of epoch 2
    with pytest.raises(Diverged, match=f"at step {steps_per_epoch + 3} \\(epoch 2\\)"):
        execute(RunConfig.from_recipe("softmax-regression", **SMALL))
    [run] = runs(store)
    assert run.info.status == "FAILED"
    assert run.data.tags[Tag.DIVERGED_AT_STEP] == str(steps_per_epoch + 3)
    assert "training loss became nan" in run.data.tags[Tag.ERROR]
    assert [m.step for m in store.get_metric_history(run.info.run_id, Metric.VAL_ACC)] == [1]


def test_real_divergence_of_a_huge_learning_rate_is_caught(store, mnist_dir):
    with pytest.raises(Diverged), np.errstate(all="ignore"):
        execute(RunConfig.from_recipe("tiny-numpy", **{**SMALL, "lr": 1e9, "batch_size": 50}))
    assert runs(store)[0].info.status == "FAILED"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_an_exploding_loss_that_never_becomes_nan_fails_the_run_in_its_first_epoch(store, mnist_dir, precision):
    """lr 1e6 used to train to the end at chance accuracy with a finite loss of about 1e6, labelled high bias."""
    config = RunConfig.from_recipe(
        "conv-conv", epochs=2, lr=1e6, train_size=2000, test_size=500, precision=precision, progress=False
    )
    with pytest.raises(Diverged, match=r"over 100 x ln 10 = 230.3 at step \d+ \(epoch 1\)|became (nan|inf)"):
        execute(config)
    [run] = runs(store)
    assert run.info.status == "FAILED" and run.data.tags[Tag.ERROR].startswith("diverged: training loss")
    assert run.data.tags[Tag.DIAGNOSIS] == "diverged" and "lower the learning rate" in run.data.tags[Tag.DIAGNOSIS_RULE]
    assert int(run.data.tags[Tag.DIVERGED_AT_STEP]) <= 8  # 2000 images less validation, batch 256: epoch 1
    assert store.get_metric_history(run.info.run_id, Metric.VAL_ACC) == []


@pytest.mark.keras
def test_a_keras_run_whose_clipped_loss_saturates_fails_as_diverged(store, mnist_dir):
    """Keras clips its cross-entropy at -ln(1e-7) = 16.1, so lr 1e6 never passes 230.3 there: it trained to the
    end at chance accuracy before."""
    config = RunConfig.from_recipe(
        "conv-conv", framework="keras", epochs=2, lr=1e6, train_size=2000, test_size=500, progress=False
    )
    with pytest.raises(Diverged, match=r"clipped cross-entropy can report.* at step \d+ \(epoch 1\)"):
        execute(config)
    [run] = runs(store)
    assert run.info.status == "FAILED" and run.data.tags[Tag.DIAGNOSIS] == "diverged"


def test_an_exception_in_the_model_fails_the_run_with_its_message(store, mnist_dir, monkeypatch):
    fail_from_call(monkeypatch, 3, RuntimeError("shape mismatch in layer 3"))
    with pytest.raises(RuntimeError):
        execute(RunConfig.from_recipe("lenet5", **SMALL))
    [run] = runs(store)
    assert run.info.status == "FAILED" and run.data.tags[Tag.ERROR] == "RuntimeError: shape mismatch in layer 3"


def test_a_full_disk_while_writing_artifacts_fails_the_run(store, mnist_dir, monkeypatch):
    def disk_full(self, frame, name):
        raise OSError(errno.ENOSPC, "No space left on device", name)

    monkeypatch.setattr(RunLogger, "log_table", disk_full)
    with pytest.raises(OSError):
        execute(RunConfig.from_recipe("softmax-regression", **SMALL))
    [run] = runs(store)
    assert run.info.status == "FAILED" and "No space left on device" in run.data.tags[Tag.ERROR]
    assert len(store.get_metric_history(run.info.run_id, Metric.VAL_ACC)) == 3  # all epochs kept


def test_a_suite_goes_on_after_a_diverged_run(store, mnist_dir, tmp_path, capsys):
    spec = tmp_path / "two.toml"
    spec.write_text(
        'method = "list"\nrun_name = "{model}"\n'
        "fixed = { epochs = 3, train_size = 1000, test_size = 300, val_split = 0.2 }\n"
        'runs = [{ model = "tiny-numpy", lr = 1e9, batch_size = 50 }, { model = "softmax-regression" }]\n'
    )
    with np.errstate(all="ignore"):
        assert cli.main(["suite", str(spec)]) == 1
    status = {r.info.run_name: r.info.status for r in runs(store)}
    assert status == {"tiny-numpy": "FAILED", "softmax-regression": "FINISHED"}
    assert "1 of 2 runs failed: tiny-numpy" in capsys.readouterr().err


def test_the_command_line_reports_a_diverged_run_in_one_line(store, mnist_dir, capsys):
    result = cli_in_process(
        capsys,
        "train",
        "--model",
        "conv-conv",
        "--epochs",
        "2",
        "--lr",
        "1e6",
        "--train-size",
        "2000",
        "--test-size",
        "500",
        "--no-progress",
    )
    [run] = runs(store)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"run {run.info.run_id} FAILED, diverged: training loss")
    assert result.stderr.strip().endswith("lower the learning rate")

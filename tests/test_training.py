"""Real training on real MNIST: accuracy, determinism, and the run's complete MLflow record."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.schema import Artifact, Metric, Param, Tag
from experiments.run import execute
from experiments.train import EpochMeter
from tests.helpers import small_config


def test_conv_conv_reaches_sensible_accuracy(conv_conv_run):
    _, run, result = conv_conv_run
    # A plain PyTorch loop gave 95.6% here with 10k train images; we train on 9k (1k held for validation).
    assert result.metrics[Metric.TEST_ACC] >= 0.94
    assert run.data.params[Param.TEST_SIZE] == "2000" and run.data.params[Param.TRAIN_SIZE] == "9000"


def test_run_record_holds_every_schema_name(conv_conv_run):
    client, run, _ = conv_conv_run
    assert run.info.status == "FINISHED"
    missing_metrics = {str(m) for m in (*Metric.PER_EPOCH, *Metric.FINAL, Metric.TRAIN_LOSS_STEP)} - set(
        run.data.metrics
    )
    assert not missing_metrics
    other_frameworks_only = ("FILTERS", "DTYPE", "KERAS_VERSION", "DATASET_SHA256", "MODEL_SHA256")  # or data, or model
    param_names = [
        v for k, v in vars(Param).items() if not k.startswith(("_", "SWEEP_")) and k not in other_frameworks_only
    ]  # SWEEP_*: a sweep's parent
    assert not set(param_names) - set(run.data.params)
    assert {Tag.DIAGNOSIS, Tag.DIAGNOSIS_RULE, Tag.RECIPE_SOURCE} <= set(run.data.tags)
    for name in Metric.PER_EPOCH:
        history = client.get_metric_history(run.info.run_id, name)
        assert [m.step for m in history] == [1, 2], name
    for name in (Metric.TRAIN_ACC, Metric.VAL_ACC, Metric.TEST_ACC):
        assert 0 <= run.data.metrics[name] <= 1


def test_bias_variance_metrics_follow_their_definitions(conv_conv_run):
    _, run, _ = conv_conv_run
    m, best_error = run.data.metrics, float(run.data.params[Param.BEST_ERROR])
    assert m[Metric.BIAS] == pytest.approx(1 - m[Metric.TRAIN_ACC])
    assert m[Metric.VARIANCE] == pytest.approx(m[Metric.TRAIN_ACC] - m[Metric.VAL_ACC])
    assert m[Metric.AVOIDABLE_BIAS] == pytest.approx(1 - m[Metric.TRAIN_ACC] - best_error)


def test_artifacts_parse_back(conv_conv_run, tmp_path):
    client, run, result = conv_conv_run
    folder = client.download_artifacts(run.info.run_id, "", str(tmp_path))
    confusion = json.loads(Path(f"{folder}/{Artifact.CONFUSION_TEST}").read_text())
    matrix = np.array(confusion["matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 2000
    assert np.trace(matrix) / 2000 == pytest.approx(result.metrics[Metric.TEST_ACC])
    val = json.loads(Path(f"{folder}/{Artifact.CONFUSION_VAL_EPOCHS}").read_text())
    assert val["epochs"] == [1, 2] and np.array(val["matrices"]).sum(axis=(1, 2)).tolist() == [1000, 1000]
    per_class = pd.read_csv(f"{folder}/{Artifact.PER_CLASS}")
    assert per_class["support"].sum() == 2000 and per_class["correct"].sum() == np.trace(matrix)
    wrong = pd.read_csv(f"{folder}/{Artifact.MISCLASSIFIED}")
    assert len(wrong) == 2000 - np.trace(matrix) and (wrong["true"] != wrong["predicted"]).all()
    assert wrong["index"].between(0, 1999).all()
    layers = pd.read_csv(f"{folder}/{Artifact.LAYERS}")
    assert layers["params"].sum() == result.metrics[Metric.PARAMS_TOTAL] == 1_199_882
    models = client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'")
    assert [m.name for m in models] == [Artifact.MODEL]
    files = [f.path for f in client.list_logged_model_artifacts(models[0].model_id)]
    assert "MLmodel" in files


def metric_histories(client, run_id):
    run = client.get_run(run_id)
    return {
        name: [(m.step, m.value) for m in client.get_metric_history(run_id, name)]
        for name in run.data.metrics
        if name != Metric.TOTAL_SECONDS and "seconds" not in name and name != Metric.SAMPLES_PER_S
    }


def test_same_seed_same_metrics(store, mnist_dir):
    first, second = execute(small_config()), execute(small_config())
    assert metric_histories(store, first.run_id) == metric_histories(store, second.run_id)
    third = execute(small_config(seed=1))
    assert metric_histories(store, third.run_id) != metric_histories(store, first.run_id)


def test_numpy_model_logs_the_same_schema_with_weights(store, mnist_dir, tmp_path):
    result = execute(small_config("tiny-numpy", epochs=1, batch_size=8, lr=0.05))
    run = store.get_run(result.run_id)
    assert set(map(str, Metric.FINAL)) <= set(run.data.metrics)
    assert run.data.params[Param.FRAMEWORK] == "numpy"
    weights = np.load(store.download_artifacts(run.info.run_id, Artifact.NUMPY_WEIGHTS, str(tmp_path)))
    assert sum(a.size for a in weights.values()) == result.metrics[Metric.PARAMS_TOTAL] == 13_602


def test_bf16_autocast_trains_as_well_as_fp32_on_a_small_slice(store, mnist_dir):
    """Both precisions learn the same small problem to within a few points (the full recipes are in the README)."""
    accs = {
        p: execute(small_config("lenet5", precision=p, epochs=3, train_size=6000)).metrics[Metric.TEST_ACC]
        for p in ("fp32", "bf16")
    }
    assert accs["fp32"] > 0.85 and abs(accs["bf16"] - accs["fp32"]) < 0.03
    run = store.search_runs(
        [store.get_experiment_by_name("cnn-experiments").experiment_id], "params.precision = 'bf16'"
    )
    assert len(run) == 1


def test_the_step_curve_has_a_point_every_log_every_steps_and_one_for_the_epochs_last_fewer():
    meter = EpochMeter(n=7 * 32, epoch=2, first_step=8, log_every=5, desc="", progress=False)
    losses = [2.0, 1.8, 1.6, 1.4, 1.2, 1.0, 0.8]
    for loss in losses:
        meter.add(loss, correct=16, rows=32)
    stats = meter.done()
    steps, means = zip(*stats.step_losses, strict=True)
    assert steps == (12, 14) and means == pytest.approx([np.mean(losses[:5]), np.mean(losses[5:])])
    assert stats.loss == pytest.approx(np.mean(losses)) and stats.acc == 0.5

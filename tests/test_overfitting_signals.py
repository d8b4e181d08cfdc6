"""conv-conv on 1,000 MNIST images for 15 epochs without dropout: the inspector flags the rising validation loss,
the growing calibration error and the classes that overfit, and every logged number matches a direct computation
from the logged model's own predictions."""

import json

import mlflow
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix

from core.calibration import class_errors, loss_rising_while_accuracy_holds, reliability
from core.diagnosis import class_gaps
from core.schema import Artifact, Metric
from experiments.run import execute, prepare
from experiments.train import evaluate
from tests.helpers import on_tab, small_config, sqlite_uri

EPOCHS = 15


# The tests share the module fixture `overfit`, which trains: one worker builds it once and runs them all.
pytestmark = pytest.mark.xdist_group("overfitting_signals-module")


@pytest.fixture(scope="module")
def overfit(tmp_path_factory, mnist_dir):
    """The run, in a store of its own: 1,000 validation images (half the first 2,000 test images) so that one
    epoch's calibration error is not mostly noise."""
    folder = tmp_path_factory.mktemp("overfit")
    config = small_config(
        "conv-conv",
        epochs=EPOCHS,
        train_size=1000,
        test_size=2000,
        val_split=0.0,
        val_from_test=0.5,
        batch_size=32,
        dropout=0.0,
        run_name="conv-conv-overfit",
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", sqlite_uri(folder))
        result = execute(config)
        client = mlflow.MlflowClient(sqlite_uri(folder))
        yield client, result.run_id, config


def logged(client, run_id, name, tmp_path) -> dict:
    return json.loads(open(client.download_artifacts(run_id, name, str(tmp_path))).read())


def history(client, run_id) -> pd.DataFrame:
    return pd.DataFrame(
        {
            name: {m.step: m.value for m in client.get_metric_history(run_id, name)}
            for name in (Metric.VAL_LOSS, Metric.VAL_ACC, Metric.VAL_ECE)
        }
    )


def test_the_best_epochs_logged_calibration_and_class_errors_match_the_logged_models_predictions(overfit, tmp_path):
    client, run_id, config = overfit
    best = int(client.get_run(run_id).data.metrics[Metric.BEST_EPOCH])
    ready = prepare(config)  # the same splits, and the model built as the runner builds it
    logged_model = client.search_logged_models(
        [client.get_run(run_id).info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
    )[0]
    ready.model.load_state_dict(mlflow.pytorch.load_model(logged_model.model_uri).state_dict())  # best-val weights
    on_val, on_train = (
        evaluate(
            ready.learner, ready.inputs[name], getattr(ready.splits, name).labels, batch_size=config.eval_batch_size
        )
        for name in ("val", "train")
    )
    val_pred, val_conf, train_pred = on_val.predicted, on_val.confidence, on_train.predicted  # train-eval: all 1,000
    table = reliability(val_conf, val_pred == ready.splits.val.labels)
    series = logged(client, run_id, Artifact.RELIABILITY_VAL_EPOCHS, tmp_path)
    at = series["epochs"].index(best)
    assert series["counts"][at] == table.counts and sum(table.counts) == 1000
    assert history(client, run_id).loc[best, Metric.VAL_ECE] == pytest.approx(table.ece, abs=1e-9)
    per_class = logged(client, run_id, Artifact.PER_CLASS_EPOCHS, tmp_path)
    assert per_class["epochs"] == list(range(1, EPOCHS + 1))
    for name, split, pred in (("val", ready.splits.val, val_pred), ("train", ready.splits.train, train_pred)):
        matrix = confusion_matrix(split.labels, pred, labels=range(10))
        assert per_class[f"{name}_error"][at] == pytest.approx(class_errors(matrix).tolist(), abs=1e-12)
        assert per_class[f"{name}_support"][at] == matrix.sum(axis=1).tolist()


def test_the_overfitting_run_shows_rising_loss_growing_ece_and_classes_that_overfit(overfit, tmp_path):
    client, run_id, _ = overfit
    epochs = history(client, run_id)
    rising = loss_rising_while_accuracy_holds(epochs)
    assert rising is not None and rising < EPOCHS - 2 and rising == epochs[Metric.VAL_LOSS].idxmin()
    assert epochs.loc[EPOCHS, Metric.VAL_ECE] > 1.5 * epochs.loc[rising, Metric.VAL_ECE]  # ever more overconfident
    per_class = logged(client, run_id, Artifact.PER_CLASS_EPOCHS, tmp_path)
    last = {key: per_class[key][-1] for key in ("train_error", "val_error", "train_support", "val_support")}
    overfitting = [g.name for g in class_gaps(**last, names=per_class["class_names"]) if g.overfits]
    assert overfitting

    at = on_tab("overfitting", [run_id], "Calibration")
    assert not at.exception
    assert any(f"Validation loss rises after epoch {rising}" in w.value for w in at.warning)
    charts = [c.proto.spec for c in at.get("echarts_chart")]
    assert any('"val ECE"' in spec for spec in charts)
    assert any("Reliability, validation set after epoch" in spec for spec in charts)
    at = on_tab("overfitting", [run_id], "Per class")
    flagged = next(m.value for m in at.markdown if m.value.startswith("**Classes that overfit**"))
    listed = flagged.rstrip(".").split("together): ")[1]  # "class 3" or "classes 3, 5", widest gap first
    assert listed.split(" ", 1) == ["class" if len(overfitting) == 1 else "classes", ", ".join(overfitting)]
    assert any("Per-class gap" in c.proto.spec for c in at.get("echarts_chart"))

"""MLflow runs as other tools log them: real `mlflow.autolog()` around Keras 3 `model.fit` (the PyTorch
backend), and runs under PyTorch Lightning's and the Hugging Face Trainer's metric names, logged the
way those libraries' MLflow loggers write them (their histories taken from a real run's)."""

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from experiments.adapters.keras_adapter import load_keras
from experiments.data import fetched_split


def keras_autolog_run(
    uri: str, experiment: str, name: str, train_size: int, epochs: int, hidden: int, validation_split: float
) -> str:
    """A Keras MLP on the first `train_size` MNIST images, fit under mlflow.autolog(); returns the run id."""
    keras = load_keras()  # only the keras-marked tests call this

    keras.utils.set_random_seed(0)
    train = fetched_split("mnist", "train")
    x = (train.images[:train_size] / 255.0).astype("float32")
    layers = [
        keras.Input((28, 28)),
        keras.layers.Flatten(),
        keras.layers.Dense(hidden, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]
    model = keras.Sequential(layers, name=name)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    mlflow.set_tracking_uri(uri)
    mlflow.autolog(log_models=False, silent=True)
    try:
        with mlflow.start_run(experiment_id=experiment, run_name=name) as run:
            model.fit(
                x, train.labels[:train_size], epochs=epochs, batch_size=32, validation_split=validation_split, verbose=0
            )
    finally:
        mlflow.autolog(disable=True)
    return run.info.run_id


def lightning_style_run(
    client: MlflowClient, experiment: str, history: list[tuple[float, float, float, float]], steps_per_epoch: int = 50
) -> str:
    """Lightning's MLFlowLogger: per-epoch metrics at the global step, with an `epoch` metric (0-based)."""
    run = client.create_run(experiment, run_name="lightning-style")
    run_id = run.info.run_id
    client.log_param(run_id, "model_name", "LitConvNet")
    for epoch, (train_loss, train_acc, val_loss, val_acc) in enumerate(history):
        step = (epoch + 1) * steps_per_epoch - 1
        for key, value in (("train_loss_step", train_loss * 1.1),):
            client.log_metric(run_id, key, value, step=step - 10)
        client.log_metric(run_id, "epoch", epoch, step=step - 10)
        for key, value in (
            ("train_loss_epoch", train_loss),
            ("train_acc_epoch", train_acc),
            ("val_loss", val_loss),
            ("val_acc", val_acc),
            ("epoch", epoch),
        ):
            client.log_metric(run_id, key, value, step=step)
    client.log_metric(run_id, "test_acc", history[-1][3] - 0.002, step=len(history) * steps_per_epoch)
    client.set_terminated(run_id)
    return run_id


def hugging_face_style_run(
    client: MlflowClient, experiment: str, history: list[tuple[float, float, float]], steps_per_epoch: int = 40
) -> str:
    """The Trainer's MLflowCallback: `loss` every logging step with a fractional `epoch`, `eval_*` and `epoch`
    at the end of each epoch; the model's name in `_name_or_path`."""
    run = client.create_run(experiment, run_name="hf-style")
    run_id = run.info.run_id
    client.log_param(run_id, "_name_or_path", "google/vit-mnist-small")
    for epoch, (train_loss, val_loss, val_acc) in enumerate(history):
        for half in (0.5, 1.0):
            step = int((epoch + half) * steps_per_epoch)
            client.log_metric(run_id, "loss", train_loss * (1.2 if half == 0.5 else 1.0), step=step)
            client.log_metric(run_id, "epoch", epoch + half, step=step)
        step = (epoch + 1) * steps_per_epoch
        client.log_metric(run_id, "eval_loss", val_loss, step=step)
        client.log_metric(run_id, "eval_accuracy", val_acc, step=step)
    client.set_terminated(run_id)
    return run_id


def history_of_keras_run(client: MlflowClient, run_id: str) -> np.ndarray:
    """(epochs, 4) train loss, train acc, val loss, val acc of a Keras autolog run, as logged."""
    return np.array(
        [
            [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]
            for key in ("loss", "accuracy", "val_loss", "val_accuracy")
        ]
    ).T

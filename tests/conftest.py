"""Shared fixtures: the real MNIST cache, throwaway MLflow stores, and one real tracked training run."""
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from experiments.data import ensure_dataset
from experiments.run import RunConfig, execute


@pytest.fixture(scope="session")
def mnist_dir():
    return ensure_dataset("mnist")


def sqlite_uri(folder) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty embedded MLflow store for one test; returns a client on it."""
    uri = sqlite_uri(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return MlflowClient(uri)


@pytest.fixture(scope="session")
def session_store(tmp_path_factory):
    """An MLflow store shared by the session's fixtures that train for real."""
    folder = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", sqlite_uri(folder))
        yield MlflowClient(sqlite_uri(folder)), patch


@pytest.fixture(scope="session")
def conv_conv_run(session_store, mnist_dir):
    """conv-conv, 2 epochs at batch 64 on the first 10k train images (10% carved for validation),
    tested on the first 2k test images: real MNIST, logged to a real store."""
    client, _ = session_store
    config = RunConfig.from_recipe("conv-conv", epochs=2, batch_size=64, train_size=10_000, test_size=2_000,
                                   val_split=0.1, progress=False, run_name="conv-conv-test")
    result = execute(config)
    return client, client.get_run(result["run_id"]), result


def small_config(model: str = "lenet5", **overrides) -> RunConfig:
    """A run of a few seconds on real data."""
    settings = dict(epochs=2, train_size=1000, test_size=500, val_split=0.2, progress=False)
    return RunConfig.from_recipe(model, **{**settings, **overrides})


@pytest.fixture
def rng():
    return np.random.default_rng(0)

import pytest
from mlflow.tracking import MlflowClient


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty embedded store for one test, also seen by subprocesses through the environment."""
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return MlflowClient(uri)

"""A real PostgreSQL and a real `mlflow server` on loopback, started once for the scaling tests."""

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from experiments.tracking_server import free_port, start_mlflow_server, start_postgres


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster (its data under /tmp, reachable by the postgres user when we are root)."""
    data_dir = Path(tempfile.mkdtemp(prefix="cnn-pg-"))
    server = start_postgres(data_dir, free_port())
    yield server
    server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.with_name(data_dir.name + ".password").unlink(missing_ok=True)


@pytest.fixture(scope="session")
def tracking_server(postgres, tmp_path_factory):
    """`mlflow server` with its runs in PostgreSQL and artifacts proxied to a local folder; yields its URL."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    process = start_mlflow_server(
        postgres.url("mlflow"), root / "artifacts", port, workers=2, log_path=root / "server.log"
    )
    yield f"http://127.0.0.1:{port}"
    os.killpg(process.pid, signal.SIGTERM)  # the server and its workers
    process.wait(timeout=30)


@pytest.fixture
def server_store(tracking_server, monkeypatch):
    """This test's runs go through the tracking server; returns a client on it."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    return MlflowClient(tracking_server)

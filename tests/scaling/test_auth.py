"""The team server behind MLflow's basic-auth app, on PostgreSQL with scram-sha-256 passwords: no credentials,
wrong credentials and another user's experiment are each refused, in one line where a person reads it."""

import os
import signal

import psycopg
import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from experiments.tracking_server import ADMIN_USER, DB_USER, Auth, free_port, start_mlflow_server
from tests.helpers import cli_in_process, open_app

ADMIN_PASSWORD = "admin-secret-for-tests"


@pytest.fixture(scope="module")
def auth_server(postgres, tmp_path_factory):
    """`mlflow server --app-name basic-auth` on the session's PostgreSQL; yields its URL."""

    root = tmp_path_factory.mktemp("auth-server")
    port = free_port()
    process = start_mlflow_server(
        postgres.url("mlflow"),
        root / "artifacts",
        port,
        workers=1,
        log_path=root / "server.log",
        auth=Auth(postgres.url("mlflow_auth"), ADMIN_PASSWORD),
    )
    yield f"http://127.0.0.1:{port}"
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


def signed_in(monkeypatch, url: str, user: str, password: str) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    return MlflowClient(url)


def test_postgres_refuses_a_connection_without_its_password(postgres):
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(host=postgres.host, port=postgres.port, user=DB_USER, dbname="mlflow", connect_timeout=5)
    with psycopg.connect(
        host=postgres.host,
        port=postgres.port,
        user=DB_USER,
        password=postgres.password,
        dbname="mlflow",
        connect_timeout=5,
    ):
        pass


def test_rest_calls_without_credentials_get_401(auth_server):
    search = f"{auth_server}/api/2.0/mlflow/experiments/search"
    assert requests.post(search, json={"max_results": 1}, timeout=10).status_code == 401
    assert requests.post(search, json={"max_results": 1}, auth=(ADMIN_USER, "wrong"), timeout=10).status_code == 401
    assert (
        requests.post(search, json={"max_results": 1}, auth=(ADMIN_USER, ADMIN_PASSWORD), timeout=10).status_code == 200
    )


@pytest.mark.parametrize(
    "user, password, message",
    [
        (None, None, "the server needs a user: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"),
        (ADMIN_USER, "wrong", "the server refused the user name and password in MLFLOW_TRACKING_USERNAME"),
    ],
)
def test_missing_or_wrong_credentials_are_one_line_for_the_runner_and_the_dashboard(
    auth_server, monkeypatch, capsys, user, password, message
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", auth_server)
    for name, value in (("MLFLOW_TRACKING_USERNAME", user), ("MLFLOW_TRACKING_PASSWORD", password)):
        monkeypatch.setenv(name, value) if value else monkeypatch.delenv(name, raising=False)
    result = cli_in_process(capsys, "train", "--model", "tiny")
    assert result.returncode == 2 and message in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr and "wrong" not in result.stderr
    at = open_app()
    assert not at.exception and message in " ".join(e.value for e in at.error)


def test_a_user_without_permission_does_not_see_another_users_experiment(auth_server, monkeypatch):
    for user in ("alice", "bob"):
        created = requests.post(
            f"{auth_server}/api/2.0/mlflow/users/create",
            timeout=10,
            json={"username": user, "password": f"{user}-password-123"},
            auth=(ADMIN_USER, ADMIN_PASSWORD),
        )
        assert created.status_code == 200, created.text
    alice = signed_in(monkeypatch, auth_server, "alice", "alice-password-123")
    private = alice.create_experiment("alice-private")
    alice_run = alice.create_run(private, run_name="alice-run").info.run_id
    assert [e.name for e in alice.search_experiments() if e.name == "alice-private"] == ["alice-private"]
    bob = signed_in(monkeypatch, auth_server, "bob", "bob-password-123")
    assert "alice-private" not in [e.name for e in bob.search_experiments()]
    assert [r.info.run_id for r in bob.search_runs([private])] == []  # filtered out
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|Permission denied"):
        bob.get_run(alice_run)
    for user, sees in (("bob", False), ("alice", True)):  # each one's dashboard
        signed_in(monkeypatch, auth_server, user, f"{user}-password-123")
        at = open_app()
        shown = [name for frame in at.dataframe for name in frame.value.get("run_name", [])]
        assert not at.exception and ("alice-run" in shown) == sees, user

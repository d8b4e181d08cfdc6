"""The team server behind MLflow's basic-auth app, on PostgreSQL with scram-sha-256 passwords: no credentials,
wrong credentials and another user's experiment are each refused, in one line where a person reads it."""

import os
import signal

import psycopg
import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from core.launches import LAUNCH_DIR_ENV
from dashboard.launcher import why_cannot_launch
from dashboard.widgets import INSPECTOR_SECTIONS
from experiments.tracking_server import ADMIN_USER, DB_USER, Auth, free_port, start_mlflow_server
from tests.helpers import cli_in_process, inspector, open_app, texts

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


def create_user(url: str, user: str) -> None:
    created = requests.post(
        f"{url}/api/2.0/mlflow/users/create",
        timeout=10,
        json={"username": user, "password": f"{user}-password-123"},
        auth=(ADMIN_USER, ADMIN_PASSWORD),
    )
    assert created.status_code == 200 or "already exists" in created.text, created.text


def test_only_a_user_who_may_edit_the_experiment_can_launch_advice_from_the_dashboard(
    auth_server, monkeypatch, capsys, mnist_dir, tmp_path
):
    monkeypatch.setenv(LAUNCH_DIR_ENV, str(tmp_path / "launches"))
    for user in ("carol", "dave"):
        create_user(auth_server, user)
    carol = signed_in(monkeypatch, auth_server, "carol", "carol-password-123")
    trained = cli_in_process(
        capsys, "train", "--model", "softmax-regression", "--train-size", "1000", "--test-size", "300",
        "--epochs", "1", "--val-split", "0.2", "--no-progress", "--experiment", "carol-advice",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    experiment = carol.get_experiment_by_name("carol-advice").experiment_id
    (run,) = carol.search_runs([experiment])
    granted = requests.post(
        f"{auth_server}/api/3.0/mlflow/users/permissions/grant",
        timeout=10,
        json={"username": "dave", "resource_type": "experiment", "resource_id": experiment, "permission": "READ"},
        auth=(ADMIN_USER, ADMIN_PASSWORD),
    )
    assert granted.status_code == 200, granted.text
    for user, password, refusal in (
        ("carol", "carol-password-123", None),  # she created it: MANAGE
        (ADMIN_USER, ADMIN_PASSWORD, None),
        ("dave", "dave-password-123", "dave has READ permission on this experiment; launching needs EDIT or MANAGE"),
    ):
        signed_in(monkeypatch, auth_server, user, password)
        assert why_cannot_launch(auth_server, experiment) == refusal, user
    at = inspector([run.info.run_id], INSPECTOR_SECTIONS[4])  # as dave: the spec and the command, no button (the
    # button for a user who may launch: tests/test_advice.py)
    shown = texts(at).replace("\\", "")
    assert not at.exception and not at.button and "**bigger-model**" in shown and refusal in shown
    assert f"advise {run.info.run_id} --seeds 3 --run" in " ".join(code.value for code in at.code)

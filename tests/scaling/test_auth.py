"""The team server behind MLflow's basic-auth app, on PostgreSQL with scram-sha-256 passwords: no credentials,
wrong credentials and another user's experiment are each refused, in one line where a person reads it."""

import os
import signal
from pathlib import Path

import psycopg
import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository
from mlflow.tracking import MlflowClient

from core.launches import LAUNCH_DIR_ENV
from core.store import Credentials
from dashboard.identity import signed_in_client
from dashboard.launcher import why_cannot_launch
from dashboard.reader import RunsSource, Store
from dashboard.widgets import INSPECTOR_SECTIONS
from experiments.tracking_server import ADMIN_USER, DB_USER, Auth, free_port, start_mlflow_server
from tests.helpers import cli_in_process, needs_chromium, on_tab, open_app, shoot, start_server, texts, wait_idle

ADMIN_PASSWORD = "admin-secret-for-tests"


@pytest.fixture(scope="module")
def auth_stack(postgres, tmp_path_factory):
    """`mlflow server --app-name basic-auth` on the session's PostgreSQL; yields its URL and its log."""

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
    yield f"http://127.0.0.1:{port}", root / "server.log"
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def auth_server(auth_stack) -> str:
    return auth_stack[0]


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
    if user:  # a dashboard started as a user reads as that user: a wrong password is its error
        assert not at.exception and message in " ".join(e.value for e in at.error)
    else:  # started without one, it is a team dashboard: each session signs in
        assert not at.exception and [t.value for t in at.title] == ["Sign in"] and not at.dataframe


PASSWORDS = {"alice": "alice-password-123", "bob": "bob-password-123"}


@pytest.fixture(scope="module")
def alice_and_bob(auth_server) -> dict[str, str]:
    """Two users of the server, each with a private experiment holding one run; alice's run has an artifact.
    Yields the run ids by user."""
    runs = {}
    for user, password in PASSWORDS.items():
        create_user(auth_server, user)
        client = signed_in_client(auth_server, Credentials(user, password))
        experiment = client.create_experiment(f"{user}-private")
        runs[user] = client.create_run(experiment, run_name=f"{user}-run").info.run_id
        client.set_terminated(runs[user])
    with requests.Session() as http:  # a small artifact of alice's run, through the server's proxy, as alice
        artifact_uri = signed_in_client(auth_server, Credentials("alice", PASSWORDS["alice"])).get_run(runs["alice"])
        url = MlflowArtifactsRepository.resolve_uri(artifact_uri.info.artifact_uri, auth_server) + "/note.txt"
        assert http.put(url, data=b"alice's note", auth=("alice", PASSWORDS["alice"]), timeout=10).ok
    return runs


def test_a_user_without_permission_does_not_see_another_users_experiment(auth_server, alice_and_bob, monkeypatch):
    alice = signed_in(monkeypatch, auth_server, "alice", PASSWORDS["alice"])
    private = alice.get_experiment_by_name("alice-private").experiment_id
    bob = signed_in(monkeypatch, auth_server, "bob", PASSWORDS["bob"])
    assert "alice-private" not in [e.name for e in bob.search_experiments()]
    assert [r.info.run_id for r in bob.search_runs([private])] == []  # filtered out
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|Permission denied"):
        bob.get_run(alice_and_bob["alice"])
    for user, sees in (("bob", False), ("alice", True)):  # each one's dashboard
        signed_in(monkeypatch, auth_server, user, PASSWORDS[user])
        at = open_app()
        shown = [name for frame in at.dataframe for name in frame.value.get("run_name", [])]
        assert not at.exception and ("alice-run" in shown) == sees, user


def sign_in_with(at, user: str, password: str):
    at.text_input[0].input(user)
    at.text_input[1].input(password)
    return at.button[0].click().run()


def shown_runs(at) -> list[str]:
    return [name for frame in at.dataframe for name in frame.value.get("run_name", [])]


def test_a_team_dashboard_shows_nothing_before_sign_in_and_then_reads_as_the_session_user(
    auth_server, alice_and_bob, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", auth_server)
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    at = open_app()
    assert not at.exception and not at.dataframe and [t.value for t in at.title] == ["Sign in"]
    at = sign_in_with(at, "alice", "not-her-password")
    assert [e.value for e in at.error] == ["The server refused the user name alice with that password."]
    assert not at.dataframe and [t.label for t in at.text_input] == ["User name", "Password"]  # the form again
    at = sign_in_with(at, "alice", PASSWORDS["alice"])
    assert not at.exception and not at.error and "alice-run" in shown_runs(at) and "bob-run" not in shown_runs(at)
    assert "Signed in as **alice**" in [c.value for c in at.sidebar.caption]
    bob = sign_in_with(open_app(), "bob", PASSWORDS["bob"])  # another session, at the same time
    assert "bob-run" in shown_runs(bob) and "alice-run" not in shown_runs(bob)
    at = at.sidebar.button[0].click().run()  # Sign out
    assert not at.dataframe and [t.value for t in at.title] == ["Sign in"]


def test_a_kept_runs_table_drops_an_experiment_as_soon_as_its_permission_is_revoked(auth_server, alice_and_bob):
    """The team dashboard keeps each user's runs and reads only what changed (reader.RunsSource): a revoked grant
    must not leave the experiment's runs on show until the next full read."""
    alice = signed_in_client(auth_server, Credentials("alice", PASSWORDS["alice"]))
    private = alice.get_experiment_by_name("alice-private").experiment_id
    bob, source = Store(auth_server, "bob", Credentials("bob", PASSWORDS["bob"])), RunsSource()
    permission = {"username": "bob", "resource_type": "experiment", "resource_id": private}
    admin = (ADMIN_USER, ADMIN_PASSWORD)
    granted = requests.post(
        f"{auth_server}/api/3.0/mlflow/users/permissions/grant", json={**permission, "permission": "READ"},
        auth=admin, timeout=10,
    )  # fmt: skip
    assert granted.ok, granted.text
    assert "alice-run" in set(source.read(bob)["run_name"])  # the full read
    revoked = requests.post(
        f"{auth_server}/api/3.0/mlflow/users/permissions/revoke", json=permission, auth=admin, timeout=10
    )
    assert revoked.ok, revoked.text
    assert source.snapshot is not None and "alice-run" not in set(source.read(bob)["run_name"])  # a refresh


def test_a_signed_in_session_reads_artifacts_as_its_user(auth_server, alice_and_bob, monkeypatch, tmp_path):
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    alice = signed_in_client(auth_server, Credentials("alice", PASSWORDS["alice"]))
    got = alice.download_artifacts(alice_and_bob["alice"], "note.txt", str(tmp_path))
    assert Path(got).read_text() == "alice's note"
    with pytest.raises(MlflowException, match="no artifact"):
        alice.download_artifacts(alice_and_bob["alice"], "missing.txt", str(tmp_path))
    bob = signed_in_client(auth_server, Credentials("bob", PASSWORDS["bob"]))
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|Permission denied"):
        bob.download_artifacts(alice_and_bob["alice"], "note.txt", str(tmp_path))


WRONG = "wrong-password-456"


def sign_in_page(page, user: str, password: str) -> None:
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    wait_idle(page)


@needs_chromium
def test_two_people_signed_in_at_once_each_see_only_their_runs_and_no_password_shows(
    auth_stack, alice_and_bob, browser, monkeypatch, tmp_path
):
    auth_server, server_log = auth_stack
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    log = tmp_path / "dashboard.log"
    with start_server(auth_server, log=log) as url:
        pages = {user: browser.new_context(viewport={"width": 1400, "height": 900}).new_page() for user in PASSWORDS}
        for page in pages.values():  # both sessions open at once
            page.goto(url)
            wait_idle(page)
            assert page.get_by_role("heading", name="Sign in").is_visible()
            assert "alice-run" not in page.content() and "bob-run" not in page.content()
        for user, page in pages.items():
            sign_in_page(page, user, WRONG)
            page.get_by_text(f"The server refused the user name {user} with that password.").wait_for()
            assert page.get_by_label("Password", exact=True).input_value() == "" and WRONG not in page.content()
            sign_in_page(page, user, PASSWORDS[user])
        for user, page in pages.items():
            other = next(u for u in PASSWORDS if u != user)
            page.get_by_text(f"Signed in as {user}").wait_for(timeout=60_000)
            wait_idle(page)
            shoot(page, f"team-dashboard-{user}")
            grid = page.locator('[data-testid="stDataFrame"]').first.text_content()
            assert f"{user}-run" in grid and f"{other}-run" not in grid, user
            for secret in [*PASSWORDS.values(), WRONG]:
                assert secret not in page.content() and secret not in page.url, user
        for page in pages.values():
            page.context.close()
    logs = log.read_text() + server_log.read_text()
    assert not any(secret in logs for secret in [*PASSWORDS.values(), WRONG])


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
        monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")  # a team dashboard's session, signed in as the user
        assert why_cannot_launch(auth_server, experiment, Credentials(user, password)) == refusal, user
    signed_in(monkeypatch, auth_server, "dave", "dave-password-123")
    # as dave: the spec and the command, no button (the button for a user who may launch: tests/test_advice.py)
    at = on_tab("overfitting", [run.info.run_id], INSPECTOR_SECTIONS[4])
    shown = texts(at).replace("\\", "")
    assert not at.exception and not at.button and "**bigger-model**" in shown and refusal in shown
    assert f"advise {run.info.run_id} --seeds 3 --run" in " ".join(code.value for code in at.code)

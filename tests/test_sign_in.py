"""A team dashboard's sign-in against servers that misbehave, without PostgreSQL: a server error is never taken for a
yes, a password never leaves for a host other than the tracking server, and only the user who launched advice may
stop it. (The real authenticated stack: tests/scaling/test_auth.py.)"""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
import requests
from mlflow.exceptions import MlflowException

from core.store import Credentials
from dashboard.identity import SignedInTracking
from dashboard.launcher import why_cannot_stop
from tests.helpers import open_app


class AuthAppInTrouble(BaseHTTPRequestHandler):
    """Healthy, refuses a request without a user as MLflow's auth app does, and fails (HTTP 500) with one."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.answer(200 if self.path == "/health" else 404)

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.answer(500 if self.headers.get("Authorization") else 401)

    def answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def troubled_server(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), AuthAppInTrouble)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    yield url
    server.shutdown()


def test_a_server_error_during_sign_in_signs_nobody_in(troubled_server):
    at = open_app()
    assert [t.value for t in at.title] == ["Sign in"]
    at.text_input[0].input("alice")
    at.text_input[1].input("any-password")
    at = at.button[0].click().run()
    assert [e.value for e in at.error] == ["The tracking server could not check the password (HTTP 500); try again."]
    assert [t.value for t in at.title] == ["Sign in"] and not at.dataframe


def test_a_password_is_sent_to_the_tracking_server_only(monkeypatch, tmp_path):
    tracking = SignedInTracking("http://127.0.0.1:5000", Credentials("alice", "secret"))
    elsewhere = SimpleNamespace(
        info=SimpleNamespace(artifact_uri="mlflow-artifacts://attacker.example/1/abc/artifacts")
    )
    monkeypatch.setattr(tracking, "get_run", lambda run_id: elsewhere)
    monkeypatch.setattr(requests, "get", lambda *a, **k: pytest.fail(f"requested {a} with the password"))
    with pytest.raises(MlflowException, match="not on the tracking server"):
        tracking.download_artifacts("abc", "model_summary.txt", str(tmp_path))


def test_only_the_user_who_launched_advice_on_a_server_may_stop_it():
    record = {"user": "alice"}
    assert why_cannot_stop("http://team:5000", record, "alice") is None
    assert why_cannot_stop("http://team:5000", record, "bob") == "alice launched it; only they can stop it"
    assert why_cannot_stop("sqlite:////tmp/mlflow.db", record, None) is None  # one person's embedded store

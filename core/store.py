"""The tracking store, read side: where it is, a checked client on it, and one-line errors.

The default store is embedded: an SQLite database plus an artifact folder under mlruns/ at the
repository root, nothing to start. MLFLOW_TRACKING_URI points runners and dashboard anywhere else.
A server is probed first (health, then credentials), so a wrong address or password fails in one line
within seconds instead of MLflow's minutes of retries.
"""

import fcntl
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
from mlflow.tracking import MlflowClient

from core.settings import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STORE = REPO_ROOT / "mlruns"
STORE_TIMEOUT_SECONDS = float(os.environ.get("CNN_STORE_TIMEOUT_SECONDS", "5"))  # to answer a health check
# To answer a request that checks a password: a server that answered its health check is up, but behind MLflow's
# auth app each such request hashes the password (about 0.3 s of its CPU), and twenty people signing in at once
# queue for it (benchmarks/load_test.py).
CREDENTIALS_TIMEOUT_SECONDS = 60


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else the embedded SQLite store in mlruns/."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_STORE / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of an sqlite:/// URI (sqlite:////abs/x.db or sqlite:///relative.db), else None."""
    prefix = "sqlite:///"
    return Path(unquote(uri[len(prefix) :])).resolve() if uri.startswith(prefix) else None


def artifact_root(uri: str) -> str | None:
    """Artifacts of an SQLite store go beside its database; a server chooses its own (None)."""
    database = sqlite_path(uri)
    return (database.parent / "artifacts").as_uri() if database else None


@contextmanager
def store_lock(uri: str):
    """Serialise first-time set-up of an embedded store across processes (SQLite schema creation and
    experiment creation race when several runners start at once); a no-op for servers."""
    database = sqlite_path(uri)
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class StoreError(ConfigError):
    """The tracking store cannot be used: one line naming it (password masked), what is wrong and the fix."""


def shown_uri(uri: str) -> str:
    """The URI fit to print: any password in it masked (also in a URI too malformed to parse)."""
    try:
        parts = urlsplit(uri)
        parts.password  # noqa: B018 (parses the netloc, which raises on e.g. an unclosed '[')
    except ValueError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", uri)
    if parts.password:
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
    return uri


@dataclass(frozen=True)
class Credentials:
    """A tracking server's user name and password (the password is never printed)."""

    user: str
    password: str = field(repr=False)

    def basic_auth(self) -> tuple[str, str]:
        """As `requests` takes HTTP basic auth."""
        return self.user, self.password


def env_credentials() -> Credentials | None:
    """MLflow's standard MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, if a user is set."""
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    return Credentials(user, os.environ.get("MLFLOW_TRACKING_PASSWORD", "")) if user else None


def probe_server(uri: str, timeout: float = STORE_TIMEOUT_SECONDS, signed_in: Credentials | None = None) -> None:
    """Fail within `timeout` seconds, in one line, when an HTTP tracking server does not answer its health
    check: MLflow's own client retries with back-off for minutes before it gives up. Then the credentials are
    checked: a dashboard session's own (`signed_in`), else the environment's."""
    try:
        answer = requests.get(uri.rstrip("/") + "/health", timeout=timeout)
    except requests.RequestException as err:
        what = (
            f"no answer within {timeout:g} s"
            if isinstance(err, requests.Timeout)
            else "connection refused or host unknown"
        )
        raise StoreError(
            f"cannot read the tracking store at {shown_uri(uri)}: {what} ({type(err).__name__}); "
            "check the host and port, or start the server (scripts/server)"
        ) from err
    if answer.status_code != 200:
        raise StoreError(
            f"cannot read the tracking store at {shown_uri(uri)}: its /health answered HTTP {answer.status_code}"
        )
    if signed_in is not None:
        status = answer_to(uri, signed_in)
        if status != 200:  # only an answer that read the store counts: a 5xx has checked nothing
            what = "no longer accepts the password" if status == 401 else f"answered HTTP {status} for the user"
            raise StoreError(
                f"cannot read the tracking store at {shown_uri(uri)}: the server {what} {signed_in.user} signed in "
                "with; sign in again"
            )
        return
    check_credentials(uri)


def answer_to(uri: str, credentials: Credentials | None, timeout: float = CREDENTIALS_TIMEOUT_SECONDS) -> int:
    """The HTTP status a server gives a one-experiment search made with these credentials (None: no user): 200
    read, 401 refused by MLflow's auth app, anything else checked nothing."""
    answer = requests.post(
        uri.rstrip("/") + "/api/2.0/mlflow/experiments/search",
        json={"max_results": 1},
        auth=credentials.basic_auth() if credentials else None,
        timeout=timeout,
    )
    return answer.status_code


def refused(uri: str, credentials: Credentials | None, timeout: float = CREDENTIALS_TIMEOUT_SECONDS) -> bool:
    """Whether a server behind MLflow's auth app refuses these credentials (None: no user at all) with 401."""
    return answer_to(uri, credentials, timeout) == 401


def check_credentials(uri: str) -> None:
    """One line, without a traceback, when a server behind MLflow's auth app refuses our (missing or wrong)
    MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD."""
    credentials = env_credentials()
    if refused(uri, credentials):
        what = (
            "refused the user name and password in MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD"
            if credentials
            else "needs a user: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
        raise StoreError(f"cannot read the tracking store at {shown_uri(uri)}: the server {what}")


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def store_problem(uri: str, err: Exception) -> StoreError:
    """One line for a store MLflow could not open, with the fix where there is one."""
    reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
    fix = ""
    if "out-of-date database schema" in str(err):
        fix = f"; upgrade it with `mlflow db upgrade {shown_uri(uri)}` (back it up first)"
    elif "file is not a database" in reason:
        fix = "; MLFLOW_TRACKING_URI must name an MLflow SQLite store (or leave it unset for mlruns/)"
    return StoreError(f"cannot read the tracking store at {shown_uri(uri)}: {reason}{fix}")


def get_client(uri: str | None = None) -> MlflowClient:
    """A client on the store, checked first (a server must answer within seconds), its schema created or
    migrated under the store lock; StoreError in one line when the store cannot be used."""
    uri = uri or tracking_uri()
    if is_server(uri):
        probe_server(uri)
    try:
        with store_lock(uri):
            client = MlflowClient(uri)  # an SQLite store's schema is read (and created) here
            client.search_experiments(max_results=1)  # the first store access creates or upgrades the schema
    except Exception as err:
        raise store_problem(uri, err) from err
    return client


def search_all(client: MlflowClient, filter_string: str = "", max_results: int = 5000) -> list:
    """Runs of every experiment of the store matching an MLflow filter (MLflow searches named experiments only)."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, filter_string, max_results=max_results) if experiments else []


def store_has_runs() -> bool:
    return bool(search_all(get_client(), max_results=1))

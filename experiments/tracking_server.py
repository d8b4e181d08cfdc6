"""A shared tracking stack: one PostgreSQL holding MLflow's and Optuna's tables, and an MLflow server.

`python -m experiments server` (scripts/server) starts both on loopback; the tests start them the
same way. Runners and the dashboard then need only MLFLOW_TRACKING_URI=http://HOST:PORT, and sweep
workers `--storage` with the Optuna database URL printed at start. See docs/scaling.md.
"""

import glob
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg

DB_USER = "cnn"
DATABASES = ("mlflow", "optuna", "mlflow_auth")  # separate: each keeps its own alembic_version table
ADMIN_USER = "admin"  # the MLflow auth app's first user, who creates the others
SERVICE_USER = "postgres"  # PostgreSQL refuses to run as root; Debian's package creates this user


class ServerError(RuntimeError):
    """PostgreSQL or the MLflow server could not be started."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now (for throwaway servers in tests and benchmarks)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def postgres_binary(name: str) -> str:
    """Path of a PostgreSQL server program: Debian keeps them in /usr/lib/postgresql/<version>/bin."""
    found = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    path = found[-1] if found else shutil.which(name)
    if not path:
        raise ServerError(
            f"PostgreSQL's {name} was not found: install Debian's postgresql package "
            "(scripts/setup does, when run as root)"
        )
    return path


def as_service_user(command: list[str]) -> list[str]:
    """The command run as the postgres user when we are root, as ourselves otherwise."""
    return ["runuser", "-u", SERVICE_USER, "--", *command] if os.geteuid() == 0 else command


@dataclass
class Postgres:
    """A PostgreSQL cluster in data_dir, listening on host:port; DB_USER signs in with a scram-sha-256
    password over TCP (only the cluster's own socket, inside data_dir, trusts local maintenance)."""

    data_dir: Path
    host: str
    port: int
    password: str

    def url(self, database: str) -> str:
        """SQLAlchemy URL of one database (postgresql:// means psycopg 3 to SQLAlchemy 2.1), with the password."""
        return f"postgresql://{DB_USER}:{quote(self.password, safe='')}@{self.host}:{self.port}/{database}"

    def stop(self) -> None:
        subprocess.run(
            as_service_user([postgres_binary("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "stop"]),
            capture_output=True,
        )


def database_password(data_dir: Path) -> str:
    """CNN_DB_PASSWORD, else the password kept beside the cluster (made, readable by us only, on first use)."""
    if os.environ.get("CNN_DB_PASSWORD"):
        return os.environ["CNN_DB_PASSWORD"]
    kept = data_dir.with_name(data_dir.name + ".password")
    if not kept.exists():
        kept.touch(mode=0o600)
        kept.write_text(secrets.token_urlsafe(18))
    return kept.read_text().strip()


def start_postgres(data_dir: Path, port: int, host: str = "127.0.0.1") -> Postgres:
    """Create the cluster on first use (scram-sha-256 passwords over TCP), start it (or find it running), and
    create the databases."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(data_dir, SERVICE_USER)
        data_dir.chmod(0o700)
    server = Postgres(data_dir, host, port, database_password(data_dir))
    if not (data_dir / "PG_VERSION").exists():
        with tempfile.NamedTemporaryFile("w", suffix=".pw") as password_file:
            password_file.write(server.password)
            password_file.flush()
            if os.geteuid() == 0:
                shutil.chown(password_file.name, SERVICE_USER)
            run_checked(
                as_service_user(
                    [
                        postgres_binary("initdb"),
                        "-D",
                        str(data_dir),
                        "-U",
                        DB_USER,
                        "--auth-local=trust",
                        "--auth-host=scram-sha-256",
                        f"--pwfile={password_file.name}",
                        "-E",
                        "UTF8",
                    ]
                ),
                "initdb"
                + (
                    f" (as root, PostgreSQL runs as user {SERVICE_USER}, who must be able to reach {data_dir})"
                    if os.geteuid() == 0
                    else ""
                ),
            )
    status = subprocess.run(
        as_service_user([postgres_binary("pg_ctl"), "-D", str(data_dir), "status"]), capture_output=True
    )
    if status.returncode != 0:  # 3: not running
        run_checked(
            as_service_user(
                [
                    postgres_binary("pg_ctl"),
                    "-D",
                    str(data_dir),
                    "-l",
                    str(data_dir / "server.log"),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    f"-p {port} -h {host} -k {data_dir}",
                    "start",
                ]
            ),
            f"PostgreSQL (log: {data_dir / 'server.log'})",
        )
    create_databases(server)
    return server


def create_databases(server: Postgres) -> None:
    # autocommit: CREATE DATABASE cannot run inside a transaction
    with psycopg.connect(
        host=server.host, port=server.port, user=DB_USER, password=server.password, dbname="postgres", autocommit=True
    ) as connection:
        for name in DATABASES:
            if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                connection.execute(f'CREATE DATABASE "{name}"')


@dataclass(frozen=True)
class Auth:
    """MLflow's basic-auth app: users and per-experiment permissions kept in `database_uri`. The admin user's
    password applies when that database is new. With NO_PERMISSIONS as the default, a user sees only the
    experiments they created or were granted (docs/scaling.md)."""

    database_uri: str
    admin_password: str
    default_permission: str = "NO_PERMISSIONS"

    def write_config(self, folder: Path) -> Path:
        """The auth app's ini file (no secret in it: the admin password goes through the environment)."""
        path = Path(folder) / "basic_auth.ini"
        path.write_text(
            f"[mlflow]\ndefault_permission = {self.default_permission}\n"
            f"database_uri = {self.database_uri}\nadmin_username = {ADMIN_USER}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        path.chmod(0o600)  # the database URI holds the PostgreSQL password
        return path


def admin_password() -> tuple[str, bool]:
    """CNN_ADMIN_PASSWORD, else a new random one; and whether it was generated (so it must be shown once)."""
    given = os.environ.get("CNN_ADMIN_PASSWORD")
    return (given, False) if given else (secrets.token_urlsafe(12), True)


SERVER_WORKERS = 4  # a team server's worker processes: a split search answers on several at once (bulk.py)


def start_mlflow_server(
    backend_uri: str,
    artifacts_dir: Path,
    port: int,
    host: str = "127.0.0.1",
    workers: int = 2,
    log_path: Path | None = None,
    auth: Auth | None = None,
) -> subprocess.Popen:
    """`mlflow server` on host:port, runs in backend_uri, artifacts proxied into artifacts_dir, behind MLflow's
    basic-auth app when `auth` is given; waits until it answers /health. The caller owns the process."""
    Path(artifacts_dir).mkdir(parents=True, exist_ok=True)
    log = open(log_path or os.devnull, "ab")  # noqa: SIM115 (the server process writes to it after we return)
    env = dict(os.environ)
    # MLflow's job runner (GenAI evaluation, trace roll-ups) starts four more processes this project never uses.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    auth_options = []
    if auth:
        env.update(
            MLFLOW_AUTH_CONFIG_PATH=str(auth.write_config(Path(artifacts_dir).resolve().parent)),
            MLFLOW_AUTH_ADMIN_PASSWORD=auth.admin_password,
        )
        # The auth app's CSRF key, shared by the server's workers; a new one each start unless set.
        env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_hex(32))
        auth_options = ["--app-name", "basic-auth"]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            backend_uri,
            "--artifacts-destination",
            str(Path(artifacts_dir).resolve()),
            "--serve-artifacts",
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            str(workers),
            *auth_options,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )
    log.close()
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(
                f"mlflow server exited with code {process.returncode}" + (f"; its log: {log_path}" if log_path else "")
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise ServerError(f"mlflow server did not answer on {url} within 120 s")


def run_checked(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise ServerError(f"{what} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")

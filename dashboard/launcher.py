"""Advice from the dashboard: `python -m experiments advise TARGET` run as a command, never imported (the dashboard
only reads the store): --json for the proposals, --run in the background for a launch, SIGTERM to stop it.

A launch outlives the dashboard (its own session of processes) and is found again by its lock and record
(core.launches) and its runs by their tags. Who may launch: anyone on an embedded store, a user with edit permission
on the experiment on a team server, nobody on a dashboard opened read-only.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from core.launches import LOCK_FD_ENV, Launch
from core.store import STORE_TIMEOUT_SECONDS, Credentials, env_credentials, is_server

REPO_ROOT = Path(__file__).resolve().parents[1]
READ_ONLY_ENV = "CNN_DASHBOARD_READ_ONLY"  # set (to anything but 0) to open a dashboard that launches nothing
ADVICE_SECONDS = 120  # the runner's import, the store's reads and the follow-ups' checks


@dataclass(frozen=True)
class Advice:
    """The proposals for a target as `advise --json` prints them."""

    target: str
    label: str
    experiment: str  # where its runs are logged (the name)
    diagnosis: str
    proposals: tuple[dict, ...]  # rule, runs (each its changes in words), expects, why
    spec: str
    runs: int  # runs a launch trains in all (the original's missing seeds and each proposal's seeds)
    missing: int  # of them, those not trained yet
    resumed: int  # of those, the ones stopped earlier that a launch resumes


def advise_args(target: str, seeds: int, *extra: str) -> list[str]:
    return ["-m", "experiments", "advise", target, "--seeds", str(seeds), *extra]


def shown_command(target: str, seeds: int, max_runs: int) -> str:
    """The command a terminal runs to train the advice, as the page shows it."""
    return "python " + " ".join(advise_args(target, seeds, "--run", "--max-runs", str(max_runs)))


def runner_env(uri: str, signed_in: Credentials | None) -> dict:
    """The runner's environment: the dashboard's, its store, and a signed-in session's user (in the environment,
    where MLflow reads it, never on the command line where `ps` shows it)."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONUNBUFFERED": "1"}
    if signed_in is not None:
        env.update(MLFLOW_TRACKING_USERNAME=signed_in.user, MLFLOW_TRACKING_PASSWORD=signed_in.password)
    return env


def read_advice(uri: str, target: str, seeds: int, signed_in: Credentials | None = None) -> Advice | str:
    """The advice for `target`, or the runner's one line saying why there is none (as `signed_in`'s user, else the
    environment's)."""
    try:
        done = subprocess.run(
            [sys.executable, *advise_args(target, seeds, "--json")],
            cwd=REPO_ROOT,
            env=runner_env(uri, signed_in),
            capture_output=True,
            text=True,
            timeout=ADVICE_SECONDS,
        )
    except subprocess.TimeoutExpired:
        return f"`advise` did not answer within {ADVICE_SECONDS} s"
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"advise exited with {done.returncode}"]
        return lines[-1].removeprefix("python -m experiments: error: ")
    try:
        found = json.loads(done.stdout)
        return Advice(**{**found, "proposals": tuple(found["proposals"])})
    except (ValueError, TypeError, KeyError) as err:
        return f"`advise --json` printed what this dashboard cannot read ({err}): is the runner of another version?"


def start(uri: str, target: str, seeds: int, max_runs: int, runs: int, signed_in: Credentials | None = None) -> bool:
    """Start `advise --run` in the background, unless a training of this advice holds its lock (then False). The
    lock is taken here and handed to the runner, so a second click never starts a second batch."""
    launch = Launch(uri, target)
    fd = launch.try_lock(wait=1.0)
    if fd is None:
        return False
    try:
        who = signed_in or env_credentials()
        launch.write_record(
            fresh=True,
            started=time.time(),
            seeds=seeds,
            max_runs=max_runs,
            missing=runs,
            user=who.user if who else None,
        )
        with launch.log_path.open("a") as log:  # every launch's log kept, the newest last (its tail on the page)
            log.write(f"\n# launch of {time.strftime('%Y-%m-%d %H:%M:%S')}, {runs} runs\n")
            log.flush()
            process = subprocess.Popen(
                [sys.executable, *advise_args(target, seeds, "--run", "--max-runs", str(max_runs))],
                cwd=REPO_ROOT,
                env={**runner_env(uri, signed_in), LOCK_FD_ENV: str(fd)},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(fd,),
                start_new_session=True,  # it outlives the dashboard, and is stopped as one group
            )
        launch.write_record(pid=process.pid, pgid=process.pid)
    finally:
        os.close(fd)
    threading.Thread(target=record_exit, args=(launch, process), daemon=True).start()
    return True


def record_exit(launch: Launch, process: subprocess.Popen) -> None:
    """Reap the runner when it ends (no zombie left) and record how it exited, for the page to show a failure."""
    launch.write_record(exit=process.wait())


def is_advise(pid: int) -> bool:
    """Whether process `pid` is a runner of `advise` (not another process that got its number since)."""
    try:
        return b"advise" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def stop(uri: str, target: str) -> bool:
    """Stop the training of this advice: SIGTERM to its processes, whose run in progress ends KILLED with its
    checkpoint (a next launch resumes it). False when nothing is training it, or not a process this can stop."""
    launch = Launch(uri, target)
    record = launch.record()
    pid = record.get("pid")
    if not pid or not launch.training() or not is_advise(pid):
        return False
    try:
        os.killpg(record.get("pgid", pid), signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def read_only_problem() -> str | None:
    """Why nothing may be launched or stopped here, when the dashboard was started with CNN_DASHBOARD_READ_ONLY
    (set to anything but 0)."""
    if os.environ.get(READ_ONLY_ENV, "0") not in ("", "0"):
        return f"this dashboard is opened read-only ({READ_ONLY_ENV})"
    return None


def why_cannot_launch(uri: str, experiment_id: str | None, signed_in: Credentials | None = None) -> str | None:
    """None when this dashboard may train runs into the experiment (None: one that does not exist yet, which
    the runner creates) as `signed_in`'s user, else the environment's; otherwise why not, in one line."""
    if problem := read_only_problem():
        return problem
    if not is_server(uri) or experiment_id is None:
        return None
    return server_permission_problem(uri, experiment_id, signed_in or env_credentials())


def why_cannot_stop(uri: str, record: dict, user: str | None) -> str | None:
    """None when this session may stop the launch of `record`: on an embedded store anyone who may launch, on a
    server only the user who launched it (another who may only read its runs must not end their training)."""
    if problem := read_only_problem():
        return problem
    if is_server(uri) and record.get("user") != user:
        return f"{record.get('user') or 'another user'} launched it; only they can stop it"
    return None


def server_permission_problem(uri: str, experiment_id: str, credentials: Credentials | None) -> str | None:
    """On a server with MLflow's basic-auth app, None only for an admin or a user with EDIT or MANAGE on the
    experiment; a server without it lets anyone write."""
    try:
        return permission_problem(uri.rstrip("/"), experiment_id, credentials)
    except (requests.RequestException, ValueError) as err:
        return f"the server's permissions could not be read ({type(err).__name__})"


def permission_problem(base: str, experiment_id: str, credentials: Credentials | None) -> str | None:
    user = credentials.user if credentials else None
    auth = credentials.basic_auth() if credentials else None
    got = requests.get(
        f"{base}/api/2.0/mlflow/users/get", params={"username": user or ""}, auth=auth, timeout=STORE_TIMEOUT_SECONDS
    )
    if got.status_code == 404 and "json" not in got.headers.get("content-type", ""):
        return None  # no auth app: the endpoint does not exist
    if not user or got.status_code in (401, 403):
        return "the server needs a signed-in user with edit permission on the experiment"
    if got.ok and got.json().get("user", {}).get("is_admin"):
        return None
    permission = requests.get(
        f"{base}/api/3.0/mlflow/users/permissions/get",
        params={"username": user, "resource_type": "experiment", "resource_id": experiment_id},
        auth=auth,
        timeout=STORE_TIMEOUT_SECONDS,
    )
    name = permission.json().get("permission", "unknown") if permission.ok else "unknown"
    if name in ("EDIT", "MANAGE"):
        return None
    return f"{user} has {name} permission on this experiment; launching needs EDIT or MANAGE"

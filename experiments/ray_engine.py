"""Many runs on a Ray cluster: `sweep SPEC --ray [ADDRESS] --workers N` starts N sweep workers as Ray tasks;
`suite SPEC --ray` and `train --repeats N --ray` train each run as a Ray task, as many at once as the cluster has
room for.

Ray places the work (a CPU each, and the GPUs a run asks for) and starts again a task whose process or node died;
Optuna's storage keeps a sweep's trials as it does for workers started by hand (a dead worker's trial is failed after
its heartbeats stop and queued again, experiments.sweeps); MLflow keeps the runs. A run's task started again trains
the run afresh, as a new run: the one that died stays RUNNING until `reap` ends it FAILED (it can then be resumed).
Ctrl-C cancels the tasks: a run in progress ends KILLED with its checkpoint, as it does on one machine. Ray is
imported here only, and only by a command given --ray.

The workers run this project's code from the path it has on the machine that starts the sweep (PYTHONPATH), with
its tracking URI and credentials: every node needs the project there, with its virtual environment, and must reach
the tracking server and the Optuna storage (docs/scaling.md).
"""

import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna

from core.settings import ConfigError
from core.store import REPO_ROOT, tracking_uri
from experiments import interrupts
from experiments.config import RunConfig
from experiments.run import RunResult, check, execute
from experiments.specs import Spec, spec_path
from experiments.sweeps import default_storage, open_storage, record_summary, run_worker

PASSED_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "CNN_DATA_DIR")


def sweep_worker(spec_name: str, spec_text: str, storage_url: str, heartbeat_seconds: int) -> dict:
    """One sweep worker in a Ray task: the spec as the driver read it, then trials until the sweep is done."""
    interrupts.install_where_unset()  # Ray's cancel is a KeyboardInterrupt: held back while an epoch is committed
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{spec_name}.toml"
        path.write_text(spec_text)
        spec = Spec.load(str(path))
    return run_worker(spec, storage_url, heartbeat_seconds=heartbeat_seconds)


def worker_env() -> dict[str, str]:
    """What a worker needs of this process's environment: the project on its path, the store and who writes."""
    env = {"PYTHONPATH": str(REPO_ROOT), "MLFLOW_TRACKING_URI": tracking_uri()}
    return env | {name: os.environ[name] for name in PASSED_ENV if name in os.environ}


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """A HOST:PORT that does not answer is one line within seconds (Ray itself keeps trying for minutes)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", or a ray:// or named address: Ray resolves it
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise RayError(f"--ray {address}: no Ray cluster answers there ({err.strerror or err})") from err


class RayError(ConfigError):
    """The Ray cluster cannot be used, or a task on it failed: one line."""


class Stopped(KeyboardInterrupt):
    """Ctrl-C on the command: the tasks were cancelled and their runs in progress ended KILLED."""


RETRIES = 3  # a task whose process or node died is started again this often, then reported failed
STOP_SECONDS = 60  # after Ctrl-C, how long the cancelled tasks get to end their runs KILLED
# A task still running this long after its cancel is cancelled again: twice in a loaded CI (2026-12-04) a run trained
# on after Ctrl-C, as if its interrupt had been lost, and a second interrupt does not wait for an epoch's commit.
RECANCEL_SECONDS = 15


@contextmanager
def cluster(address: str, gpus_per_run: float | None) -> Iterator[Callable]:
    """Joined to the Ray cluster at `address`; yields a decorator that makes a function a Ray task asking for a CPU
    and `gpus_per_run` GPUs (default: 1 where the cluster has GPUs, else 0)."""
    import ray  # noqa: PLC0415 - a command without --ray never pays for Ray's import

    check_reachable(address)
    try:
        ray.init(address=address, runtime_env={"env_vars": worker_env()}, log_to_driver=True)
    except Exception as err:  # no cluster there, or another Ray version: one line
        raise RayError(f"--ray {address}: cannot join the cluster ({str(err).strip().splitlines()[0]})") from err
    try:
        gpus = gpus_per_run if gpus_per_run is not None else (1 if ray.cluster_resources().get("GPU") else 0)
        yield ray.remote(num_cpus=1, num_gpus=gpus, max_retries=RETRIES)
    finally:
        ray.shutdown()


def outcomes(refs: list) -> Iterator[tuple[int, object]]:
    """Each task's position and result (or the exception it ended with), as they finish. Ctrl-C cancels them all,
    waits for their runs to end KILLED, and raises Stopped; a caller that stops early cancels what is left too."""
    import ray  # noqa: PLC0415

    waiting = {ref: i for i, ref in enumerate(refs)}
    try:
        while waiting:
            (ready,), _ = ray.wait(list(waiting), num_returns=1)
            position = waiting.pop(ready)
            try:
                yield position, ray.get(ready)
            except ray.exceptions.RayTaskError as err:  # the task's own error, as raised there
                yield position, err.cause or err
            except ray.exceptions.RayError as err:  # its process or node lost more often than retried
                yield position, RayError(str(err).strip().splitlines()[-1])
    except KeyboardInterrupt:
        cancel(waiting)
        raise Stopped from None
    finally:
        cancel(waiting)


def cancel(waiting: dict) -> None:
    """Cancel the tasks still running (a KeyboardInterrupt in each: its run ends KILLED with its checkpoint) and
    give them STOP_SECONDS to end."""
    import ray  # noqa: PLC0415

    for ref in waiting:
        ray.cancel(ref)
    if waiting:
        _, running = ray.wait(list(waiting), num_returns=len(waiting), timeout=RECANCEL_SECONDS)
        for ref in running:
            ray.cancel(ref)
        if running:
            ray.wait(running, num_returns=len(running), timeout=STOP_SECONDS - RECANCEL_SECONDS)
    waiting.clear()


def train_one(config: RunConfig) -> RunResult:
    """One run in a Ray task: what `train` does for it on this machine."""
    interrupts.install_where_unset()  # Ray's cancel is a KeyboardInterrupt: held back while an epoch is committed
    return execute(config)


def ray_runs(configs: list[RunConfig], address: str, gpus_per_run: float | None) -> Iterator[tuple[int, object]]:
    """Train every configuration as a Ray task on the cluster at `address`, as many at once as it has room for;
    yields each one's position in `configs` and its RunResult (or the exception it failed with) as they finish.
    Every configuration is checked now, before the cluster is joined, so a bad setting is one line."""
    for config in configs:
        check(config)
    return trained_on(configs, address, gpus_per_run)


def trained_on(configs: list[RunConfig], address: str, gpus_per_run: float | None) -> Iterator[tuple[int, object]]:
    with cluster(address, gpus_per_run) as task:
        train = task(train_one)
        yield from outcomes([train.remote(config) for config in configs])


def ray_sweep(
    spec_file: str, storage_url: str | None, address: str, workers: int, gpus_per_run: float | None, heartbeat: int
) -> dict:
    """Run `workers` sweep workers on the Ray cluster at `address` until the sweep is done; the sweep's summary.
    Ctrl-C cancels them: the run in progress ends KILLED, its trial is handed back."""
    spec, storage_url = Spec.load(spec_file), storage_url or default_storage()
    with cluster(address, gpus_per_run) as task:
        worker, text = task(sweep_worker), spec_path(spec_file).read_text()
        for _, outcome in outcomes([worker.remote(spec.name, text, storage_url, heartbeat) for _ in range(workers)]):
            if isinstance(outcome, BaseException):
                raise RayError(f"--ray: a sweep worker failed ({outcome})") from outcome
    storage = open_storage(storage_url, heartbeat, spec.retries)
    return record_summary(optuna.load_study(study_name=spec.name, storage=storage))

"""Sweeps on a Ray cluster: `sweep SPEC --ray [ADDRESS] --workers N` starts N sweep workers as Ray tasks.

Ray places the workers (a CPU each, and the GPUs a run asks for) and starts again a worker whose process or node
died; Optuna's storage keeps the trials as it does for workers started by hand (a dead worker's trial is failed
after its heartbeats stop and queued again, experiments.sweeps); MLflow keeps the runs. Ray is imported here only,
and only by a command given --ray.

The workers run this project's code from the path it has on the machine that starts the sweep (PYTHONPATH), with
its tracking URI and credentials: every node needs the project there, with its virtual environment, and must reach
the tracking server and the Optuna storage (docs/scaling.md).
"""

import os
import socket
import tempfile
from pathlib import Path

import optuna

from core.store import REPO_ROOT, tracking_uri
from experiments.specs import Spec, spec_path
from experiments.sweeps import SweepError, default_storage, open_storage, record_summary, run_worker

PASSED_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "CNN_DATA_DIR")


def sweep_worker(spec_name: str, spec_text: str, storage_url: str, heartbeat_seconds: int) -> dict:
    """One sweep worker in a Ray task: the spec as the driver read it, then trials until the sweep is done."""
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
        raise SweepError(f"--ray {address}: no Ray cluster answers there ({err.strerror or err})") from err


def ray_sweep(
    spec_file: str, storage_url: str | None, address: str, workers: int, gpus_per_run: float | None, heartbeat: int
) -> dict:
    """Run `workers` sweep workers on the Ray cluster at `address` until the sweep is done; the sweep's summary.
    Ctrl-C cancels them: the run in progress ends KILLED, its trial is handed back."""
    import ray  # noqa: PLC0415 - a sweep without --ray never pays for Ray's import

    spec, storage_url = Spec.load(spec_file), storage_url or default_storage()
    check_reachable(address)
    try:
        ray.init(address=address, runtime_env={"env_vars": worker_env()}, log_to_driver=True)
    except Exception as err:  # no cluster there, or another Ray version: one line
        raise SweepError(f"--ray {address}: cannot join the cluster ({str(err).strip().splitlines()[0]})") from err
    try:
        gpus = gpus_per_run if gpus_per_run is not None else (1 if ray.cluster_resources().get("GPU") else 0)
        task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=3)(sweep_worker)  # 3: a worker lost thrice fails
        text = spec_path(spec_file).read_text()
        refs = [task.remote(spec.name, text, storage_url, heartbeat) for _ in range(workers)]
        try:
            ray.get(refs)
        except ray.exceptions.RayError as err:  # a worker's own error, or one lost more often than retried
            raise SweepError(f"--ray: a sweep worker failed ({str(err).strip().splitlines()[-1]})") from err
        except KeyboardInterrupt:
            for ref in refs:
                ray.cancel(ref)  # a KeyboardInterrupt in each worker: its run ends KILLED, its trial goes back
            raise
    finally:
        ray.shutdown()
    storage = open_storage(storage_url, heartbeat, spec.retries)
    return record_summary(optuna.load_study(study_name=spec.name, storage=storage))

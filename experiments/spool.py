"""When the store goes away during a run: what counts as an outage, and the epoch spooled on this machine
until `train --resume` logs it."""

import os
from pathlib import Path

import numpy as np
import requests
import torch

from core.store import DEFAULT_STORE

# On this machine: what a run could not log while its store was away (CNN_SPOOL_DIR moves it).
SPOOL_DIR = Path(os.environ.get("CNN_SPOOL_DIR") or DEFAULT_STORE / "spool")


class StoreAway(RuntimeError):
    """The store stopped answering during a run and stayed away for the run's store_retry seconds: the run stops,
    its last epoch and checkpoint spooled on this machine, to be logged by `train --resume RUN_ID`."""

    def __init__(self, run_id: str, epoch: int, spool: Path | None, seconds: float, cause: Exception):
        reason = str(cause).strip().splitlines()[0][:200] if str(cause).strip() else type(cause).__name__
        kept = (
            f"epoch {epoch} and its checkpoint are saved in {spool}, every earlier one is logged. Once the store is "
            f"back: `python -m experiments train --resume {run_id}`"
            if spool
            else f"epoch {epoch} was not logged, every earlier one is (a loop of your own has no checkpoint to resume "
            "from). Once the store is back, `python -m experiments reap` ends the run FAILED"
        )
        super().__init__(
            f"the tracking store stopped answering during run {run_id} and stayed away {seconds:.0f} s ({reason}); "
            + kept
        )
        self.run_id = run_id


def is_outage(err: Exception) -> bool:
    """Whether a failed store call means the store is unreachable (worth waiting for), not that it refused."""
    return (
        isinstance(err, (requests.RequestException, ConnectionError, TimeoutError))
        or "failed with exception" in str(err)
        or "failed with timeout exception" in str(err)
    )


def spool_path(run_id: str) -> Path:
    return SPOOL_DIR / run_id / "epoch.pt"


def read_spool(run_id: str) -> dict | None:
    """A run's spooled epoch ({record: EpochRecord fields, checkpoint}), tensors and numbers only, or None."""
    path = spool_path(run_id)
    return torch.load(path, weights_only=True) if path.exists() else None


def tensor_tree(obj):
    """The same nested dicts and lists with numpy arrays as torch tensors, so torch.load(weights_only=True) reads it."""
    if isinstance(obj, dict):
        return {str(k) if isinstance(k, str) else k: tensor_tree(v) for k, v in obj.items()}  # Names -> plain str
    if isinstance(obj, (list, tuple)):
        return type(obj)(tensor_tree(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    return obj

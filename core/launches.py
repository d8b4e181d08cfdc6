"""One training of a piece of advice at a time: a lock per (store, target) that `advise --run` holds while it trains,
and the record and log of a launch the dashboard started, in this machine's cache folder.

A second click, a second page or the command line finds the lock held and trains nothing twice. The dashboard takes
the lock before it starts the runner and hands it over (the runner inherits the locked file, named by LOCK_FD_ENV),
so no second launch can slip in while the runner starts. The record keeps the runner's process id, so that a
dashboard started again finds the launch, follows its log and can stop it.
"""

import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

LOCK_FD_ENV = "CNN_ADVICE_LOCK_FD"  # the lock's file descriptor, inherited from the dashboard that took it
LAUNCH_DIR_ENV = "CNN_LAUNCH_DIR"


class LaunchBusy(RuntimeError):
    """The advice is being trained already; one line says by which process."""


def launch_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cnn-dashboard" / "launches"
    return Path(os.environ.get(LAUNCH_DIR_ENV) or default)


@dataclass(frozen=True)
class Launch:
    """The training of one target's advice against one store: its lock, record and log files."""

    uri: str
    target: str

    @property
    def stem(self) -> Path:
        key = hashlib.sha256(f"{self.uri}\n{self.target}".encode()).hexdigest()[:20]
        return launch_dir() / key

    @property
    def lock_path(self) -> Path:
        return self.stem.with_suffix(".lock")

    @property
    def record_path(self) -> Path:
        return self.stem.with_suffix(".json")

    @property
    def log_path(self) -> Path:
        return self.stem.with_suffix(".log")

    def open_lock(self) -> int:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)

    def try_lock(self) -> int | None:
        """The lock's descriptor, locked, or None when a training holds it."""
        fd = self.open_lock()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def training(self) -> bool:
        """Whether some process is training this advice now."""
        fd = self.try_lock()
        if fd is None:
            return True
        os.close(fd)
        return False

    def version(self) -> str:
        """Changes when a launch starts or ends: what the dashboard keys its reads of this advice by."""
        return f"{self.record().get('started', 0)}:{self.training()}"

    def record(self) -> dict:
        """The last launch the dashboard made of this advice (pid, command, seeds, max_runs), or {}."""
        try:
            return json.loads(self.record_path.read_text())
        except (OSError, ValueError):
            return {}

    def write_record(self, **fields) -> None:
        self.record_path.write_text(json.dumps(fields))

    def log_tail(self, lines: int = 8) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return []


@contextmanager
def holding(launch: Launch):
    """The block that trains `launch`'s advice, holding its lock: the one the dashboard handed over, or taken here;
    LaunchBusy when another process holds it."""
    handed = os.environ.pop(LOCK_FD_ENV, None)
    fd = int(handed) if handed else launch.try_lock()
    if fd is None:
        pid = launch.record().get("pid")
        by = f" (process {pid})" if pid else ""
        raise LaunchBusy(f"{launch.target}: its advice is being trained already{by}; wait for it or stop it first")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a no-op on the handed lock, which this process holds
        yield
    finally:
        os.close(fd)

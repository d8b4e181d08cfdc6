"""One training of a piece of advice at a time: a lock per (store, target) that `advise --run` holds while it trains,
and the record and log of a launch the dashboard started, in this machine's cache folder.

A second click, a second page or the command line on this machine finds the lock held and trains nothing twice
(two machines advising the same target at once are not kept apart: the lock lives in each one's cache folder).
The dashboard takes the lock before it starts the runner and hands it over (the runner inherits the locked file,
named by LOCK_FD_ENV), so no second launch can slip in while the runner starts. The record keeps the runner's
process id, so that a dashboard started again finds the launch, follows its log and can stop it.
"""

import fcntl
import hashlib
import json
import os
import re
import time
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

    def try_lock(self, wait: float = 0.0) -> int | None:
        """The lock's descriptor, locked, or None when a training holds it (after `wait` seconds of trying: a
        dashboard looking whether it is held takes it for a moment)."""
        fd = self.open_lock()
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return None
                time.sleep(0.05)

    def training(self) -> bool:
        """Whether some process holds the lock: this advice is being trained now."""
        try:
            fd = self.try_lock()
        except OSError:  # no cache folder to write (a read-only home): nothing was launched from here
            return False
        if fd is None:
            return True
        os.close(fd)
        return False

    def record(self) -> dict:
        """What the last launch of this advice wrote: its process (pid, pgid), when it started, and from the
        dashboard the seeds, the cap, the runs it trains and how its process exited; {} for none."""
        try:
            return json.loads(self.record_path.read_text())
        except (OSError, ValueError):
            return {}

    def write_record(self, fresh: bool = False, **fields) -> None:
        """Add fields to the record (a new one when `fresh`)."""
        self.record_path.parent.mkdir(parents=True, exist_ok=True)
        self.record_path.write_text(json.dumps({**({} if fresh else self.record()), **fields}))

    def log_tail(self, lines: int = 8) -> list[str]:
        """The log's last lines; a progress bar's carriage returns end lines too."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [line for line in re.split(r"[\r\n]+", text) if line.strip()][-lines:]


def same_file(fd: int, path: Path) -> bool:
    try:
        found, expected = os.fstat(fd), path.stat()
    except OSError:
        return False
    return (found.st_dev, found.st_ino) == (expected.st_dev, expected.st_ino)


@contextmanager
def holding(launch: Launch):
    """The block that trains `launch`'s advice, holding its lock (the one the dashboard handed over, or taken
    here) and recording this process in the launch's record; LaunchBusy when another process holds it."""
    handed = os.environ.pop(LOCK_FD_ENV, None)
    if handed and not same_file(int(handed), launch.lock_path):
        handed = None  # a descriptor meant for another launch's lock
    fd = int(handed) if handed else launch.try_lock(wait=2.0)
    if fd is None:
        pid = launch.record().get("pid")
        by = f" (process {pid})" if pid else ""
        raise LaunchBusy(f"{launch.target}: its advice is being trained already{by}; wait for it or stop it first")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a no-op on the handed lock, which this process holds
        os.set_inheritable(fd, False)  # a process this one starts must not keep the lock after it ends
        if not handed:  # started from a terminal: a record of its own
            launch.write_record(fresh=True, started=time.time())
        launch.write_record(pid=os.getpid(), pgid=os.getpgid(0))
        yield
    finally:
        os.close(fd)

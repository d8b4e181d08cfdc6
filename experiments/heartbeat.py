"""The runner's heartbeat, stamped on its run while it lives, and `reap`, which ends runs whose heartbeat stopped."""

import contextlib
import threading
import time

from mlflow.tracking import MlflowClient

from core.liveness import LOST_AFTER_BEATS, lost_since, now_ms
from core.schema import Tag


class Heartbeat:
    """A daemon thread that stamps the run's heartbeat tag every `seconds` while its runner lives, so that a
    reader can tell a lost run (runner killed, machine gone) from a slow one."""

    def __init__(self, client: MlflowClient, run_id: str, seconds: float):
        self.client, self.run_id, self.seconds = client, run_id, seconds
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.beat_until_stopped, name=f"heartbeat-{run_id[:8]}", daemon=True)

    def start(self) -> "Heartbeat":
        self.client.set_tag(self.run_id, Tag.HEARTBEAT_SECONDS, str(self.seconds))
        self.beat()
        self.thread.start()
        return self

    def beat(self) -> None:
        with contextlib.suppress(Exception):  # a busy or briefly unreachable store: the next beat tries again
            self.client.set_tag(self.run_id, Tag.HEARTBEAT, str(now_ms()))

    def beat_until_stopped(self) -> None:
        while not self.stopped.wait(self.seconds):
            self.beat()

    def stop(self) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join()


def reap(client: MlflowClient, now: int) -> list[tuple[str, str]]:
    """End every lost run FAILED with the reason (it can then be resumed); returns (run id, reason) pairs."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    running = (
        client.search_runs(experiments, "attributes.status = 'RUNNING'", max_results=50_000) if experiments else []
    )
    reaped = []
    for run in running:
        since = lost_since(run.info.status, run.data.tags, now)
        if since is None:
            continue
        reason = (
            f"lost: no heartbeat since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since / 1000))} "
            f"({(now - since) / 1000:.0f} s, more than {LOST_AFTER_BEATS} heartbeat intervals); reaped"
        )
        client.set_tag(run.info.run_id, Tag.ERROR, reason)
        client.set_terminated(run.info.run_id, status="FAILED")
        reaped.append((run.info.run_id, reason))
    return reaped

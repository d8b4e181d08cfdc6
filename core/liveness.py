"""Whether a RUNNING run still has a runner: its heartbeat tag, read the same way by `reap` and the dashboard."""

import time

from core.schema import Tag
from core.settings import SETTINGS

LOST_AFTER_BEATS = 3  # a RUNNING run whose heartbeat is older than this many intervals has lost its runner


def now_ms() -> int:
    return int(time.time() * 1000)


def lost_since(status: str, tags: dict, now: int) -> int | None:
    """When a RUNNING run's heartbeat stopped (ms), if it is older than LOST_AFTER_BEATS intervals; else None.
    Runs without heartbeats (other tools, older runs) are never called lost: nothing tells them from slow ones."""
    if status != "RUNNING" or Tag.HEARTBEAT not in tags:
        return None
    try:
        last = int(tags[Tag.HEARTBEAT])
        interval = float(tags.get(Tag.HEARTBEAT_SECONDS, SETTINGS["heartbeat"].default))
    except ValueError:
        return None
    return last if now - last > LOST_AFTER_BEATS * interval * 1000 else None

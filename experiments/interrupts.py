"""Ctrl-C and SIGTERM as KeyboardInterrupt, held back while an epoch is being committed to the store.

An epoch's metrics, confusion matrices and checkpoint are written together (run_logger.RunLogger.log_epoch);
an interrupt arriving in the middle waits for the end of that block, so a resumed run neither repeats
nor loses an epoch. A second one does not wait.
"""

import signal
import threading
from collections.abc import Callable
from contextlib import contextmanager

_held = {"depth": 0, "pending": None}


def on_signal(signum, frame) -> None:
    """Signal handler for SIGINT and SIGTERM: interrupt now, or as soon as the current commit ends; a second
    signal during a commit interrupts at once (a store that hangs must not trap the user)."""
    name = signal.Signals(signum).name
    if _held["depth"] and not _held["pending"]:
        _held["pending"] = name
        return
    raise KeyboardInterrupt(name)


def install() -> None:
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)


def install_where_unset() -> Callable[[], None]:
    """For a program of yours (experiments.track): Ctrl-C and SIGTERM as here, where they still have Python's own
    handlers and this is the main thread; a handler your program or its framework installed is left alone.
    Returns what puts the handlers back."""
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    replaced = {signum: signal.getsignal(signum) for signum, default in defaults.items()}
    replaced = {signum: handler for signum, handler in replaced.items() if handler is defaults[signum]}
    for signum in replaced:
        signal.signal(signum, on_signal)

    def restore() -> None:
        if threading.current_thread() is threading.main_thread():
            for signum, handler in replaced.items():
                if signal.getsignal(signum) is on_signal:
                    signal.signal(signum, handler)

    return restore


@contextmanager
def held():
    """A block that an interrupt does not cut in two."""
    _held["depth"] += 1
    try:
        yield
    finally:
        _held["depth"] -= 1
        if not _held["depth"] and _held["pending"]:
            name, _held["pending"] = _held["pending"], None
            raise KeyboardInterrupt(name)

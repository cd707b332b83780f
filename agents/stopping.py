"""Stopping an agent's loops on SIGTERM or SIGINT without a deadlock.

Boundary: process plumbing shared by the D-MA and the demo service; no other state. Their loops
wait on a `threading.Event` (`stop.wait(period)`, several times a second) and a signal handler
asks them to stop. A Python signal handler runs in the main thread between two bytecodes, which
may be while that thread holds the event's own lock (inside `Event.wait`, before it waits or as
it wakes). `Event.set` there waits for a lock its own thread holds, and the process never stops
(the same class as python/cpython#126434, where a separate thread is the advice). A D-MA that had
not exited 10 s after SIGTERM was seen once in a full unit run (tests/test_dma.py), not since;
that this was its cause is not shown, only that it could be. So the handler only starts a
thread that sets the event; that thread takes the lock as soon as the main thread lets go.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

Handler = Callable[[int, FrameType | None], None]


def setter(stop: threading.Event) -> Handler:
    """A signal handler that sets `stop` from a thread of its own (module docstring)."""
    def on_signal(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=stop.set, name=f"stop-on-{signum}", daemon=True).start()
    return on_signal


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set `stop` (from the main thread, where handlers can be installed)."""
    handler = setter(stop)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)

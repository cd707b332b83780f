"""The process's signals around a start and a stop, shared by the manager and the app.

Boundary: the standard library only (the manager calls it before any framework or eventlet
import). Two rules:
  - a SIGHUP that comes before the app has installed its reload handler is held, not fatal
    (its default action ends the process): `hold_sighup` is the manager's first step, and the
    app asks `take_held_sighup` once its own handler is in place, then reloads once it runs;
  - once a stop has begun, SIGTERM and SIGINT are noted (logged once) and ignored, so that the
    stop's last store flush, bounded by its own deadline (apps/storeflush.py), completes:
    a second one used to interrupt it and lose writes already answered 201. SIGKILL still
    ends the process at once (the spill file covers a store outage: apps/storespill.py).
A handler only notes what came, or logs one line: it may interrupt any green thread.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

LOG = logging.getLogger("dyncast")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_held_hups = 0  # SIGHUPs that came before the app could reload
_ignored = 0  # SIGTERM/SIGINT that came while a stop was under way


def hold_sighup() -> None:
    """From now on a SIGHUP is counted, until the app installs its own handler."""
    signal.signal(signal.SIGHUP, _hold)


def _hold(signum: int, frame: Any) -> None:
    """A SIGHUP before the app can reload: only counted."""
    global _held_hups
    _held_hups += 1


def take_held_sighup() -> int:
    """How many SIGHUPs were held since the last call (0 if none); the count is cleared."""
    global _held_hups
    count, _held_hups = _held_hups, 0
    return count


def ignore_stop_signals() -> dict[int, Any]:
    """SIGTERM and SIGINT are noted and ignored from now on; return the handlers they had.

    Outside the main thread (an app embedded by a test) nothing changes and {} is returned.
    """
    before: dict[int, Any] = {}
    try:
        for signum in STOP_SIGNALS:
            before[signum] = signal.signal(signum, _ignore)
    except ValueError:  # not the main thread: signals are not ours to handle
        restore(before)
        return {}
    return before


def restore(handlers: dict[int, Any]) -> None:
    """Put back the handlers `ignore_stop_signals` returned."""
    for signum, handler in handlers.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


@contextmanager
def stop_under_way() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT are noted and ignored; then as they were."""
    before = ignore_stop_signals()
    try:
        yield
    finally:
        restore(before)


def _ignore(signum: int, frame: Any) -> None:
    """A SIGTERM or SIGINT during a stop: logged the first time, ignored every time."""
    global _ignored
    _ignored += 1
    if _ignored == 1:
        LOG.warning("dyncast: %s ignored: a stop is already under way (its last store flush "
                    "is bounded; SIGKILL ends the process at once)",
                    signal.Signals(signum).name)

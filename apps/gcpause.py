"""Short garbage-collection pauses (shell): what survives a full collection is frozen
(`gc.freeze`), so the next full collection walks only the objects made since, not every
instance's state again. Without it, at 5,000 instances each full collection walked the whole
heap on the event loop (tens to hundreds of ms, seen as late OpenFlow echo replies in
bench/control_plane.py). Boundary: shell; it touches only the interpreter's collector.

The price: an object frozen and later part of a garbage cycle (say, a gone switch's connection
objects) is not freed until the next unfreeze, which is done every `UNFREEZE_S` (that one
collection walks the whole heap again). Objects freed by reference counting, which is nearly
all of them, are freed as before.
"""

from __future__ import annotations

import gc
import time
from typing import Any

UNFREEZE_S = 3600.0  # frozen objects are handed back to the collector this often


class GcPauses:
    """Freezes the survivors of every full collection and times the collections."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.longest_s = 0.0  # the longest collection seen
        self.full = 0  # full collections seen
        self._started = 0.0
        self._thawed = clock()

    def install(self) -> None:
        """Watch the collector (once per process)."""
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        """Stop watching it."""
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self.clock()
            return
        now = self.clock()
        self.longest_s = max(self.longest_s, now - self._started)
        if info.get("generation") != 2:
            return
        self.full += 1
        if now - self._thawed >= UNFREEZE_S:
            self._thawed = now
            gc.unfreeze()  # the next full collection sees (and frees) every cycle again
        else:
            gc.freeze()

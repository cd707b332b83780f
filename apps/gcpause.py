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
import logging
import os
import time
from typing import Any

LOG = logging.getLogger("dyncast")

UNFREEZE_S = 3600.0  # frozen objects are handed back to the collector this often
ENV = "DYNCAST_GC_THRESHOLD"  # opt-in (an experiment, branch i15r): `gc.set_threshold` values
FREEZE_ENV = "DYNCAST_GC_FREEZE_YOUNG"  # opt-in (likewise): "1" freezes after generation 1 too


def freeze_young_from_env(env: dict[str, str] | None = None) -> bool:
    """Whether `DYNCAST_GC_FREEZE_YOUNG` asks to freeze the survivors of generation-1 collections
    too (then the oldest generation stays near empty: full collections walk only the young;
    the price, cycles kept until the next unfreeze, is larger)."""
    return (os.environ if env is None else env).get(FREEZE_ENV, "").strip() == "1"


def thresholds_from_env(env: dict[str, str] | None = None) -> tuple[int, ...]:
    """The collector thresholds from `DYNCAST_GC_THRESHOLD`, 1-3 positive integers separated
    by commas, e.g. `20000` or `20000,10,10` (the interpreter's are 700,10,10). Empty: () (keep
    the interpreter's); a bad value: () with a warning naming the variable."""
    raw = (os.environ if env is None else env).get(ENV, "").strip()
    if not raw:
        return ()
    try:
        got = tuple(int(part) for part in raw.split(","))
    except ValueError:
        got = ()
    if not 1 <= len(got) <= 3 or min(got) < 1:
        LOG.warning("dyncast: %s=%r is not 1-3 positive integers: collector thresholds "
                    "unchanged", ENV, raw)
        return ()
    return got


def apply_thresholds(env: dict[str, str] | None = None) -> tuple[int, int, int]:
    """Set the collector's thresholds from the environment (if asked); the ones in force."""
    got = thresholds_from_env(env)
    if got:
        gc.set_threshold(*got)
        LOG.info("dyncast: collector thresholds %s (%s)", gc.get_threshold(), ENV)
    return gc.get_threshold()


class GcPauses:
    """Freezes the survivors of every full collection and times the collections."""

    def __init__(self, clock: Any = time.monotonic, cpu: Any = time.thread_time) -> None:
        self.clock = clock
        self.cpu = cpu  # the collecting thread's CPU time (logged with a long collection)
        self._cpu_started = 0.0
        self.longest_s = 0.0  # the longest collection seen
        self.full = 0  # full collections seen
        self._started = 0.0
        self._thawed = clock()
        self.freeze_young = freeze_young_from_env()  # opt-in, see FREEZE_ENV
        self.log_over_s = 0.0  # collections at least this long are logged (0: none; set
        # with the stall watch, so that a stall's CPU can be told from the collector's)

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
            if self.log_over_s:
                self._cpu_started = self.cpu()
            return
        now = self.clock()
        took = now - self._started
        self.longest_s = max(self.longest_s, took)
        if self.log_over_s and took >= self.log_over_s:
            LOG.warning("dyncast: garbage collection of generation %s took %.1f ms (%.1f ms "
                        "CPU, %s collected)", info.get("generation"), took * 1000.0,
                        (self.cpu() - self._cpu_started) * 1000.0, info.get("collected"))
        if info.get("generation") == 1 and self.freeze_young and now - self._thawed < UNFREEZE_S:
            gc.freeze()  # what generation 1 promoted never reaches a full collection's walk
        if info.get("generation") != 2:
            return
        self.full += 1
        if now - self._thawed >= UNFREEZE_S:
            self._thawed = now
            gc.unfreeze()  # the next full collection sees (and frees) every cycle again
        else:
            gc.freeze()

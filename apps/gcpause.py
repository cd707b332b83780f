"""Short garbage-collection pauses (shell): what survives a collection of the two older
generations is frozen (`gc.freeze`), so a full collection walks only the objects made since
the last freeze, not every instance's state again. Without it, at 5,000 instances each full
collection walked the whole heap on the event loop (43-54 ms CPU, 12 per 100 s, seen as late
OpenFlow echo replies in bench/control_plane.py). Boundary: shell; it touches only the
interpreter's collector.

The price: a frozen object that later becomes part of a garbage cycle (a gone switch's
connection objects, an expired binding that referred to itself) is not freed while frozen.
So memory stays bounded by design: every `walk_s` ([controller] gc_full_walk_s, a day by
default; after a walk, sooner if the process's RSS doubled since it) the frozen objects are
handed back to the collector, its next full collection walks the whole heap once (160-220 ms
of CPU at 5,000 instances on a loaded machine) and frees those cycles, and what survives is
frozen again. Objects freed by reference counting, nearly all of them, are freed at once as
before (bench/results/gc_soak.txt: RSS under churn). A freeze also resets the collector's
counts, so with the generation-1 survivors frozen (the default) no full collection starts by
itself between walks: a collection walks only what was made since the last generation-1 one.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from typing import Any

LOG = logging.getLogger("dyncast")

WALK_S = 86400.0  # the default of [controller] gc_full_walk_s (controller/config.py)
GROWTH = 1.0  # after a walk, the next is due too once RSS grew by this share since then
PAGE = os.sysconf("SC_PAGE_SIZE")
ENV = "DYNCAST_GC_THRESHOLD"  # opt-in (an experiment, branch i15r): `gc.set_threshold` values
FREEZE_ENV = "DYNCAST_GC_FREEZE_YOUNG"  # "0": freeze only after full collections (as before)


def freeze_young_from_env(env: dict[str, str] | None = None) -> bool:
    """Whether the survivors of generation-1 collections are frozen too (then the oldest
    generation stays near empty and full collections walk only the young): yes unless
    `DYNCAST_GC_FREEZE_YOUNG` is "0"; a value other than "", "0" or "1" is warned about and
    changes nothing."""
    raw = (os.environ if env is None else env).get(FREEZE_ENV, "").strip()
    if raw not in ("", "0", "1"):
        LOG.warning("dyncast: %s=%r is not 0 or 1: survivors of generation-1 collections "
                    "frozen (the default)", FREEZE_ENV, raw)
    return raw != "0"


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
    """Freezes the survivors of every full collection (and, by default, of every generation-1
    collection), times the collections, and every `walk_s` hands the frozen objects back to
    the collector for one full walk, so that garbage cycles among them are freed."""

    def __init__(self, clock: Any = time.monotonic, cpu: Any = time.thread_time,
                 rss: Any = None) -> None:
        self.clock = clock
        self.rss = rss or rss_bytes  # the process's resident memory (0: unknown)
        self._rss_base = 0  # RSS after the last walk (0: none yet, or unknown)
        self.cpu = cpu  # the collecting thread's CPU time (logged with a long collection)
        self._cpu_started = 0.0
        self.longest_s = 0.0  # the longest collection seen
        self.full = 0  # full collections seen
        self.walks = 0  # scheduled full walks done (every frozen object looked at)
        self.frozen = 0  # objects frozen just after the last scheduled walk (0: none yet)
        self._started = 0.0
        self._thawed = clock()
        self._walking = False  # unfrozen, waiting for the full collection that walks all
        self.walk_s = WALK_S  # [controller] gc_full_walk_s; 0: never (cycles kept forever)
        self.freeze_young = freeze_young_from_env()  # on unless DYNCAST_GC_FREEZE_YOUNG=0
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
        generation = info.get("generation")
        if self.log_over_s and took >= self.log_over_s:
            LOG.warning("dyncast: garbage collection of generation %s took %.1f ms (%.1f ms "
                        "CPU, %s collected)", generation, took * 1000.0,
                        (self.cpu() - self._cpu_started) * 1000.0, info.get("collected"))
        if generation == 2:
            self.full += 1
        if self._walking:  # nothing frozen until a full collection has walked everything
            if generation == 2:
                self._walked(now, took, info)
            return
        # due after generation 1 too: a freeze resets the counts that start a full
        # collection, so with `freeze_young` none starts by itself until the unfreeze
        if generation and self._due(now):
            self._walking = True
            gc.unfreeze()  # the next full collection sees (and frees) every cycle again
        elif generation == 2 or (generation == 1 and self.freeze_young):
            gc.freeze()  # what this collection promoted never reaches a full one's walk

    def _due(self, now: float) -> bool:
        """Whether the frozen objects go back to the collector now: `walk_s` since the last
        walk, or RSS grew by `GROWTH` since then."""
        if self.walk_s and now - self._thawed >= self.walk_s:
            return True
        return bool(self._rss_base) and self.rss() > self._rss_base * (1 + GROWTH)

    def _walked(self, now: float, took: float, info: dict[str, Any]) -> None:
        """A full collection walked every object: freeze what it left, for `walk_s` more
        (or until RSS grew by `GROWTH` from now)."""
        self._walking = False
        self._thawed = now
        self._rss_base = self.rss()
        self.walks += 1
        gc.freeze()
        self.frozen = gc.get_freeze_count()  # a walk of its own (~15 ms at 2 M objects)
        LOG.info("dyncast: scheduled full garbage collection took %.1f ms, %s collected, "
                 "%d objects frozen again, RSS %.1f MB", took * 1000.0, info.get("collected"),
                 self.frozen, self._rss_base / 1e6)


def rss_bytes() -> int:
    """This process's resident set size (/proc/self/statm; 0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0

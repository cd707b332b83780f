"""Event-loop stall watch (shell, a debugging aid, off unless `DYNCAST_STALL_MS` is set): a
green thread beats every few ms; a real OS thread looks at the beat and, while the loop has not
beaten for longer than the threshold, samples the Python stack of the loop's OS thread
(`sys._current_frames`). When the loop beats again, the stall is logged with how long it was,
how much of it the loop's thread ran (CPU time: far less than the stall means the process was
not scheduled, say other work on its CPU) and where the samples found it; the longest stall is
kept for the Prometheus exposition.

Boundary: shell; it reads the interpreter's frames and touches nothing of the app. The watcher
thread only appends to a list the beat swaps out (both atomic under the GIL).
"""

from __future__ import annotations

import collections
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from eventlet import patcher

LOG = logging.getLogger("dyncast")
ENV = "DYNCAST_STALL_MS"
FRAMES = 14  # innermost frames of a sample shown
MAX_SAMPLES = 1000  # samples kept per stall (the beat ends with the app; the watcher does not)


def threshold_from_env(env: dict[str, str] | None = None) -> float:
    """The stall threshold in seconds from `DYNCAST_STALL_MS` (0: off; bad values: off)."""
    raw = (os.environ if env is None else env).get(ENV, "").strip()
    try:
        ms = float(raw) if raw else 0.0
    except ValueError:
        LOG.warning("dyncast: %s=%r is not a number of ms: stall watch off", ENV, raw)
        return 0.0
    return max(ms, 0.0) / 1000.0


def where(frame: Any, depth: int = FRAMES) -> str:
    """A frame's stack, innermost last, as `file:line fn` steps (paths shortened)."""
    steps = traceback.extract_stack(frame)[-depth:]
    return " < ".join(f"{'/'.join(s.filename.split('/')[-2:])}:{s.lineno} {s.name}"
                      for s in reversed(steps))


class StallWatch:
    """Beats on the event loop; an OS thread samples the loop's stack while it is late."""

    def __init__(self, threshold_s: float, clock: Callable[[], float] = time.monotonic,
                 cpu: Callable[[], float] = time.thread_time) -> None:
        self.threshold_s = threshold_s
        self.cpu = cpu  # the calling thread's CPU time (called on the loop's thread only)
        self._cpu_last = 0.0
        self.beat_s = max(threshold_s / 5.0, 0.002)
        self.clock = clock
        self.longest_s = 0.0  # the longest stall seen
        self.longest_cpu_s = 0.0  # the most CPU the loop's thread ran between two beats
        self.stalls = 0  # stalls seen
        self._last = clock()
        self._loop_ident = 0
        self._samples: list[str] = []

    def beat(self, sleep: Callable[[float], Any]) -> None:
        """The loop's side (a green thread): note each beat; after a late one, log the stall."""
        self._loop_ident = patcher.original("_thread").get_ident()
        self._cpu_last = self.cpu()
        while True:
            sleep(self.beat_s)
            self.stalled(self.clock())

    def stalled(self, now: float) -> float:
        """One beat at `now`: the stall since the last beat (0.0 if under the threshold)."""
        late = now - self._last - self.beat_s
        self._last = now
        cpu = self.cpu()
        ran, self._cpu_last = cpu - self._cpu_last, cpu
        self.longest_cpu_s = max(self.longest_cpu_s, ran)
        samples, self._samples = self._samples, []
        if late < self.threshold_s:
            return 0.0
        self.stalls += 1
        self.longest_s = max(self.longest_s, late)
        top = collections.Counter(samples).most_common(2)
        LOG.warning("dyncast: event loop stalled %.0f ms (%.0f ms CPU, %d samples)%s",
                    late * 1000.0, ran * 1000.0, len(samples),
                    "".join(f"\n  [{n}x] {stack}" for stack, n in top))
        return late

    def sample(self, now: float) -> bool:
        """The watcher's side: if the loop is late, sample its stack; True if it sampled."""
        if (not self._loop_ident or now - self._last < self.threshold_s
                or len(self._samples) >= MAX_SAMPLES):
            return False
        frame = sys._current_frames().get(self._loop_ident)
        if frame is None:
            return False
        self._samples.append(where(frame))
        return True

    def _watch(self) -> None:
        pause = patcher.original("time").sleep
        while True:
            pause(self.beat_s)
            self.sample(self.clock())

    def start(self, spawn: Callable[..., Any], sleep: Callable[[float], Any]) -> Any:
        """Start the beat (green, via `spawn`) and the watcher (a daemon OS thread)."""
        thread = patcher.original("threading").Thread(target=self._watch, daemon=True,
                                                      name="dyncast-stallwatch")
        thread.start()
        return spawn(self.beat, sleep)

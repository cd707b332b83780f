"""An instance's workers between two of its reports, as the controller models them.

Boundary: one report's counts and time, a holding time and the times of the new flows placed on
the instance since in; how many requests are at the instance at a given time, and how many of
them are those placements, out. No clock, no I/O; placements.py keeps one per instance that has
placements, decisions.py asks it.

The report's requests and the placements share the instance's `capacity` workers, first come
first served, each request holding a worker for the holding time: the report's sessions end
one per worker every `hold / capacity` (staggered, as the report's ageing assumes), its queue
and then each placement take the first worker to free, and a placement that finds every worker
busy waits behind the requests ahead of it. A placement made just before the report (which may
not show it) took a worker the report shows idle. Placements arrive in time order and hold
their workers alike, so they are served in order: each is a step on the worker heap, and a
count is a search in their (sorted) end times.
"""

from __future__ import annotations

import bisect
import heapq
import math

from controller.model import Metrics

COUNTED = 1024  # placements counted per instance between two reports, at most (the last ones)


class Workers:
    """The workers of one instance from one report on."""

    __slots__ = ("_backlog", "_done", "_free", "_step", "at", "hold", "metrics")

    def __init__(self, metrics: Metrics, at: float, hold: float) -> None:
        workers = max(1, metrics.capacity)
        self.metrics, self.at, self.hold = metrics, at, hold
        self._backlog = metrics.sessions + metrics.queue
        self._step = hold / workers
        # The report's k-th request ends at `at + k * step`; a worker the report shows idle was
        # idle before it. Only the COUNTED workers that free first are modelled: past that
        # many placements the count is at its bound anyway, and a report's capacity may be
        # millions.
        modelled = min(workers, COUNTED)
        if self._backlog >= workers:
            first = self._backlog - workers + 1
            self._free = [at + self._step * (first + i) for i in range(modelled)]
        else:
            idle = min(workers - self._backlog, modelled)
            self._free = ([-math.inf] * idle + [at + self._step * (i + 1)
                                                for i in range(modelled - idle)])
        heapq.heapify(self._free)
        self._done: list[float] = []  # when each placement ends, in placement order

    def place(self, when: float) -> None:
        """A new flow placed at `when` (not before the last one) takes the first worker free
        from then on. Only the last COUNTED placements are counted: past that many since one
        report, an instance's queue is priced as that long (its workers still take every
        placement in turn)."""
        done = max(when, self._free[0]) + self.hold
        heapq.heapreplace(self._free, done)
        if len(self._done) >= COUNTED:
            del self._done[0]
        self._done.append(done)

    def count(self, now: float) -> tuple[int, int]:
        """The requests at the instance at `now` (the report's not yet ended, and the
        placements), and how many of them are placements."""
        shown = math.ceil(self._backlog - (now - self.at) / self._step - 1e-9)
        placed = len(self._done) - bisect.bisect_right(self._done, now)
        return min(self._backlog, max(0, shown)) + placed, placed

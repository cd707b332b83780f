"""The wait a steady stream of new flows makes at an instance (`[controller.selection] queueing`).

Boundary: plain D-BIDs, times and counts in, a utilisation and a delay in ms out; the core's
decisions feed it every flow they place. No report is read here.

A metric report is a snapshot: the requests in service and waiting at one moment. Priced from
it alone (aged, with the flows placed since: placements.py), an instance that gets a new flow
every few tens of milliseconds often shows a free worker, and costs its bare service time, up
to the moment its queue has grown long enough to cost more than the next instance; near
saturation that queue is already seconds of waiting for the flows behind it. Where the
controller places every new flow itself, it knows the rate it sends each instance: the flows
placed in the last `WINDOW_S` seconds, each holding a worker for `hold_s`, keep the instance's
`c` workers busy a fraction `rho = min(MAX_RHO, placed * hold_s / (c * WINDOW_S))` of the time,
and a queue of `c` servers at that utilisation makes a request wait on average (M/M/c, with
Sakasegawa's approximation of the probability of waiting, exact for c = 1)

    queueing_ms = hold_ms * (1 + rho ** (sqrt(2 * (c + 1)) - 1) / (c * (1 - rho)))

which is the M/M/1 `hold / (1 - rho)` for one worker, 1.3 x the service time for three workers
at 0.6 and 3.75 x at 0.9, the cap. With `queueing = true` the default compute estimate is raised
to it (decisions.py): the snapshot still prices the queue it shows, the rate prices the one a
steady stream builds. It is off by default: on the steering benchmark's load sweep it made no
cell better for dyncast beyond the run-to-run noise and hot-site at 0.95 of the capacity worse
(docs/results/steering.md, "A queueing-aware estimate, measured").
"""

from __future__ import annotations

import math
from collections import deque

WINDOW_S = 1.0  # how far back the placements count towards the rate
MAX_RHO = 0.9  # utilisation cap: at most 10 service times (one worker), 3.75 (three)


def utilisation(placed: int, hold_s: float, capacity: int) -> float:
    """The share of the time `capacity` workers are busy with `placed` flows in the window,
    each holding one for `hold_s` (capped at `MAX_RHO`)."""
    if placed <= 0 or hold_s <= 0 or capacity <= 0:
        return 0.0
    return min(MAX_RHO, placed * hold_s / (capacity * WINDOW_S))


def queueing_ms(rho: float, hold_ms: float, capacity: int) -> float:
    """The mean time in an M/M/c queue at utilisation `rho` (< 1), service `hold_ms` each."""
    if rho <= 0 or capacity <= 0:
        return hold_ms
    waiting = math.pow(rho, math.sqrt(2.0 * (capacity + 1)) - 1.0)
    return hold_ms * (1.0 + waiting / (capacity * (1.0 - rho)))


class Arrivals:
    """Per instance, the times of the new flows placed on it in the last `WINDOW_S` seconds."""

    def __init__(self) -> None:
        self._times: dict[str, deque[float]] = {}

    def add(self, dbid: str, now: float) -> None:
        """A new flow was placed on `dbid`."""
        times = self._times.setdefault(dbid, deque())
        times.append(now)
        self._drop_before(dbid, times, now - WINDOW_S)

    def count(self, dbid: str, now: float) -> int:
        """How many flows were placed on `dbid` in the last `WINDOW_S` seconds."""
        times = self._times.get(dbid)
        if times is None:
            return 0
        self._drop_before(dbid, times, now - WINDOW_S)
        return len(times)

    def forget(self, dbid: str) -> None:
        """`dbid` is gone."""
        self._times.pop(dbid, None)

    def _drop_before(self, dbid: str, times: deque[float], cutoff: float) -> None:
        """Drop the placements made before `cutoff` (and the instance, once none is left)."""
        while times and times[0] < cutoff:
            times.popleft()
        if not times:
            del self._times[dbid]

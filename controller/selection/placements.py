"""New flows placed on each instance since its last metric report: load the report cannot show.

Boundary: plain D-BIDs and times in, counts and adjusted `Metrics` out; the core feeds it.

Metric reports arrive every fraction of a second, but new flows arrive between them, from every
ingress at once. Priced from its last report alone, an instance that just looked idle takes
every new flow of every ingress until its next report shows them (the herd effect of stale load
information). In centralized mode the controller places every new flow itself, so it knows
what the report cannot yet say: each flow placed on an instance counts as one more session there
(or one more waiting request once its workers are busy) while it is likely still being served,
i.e. for `hold_s` (the instance's processing delay), and only until a report taken after it
arrives: a placement younger than `grace_s` at the report's arrival still counts, since the
request may not have reached the instance when its D-MA measured. Counted any longer, requests
long finished would make a busy instance look overloaded.

The report itself ages the same way: the requests it shows (sessions, then queue) finish at the
instance's pace, one per worker every `hold_s`, so a report some holding times old no longer
says the instance is busy. Without that, a report's busy workers would still count after they
finished, on top of the flows placed since: a busy instance would look overloaded between
reports, and new flows would spill to worse instances it had room for.

Where the controller places every new flow (so the report can be aged), the report's requests
and the placements share the instance's workers (`in_system`): a placement that finds every
worker busy waits behind the requests ahead of it and counts until it is served, not for one
holding time from its placement. Counted apart, the report's backlog draining at the workers'
pace and each placement expiring after one holding time drain faster than the workers can:
between two reports a saturated instance would look to have room, and take more new flows.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Sequence

from controller.model import Metrics

KEPT = 1024  # placements kept per instance between two reports (a bound, not a window)


def with_placed(metrics: Metrics | None, placed: int) -> Metrics | None:
    """The report as it would read with `placed` more requests: they take free workers first
    (sessions, up to capacity), the rest wait (queue); each worker they start adds its share of
    the CPU (see `_shifted`). The reported delay stays as measured; a level-2 score (no raw
    counts) and a missing report are returned unchanged."""
    if metrics is None or placed <= 0 or metrics.score is not None:
        return metrics
    started = min(placed, max(0, metrics.capacity - metrics.sessions))
    return _shifted(metrics, metrics.sessions + started, metrics.queue + placed - started)


def aged(metrics: Metrics | None, age_s: float, hold_s: float) -> Metrics | None:
    """The report as it would read `age_s` after it was taken, had nothing arrived since: each
    worker finishes one request every `hold_s`, so sessions plus queue fall by `capacity *
    age_s / hold_s` (rounded up: a request part-way through still counts), the queue first;
    each worker left idle takes its share off the CPU (see `_shifted`). The reported delay
    stays as measured; a level-2 score (no raw counts) and a missing report are returned
    unchanged."""
    left = still_there(metrics, age_s, hold_s)
    if metrics is None or left is None:
        return metrics
    return _shifted(metrics, min(metrics.sessions, left), max(0, left - metrics.sessions))


def still_there(metrics: Metrics | None, age_s: float | None, hold_s: float) -> int | None:
    """How many of the report's requests (sessions plus queue) are left `age_s` after it was
    taken (`aged`); None when ageing leaves the report as it is. The aged report depends on
    the report and this count alone."""
    if (metrics is None or metrics.score is not None or age_s is None or age_s <= 0
            or hold_s <= 0):
        return None
    backlog = metrics.sessions + metrics.queue
    left = max(0, math.ceil(backlog - metrics.capacity * age_s / hold_s - 1e-9))
    return None if left >= backlog else left


def in_system(metrics: Metrics | None, age_s: float, hold_s: float,
              placed_ago: Sequence[float]) -> tuple[int, int] | None:
    """How many requests are at the instance `age_s` after its report, and how many of them
    are placements: the report's sessions finish one per worker every `hold_s / capacity`
    (as `aged` assumes), its queue and then the placements (`placed_ago`: how long ago each
    was placed, oldest first; one placed just before the report, which does not show it,
    started then if a worker was idle) take the first free worker in turn, each for
    `hold_s`. None where the report
    has no counts (a level-2 score, none at all)."""
    if metrics is None or metrics.score is not None or hold_s <= 0:
        return None
    workers = max(1, metrics.capacity)
    running = min(metrics.sessions, workers)
    step = hold_s / workers
    # when each worker is free, from the report's time on; an idle one was idle before it
    free = [step * (i + 1) for i in range(running)] + [-math.inf] * (workers - running)
    heapq.heapify(free)
    left = sum(1 for i in range(running) if step * (i + 1) > age_s)
    for _ in range(metrics.sessions + metrics.queue - running):
        done = max(0.0, heapq.heappop(free)) + hold_s
        heapq.heappush(free, done)
        left += done > age_s
    placed = 0
    for ago in placed_ago:  # placed at age_s - ago after the report (before it: negative)
        done = max(age_s - ago, heapq.heappop(free)) + hold_s
        heapq.heappush(free, done)
        placed += done > age_s
    return left + placed, placed


def with_total(metrics: Metrics, total: int) -> Metrics:
    """The report as it reads with `total` requests at the instance (`in_system`): the
    workers busy first, the rest waiting."""
    workers = max(1, metrics.capacity)
    return _shifted(metrics, min(workers, total), max(0, total - workers))


def _shifted(metrics: Metrics, sessions: int, queue: int) -> Metrics:
    """`metrics` with these counts, its CPU moved by the workers that started or finished (a
    busy worker is 1/capacity of it, as the D-MA's `--cpu-source instance` counts it): the CPU
    the workers do not explain (other work on the host) stays, so the compute estimate counts
    a busy worker once, whether the report or the core's accounting shows it. Not capped at 1
    (the work the host would have; a cap would drop the other work and make an instance look
    cheaper for a placement), and never below 0."""
    cpu = metrics.cpu + (sessions - metrics.sessions) / metrics.capacity
    # made directly (dataclasses.replace costs three times as much: every recompute ages
    # every instance's report)
    return Metrics(cpu=max(0.0, cpu), sessions=sessions, queue=queue,
                   capacity=metrics.capacity, active=metrics.active,
                   processing_delay_ms=metrics.processing_delay_ms, score=metrics.score,
                   service_ms=metrics.service_ms)


def hold_s(metrics: Metrics | None, base_delay_ms: float) -> float:
    """How long a request holds a worker at an instance: its reported service time, else its
    reported processing delay, else the service's base delay."""
    if metrics is None:
        return base_delay_ms / 1000.0
    delay_ms = metrics.service_ms or metrics.processing_delay_ms
    return (delay_ms or base_delay_ms) / 1000.0


def as_of(metrics: Metrics | None, hold: float, placed: int,
          age_s: float | None = None) -> Metrics | None:
    """The report as it reads now: aged by `age_s` (None: not aged, where the controller does
    not see every new flow) with `hold` per request, plus the `placed` flows it cannot show."""
    if age_s is not None:
        metrics = aged(metrics, age_s, hold)
    return with_placed(metrics, placed)


class Placements:
    """Per instance, the times of the new flows placed on it that its reports do not show yet."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self._times: dict[str, deque[float]] = {}

    def add(self, dbid: str, now: float) -> None:
        """A new flow was placed on `dbid`."""
        self._times.setdefault(dbid, deque()).append(now)

    def reported(self, dbid: str, now: float) -> None:
        """A report of `dbid` arrived: it shows every placement older than the grace."""
        self._drop_before(dbid, now - self.grace_s)

    def count(self, dbid: str, now: float, hold_s: float) -> int:
        """How many placements on `dbid` are younger than `hold_s` and not shown by a report
        yet (older ones are forgotten)."""
        self._drop_before(dbid, now - hold_s)
        return len(self._times.get(dbid, ()))

    def ago(self, dbid: str, now: float, hold_s: float, ahead: int, workers: int) -> list[float]:
        """How long ago each placement on `dbid` not shown by a report yet was made, oldest
        first. Forgotten: those served for certain by now (with `ahead` requests before them
        and `workers` workers, none waits longer than `hold_s * (1 + (ahead + n) / workers)`
        for n placements), and all but the last KEPT."""
        times = self._times.get(dbid)
        if not times:
            return []
        while len(times) > KEPT:
            times.popleft()
        horizon = hold_s * (2 + (ahead + len(times)) / max(1, workers))
        self._drop_before(dbid, now - horizon)
        return [now - t for t in self._times.get(dbid, ())]

    def forget(self, dbid: str) -> None:
        """`dbid` is gone."""
        self._times.pop(dbid, None)

    def _drop_before(self, dbid: str, cutoff: float) -> None:
        """Drop the placements on `dbid` made before `cutoff`."""
        times = self._times.get(dbid)
        if times is None:
            return
        while times and times[0] < cutoff:
            times.popleft()
        if not times:
            del self._times[dbid]

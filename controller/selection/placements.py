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
and the placements share the instance's workers (workers.py): a placement that finds every
worker busy waits behind the requests ahead of it and counts until it is served, not for one
holding time from its placement. Counted apart, the report's backlog draining at the workers'
pace and each placement expiring after one holding time drain faster than the workers can:
between two reports a saturated instance would look to have room, and take more new flows.
"""

from __future__ import annotations

import math
from collections import deque

from controller.model import Metrics
from controller.selection.workers import COUNTED, Workers


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


def with_total(metrics: Metrics, total: int) -> Metrics:
    """The report as it reads with `total` requests at the instance (workers.py): the
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
        self._models: dict[str, Workers] = {}  # the workers since the report, with placements

    def add(self, dbid: str, now: float) -> None:
        """A new flow was placed on `dbid` (the last COUNTED are kept: workers.py)."""
        times = self._times.setdefault(dbid, deque())
        times.append(now)
        if len(times) > COUNTED:
            times.popleft()
        model = self._models.get(dbid)
        if model is not None:
            model.place(now)

    def reported(self, dbid: str, now: float) -> None:
        """A report of `dbid` arrived: it shows every placement older than the grace."""
        self._drop_before(dbid, now - self.grace_s)
        self._models.pop(dbid, None)

    def count(self, dbid: str, now: float, hold_s: float) -> int:
        """How many placements on `dbid` are younger than `hold_s` and not shown by a report
        yet (older ones are forgotten)."""
        self._drop_before(dbid, now - hold_s)
        return len(self._times.get(dbid, ()))

    def queued(self, dbid: str, metrics: Metrics | None, at: float, hold_s: float,
               now: float) -> tuple[int, int] | None:
        """The requests at `dbid` at `now`, its report (`metrics`, taken at `at`) and the
        placements since sharing its workers (workers.py), and how many are placements. None
        with no placement to queue, or a report without counts."""
        times = self._times.get(dbid)
        if not times or metrics is None or metrics.score is not None or hold_s <= 0:
            return None
        model = self._models.get(dbid)
        if model is None or model.metrics is not metrics or model.at != at or model.hold != hold_s:
            model = self._models[dbid] = Workers(metrics, at, hold_s)
            for t in times:
                model.place(t)
        return model.count(now)

    def forget(self, dbid: str) -> None:
        """`dbid` is gone."""
        self._times.pop(dbid, None)
        self._models.pop(dbid, None)

    def _drop_before(self, dbid: str, cutoff: float) -> None:
        """Drop the placements on `dbid` made before `cutoff`."""
        times = self._times.get(dbid)
        if times is None:
            return
        while times and times[0] < cutoff:
            times.popleft()
        if not times:
            del self._times[dbid]

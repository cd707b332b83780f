"""Metric intake: every report recorded at once, each service's decision recomputed once a burst.

Boundary: it records reports through `Operations` (the metrics, the life-cycle event a report
implies, the store write) and the placements they settle, and notes each report's service as
*dirty*; it never recomputes. The facade recomputes dirty services on `Core.flush`: after a REST
batch or a burst of reports, on every tick, and first wherever a dirty service's decision is
about to be used (a first packet, GET /decisions). So many reports for one service within a
burst cost one recompute, and every report still counts: each is recorded in arrival order, so
the last one per instance wins.

In a cluster, reports accepted by another member arrive later than this member's own, so the
intake remembers per instance when the report it holds was *accepted* (by whichever member), and
another member's report replaces it only if it was accepted later (`only_newer`): every member
ends on the last accepted report, not the last applied (docs/cluster.md). An older one is not
recorded (`reports_stale`). This member's own reports are recorded as before, in arrival order.

A large batch is cut into `slices` of at most `SLICE` reports; the shell lets its event loop
run between two slices, so no batch holds the loop for long.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from controller.instances.operations import Operations
from controller.model import Instance, Metrics

Owners = dict[str, tuple[Instance, str]]  # D-BID -> (its Instance, its D-MA) when admitted


def owners_of(dbids: Iterable[object], instances: Mapping[str, Instance]) -> Owners:
    """Each registered instance among `dbids` and its D-MA, as a request was admitted for
    them: its reports are recorded, and its commands handed over, only to the same instance
    of the same D-MA (not one withdrawn and registered again, by another agent, while the
    request was served in slices)."""
    return {d: (instances[d], instances[d].dma) for d in dbids
            if isinstance(d, str) and d in instances}


def same(owners: Owners, instances: Mapping[str, Instance], dbid: str) -> bool:
    """True when `dbid` is still the instance, of the D-MA, that `owners` holds."""
    held, inst = owners.get(dbid), instances.get(dbid)
    return held is not None and inst is held[0] and inst.dma == held[1]

SLICE = 200  # reports checked or recorded between two yields to the shell's event loop
T = TypeVar("T")


def slices(items: Sequence[T], size: int = SLICE) -> list[Sequence[T]]:
    """`items` in consecutive runs of at most `size` (none for no items)."""
    return [items[i:i + size] for i in range(0, len(items), size)]


class Intake:
    """Records reports and remembers which services' decisions have not seen them yet."""

    def __init__(self, operations: Operations, reported: Callable[[str, float], None],
                 counters: Counter[str]) -> None:
        self.operations = operations
        self.reported = reported  # the placements a report settles (selection's bookkeeping)
        self.counters = counters
        self.dirty: set[str] = set()  # services whose decisions have not seen every report
        self.accepted: dict[str, float] = {}  # dbid -> when the report held was accepted

    def apply(self, reports: Sequence[tuple[str, Metrics]], now: float,
              accepted: float | None = None, only_newer: bool = False,
              owners: Owners | None = None) -> int:
        """Record `reports` in order and mark their services dirty; return how many were
        recorded. `accepted`: when they were accepted (default `now`); with `only_newer`
        (another member's), a report accepted no later than the one held for its instance is
        not recorded (`reports_stale`). A report for an instance withdrawn since its batch was
        checked (between two slices), or, given the `owners` its request was admitted for
        (`owners_of`), registered anew or by another D-MA since, is dropped and counted in
        `reports_dropped`."""
        at = now if accepted is None else accepted
        instances = self.operations.catalogue.instances
        if len(self.accepted) > 2 * len(instances) + 100:  # forget withdrawn instances
            self.accepted = {k: v for k, v in self.accepted.items() if k in instances}
        recorded = 0
        for dbid, metrics in reports:
            if dbid not in instances or (owners is not None and not same(owners, instances,
                                                                           dbid)):
                self.counters["reports_dropped"] += 1
                continue
            if only_newer and at <= self.accepted.get(dbid, -math.inf):
                self.counters["reports_stale"] += 1
                continue
            self.accepted[dbid] = at
            inst = self.operations.report(dbid, metrics, now)
            self.reported(dbid, now)
            self.dirty.add(inst.service)
            recorded += 1
        return recorded

    def pending(self) -> list[str]:
        """The dirty services, in name order."""
        return sorted(self.dirty)

    def take(self, name: str | None = None) -> list[str]:
        """The dirty services to recompute now (all, or only `name` if it is dirty); they are
        no longer dirty."""
        names = self.pending() if name is None else [name] if name in self.dirty else []
        self.dirty.difference_update(names)
        return names

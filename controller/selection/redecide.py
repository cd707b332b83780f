"""The lazy re-decision a pick makes when flows placed since a report moved a compute cost.

Boundary: one ingress's decision of one service, its inputs as last taken (incremental.py's
basis) and each instance's compute cost as of `now` (decisions.py) in; the decision taken
again from those inputs, and the log entries of what changed, out. Nothing here reads a
report, the clock or the network.

A pick about to use an instance whose compute cost has moved past the hysteresis since the
ingress's decision saw it (`Decisions.pick`) takes that decision again first. Between two
recomputes only compute costs can have moved that way (a report, a state, the service's
instances or settings, or a path change recomputes the service at once), and only the
candidates reachable from the ingress can get a share. So the decision is taken again from its
own inputs with each reachable candidate re-priced as of `now`: the decision that pricing
every instance of the service afresh gives (an unreachable one gets no share at any price),
for the price of the few candidates the ingress can use. Where the inputs do not match the
service as it is now (an instance gone, the service's instances changed), it is taken in full.

Under a steady stream of new flows these re-decisions change a decision many times a second
(the share moves to the next instance and back as placements come and go). Each change is
counted (`decision_changes`), but the log gets at most one line per decision and `WINDOW_S`:
the first change after a quiet window at once, the later ones as one line when the window is
over (the tick writes it), naming how many changes it stands for, the primary before the first
and after the last.
"""

from __future__ import annotations

from collections.abc import Callable

from controller.model import Instance, Service
from controller.selection.engine import CandidateInput
from controller.selection.incremental import Incremental

REASON = "flows placed since the last report"  # why such a re-decision changed a decision
WINDOW_S = 1.0  # at most one log line per decision and window for these changes

Key = tuple[int, str]  # (ingress, service)


class Redecisions:
    """Placed-flow re-decisions (module docstring) and the log lines of their changes."""

    def __init__(self, bases: Incremental) -> None:
        self.bases = bases
        self._written: dict[Key, float] = {}  # when each decision's last such line was logged
        # decision -> (primary before the first change held, primary now, when the last was
        # made, how many changes) not logged yet
        self._held: dict[Key, tuple[str | None, str | None, float, int]] = {}

    def retake(self, svc: Service, ingress: int, instances: dict[str, Instance],
               price: Callable[[Instance], float], full: Callable[[], bool],
               now: float) -> bool:
        """Take the decision of `svc` at `ingress` again with its reachable candidates
        re-priced by `price` (the compute cost as of now), or by `full` where its inputs do not
        match the service any more; True if a new one is in force."""
        log = self.bases.change_log
        before = log[-1] if log else None
        changed = self._retake(svc, ingress, instances, price, now)
        if changed is None:
            changed = full()
        if changed and log and log[-1] is not before:  # the change the take logged
            last = log.pop()
            self._note(last[0], last[1], last[2], last[3], last[4])
        return changed

    def _retake(self, svc: Service, ingress: int, instances: dict[str, Instance],
                price: Callable[[Instance], float], now: float) -> bool | None:
        """`retake` from the decision's own inputs; None if they do not match the service."""
        name = svc.name
        basis = self.bases.bases.get((ingress, name))
        view = self.bases.views.get(name)
        if basis is None or view is None or basis.index is not view.index:
            return None
        inputs, seen = basis.inputs, basis.seen
        new_inputs: list[CandidateInput] | None = None
        new_seen: list[tuple[str, str, float, int | None]] = []
        for j, row in enumerate(inputs):
            if row[2] is None:  # (network_ms) unreachable from here: no share at any price
                continue
            inst = instances.get(row[0])
            if inst is None:
                return None
            compute = price(inst)
            if compute == row[3]:  # (compute_ms)
                continue
            if new_inputs is None:
                new_inputs, new_seen = list(inputs), list(seen)
            new_inputs[j] = tuple.__new__(CandidateInput, (row[0], row[1], row[2], compute,
                                                           row[4]))
            entry = seen[j]
            new_seen[j] = (entry[0], entry[1], compute, entry[3])
        if new_inputs is None:
            return False
        return self.bases.take(svc, tuple(new_seen), basis.index, ingress, now,
                               (new_inputs, False))

    def _note(self, ingress: int, name: str, before: str | None, after: str | None,
              now: float) -> None:
        """Log one change of the decision at (`ingress`, `name`) now, with those held since
        its last line, if its window is over; else hold it."""
        key = (ingress, name)
        held = self._held.pop(key, None)
        if held is not None:
            before, count = held[0], held[3] + 1
        else:
            count = 1
        if now - self._written.get(key, -WINDOW_S) >= WINDOW_S:
            self._line(key, before, after, now, count)
        else:
            self._held[key] = (before, after, now, count)

    def flush(self, now: float) -> None:
        """Log the changes held for each decision whose window is over (the core's tick);
        forget the windows that are over."""
        for key in [k for k in self._held if now - self._written[k] >= WINDOW_S]:
            before, after, at, count = self._held.pop(key)
            self._line(key, before, after, at, count)
            self._written[key] = now
        if len(self._written) > len(self._held):
            self._written = {k: t for k, t in self._written.items()
                             if k in self._held or now - t < WINDOW_S}

    def _line(self, key: Key, before: str | None, after: str | None, at: float,
              count: int) -> None:
        """One log entry for `count` changes of the decision at `key`, the last at `at`."""
        self._written[key] = at
        self.bases.change_log.append((key[0], key[1], before, after, at, REASON if count == 1
                                      else f"{REASON} ({count} changes since the last line)"))

"""Drains in every dataplane mode: which flows still reach a draining instance, moving them when
its deadline passes, and stopping a retiring instance only once none does.

Boundary: pure. Two kinds of flows can reach an instance:
- the controller's own bindings (`reactive`), counted and moved by `dataplane/reactive.py`;
- the flows the switches hold themselves (`learn`: the entries each flow learned in the
  affinity table; `bucket`: the pins a moving bucket learned, and a bucket still moving away
  from the instance, which pins every flow it sees to it). The controller is not told of these
  flows one by one: the shell reads every programmed switch's affinity table every
  `stats_interval_s` and hands each read over with the time it was *requested* (`read`).

A retiring instance is still reached while a binding is bound to it, a bucket is still moving
away from it, or the latest read of some programmed switch either shows an entry to it or was
requested before the instance started draining (plus READ_MARGIN_S, for the bucket map's
flow-mods sent with the drain to reach the switch first): a read from before the drain cannot
prove that no flow learned an entry since. At a drain deadline, the bindings move (reactive)
and, for the switch-held flows, the buckets still moving away from it end at once and every
entry the switches learned or pinned for it is deleted: the next packet of each of those flows
takes the current decision, which no longer names the instance (docs/decisions.md, "Drain").
`conntrack` flows live in the switches' connection trackers, which the shell reads with
`ovs-appctl` where the switch is local (`dataplane/tracker.py`): an instance of such a service is
reached while the latest complete read of its zone, requested after the drain began (plus
READ_MARGIN_S), shows a live connection marked with its label; without such a read (`reader =
"none"`, a failed or truncated read) it is reached until its drain deadline has passed (a
retiring one is stopped then). At the deadline the trackers are told to flush its
connections, which are then decided again (docs/dataplanes.md, `conntrack`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from controller.dataplane.modes import mode_of
from controller.dataplane.programmer import Programmer
from controller.dataplane.reactive import ReactiveFlows
from controller.dataplane.tracker import TrackerReads
from controller.instances.operations import Operations
from controller.intents import FlowMod, Intent
from controller.model import Instance, Service

READ_MARGIN_S = 1.0  # a read proves a drain over only if requested this long after it began
LearnedRows = list[tuple[int, dict[str, Any], int, float]]  # cookie, match, packets, duration


class Drains:
    """Drain deadlines and retirements, over bindings and switch-held flows alike."""

    def __init__(self, operations: Operations, flows: ReactiveFlows, programmer: Programmer,
                 fallback: Callable[[int, Service], FlowMod]) -> None:
        self.operations = operations
        self.flows = flows
        self.programmer = programmer
        self.fallback = fallback  # the D-SID entry of a switch without a decision
        self.counters = operations.counters
        self._read_at: dict[int, float] = {}  # switch -> when its latest affinity read was asked
        self._released: dict[str, float] = {}  # conntrack: D-BID -> drain (its start) whose
        #                                        deadline passed
        self.tracker = TrackerReads()  # conntrack: the trackers' latest reads, by zone

    def read(self, dpid: int, rows: LearnedRows, requested_at: float | None) -> None:
        """A switch's affinity table, read back (`requested_at` None: when is not known, so
        the read shows in `/bindings` but proves no drain over)."""
        self.programmer.report_learned(dpid, rows)
        if requested_at is None:
            self._read_at.pop(dpid, None)
        else:
            self._read_at[dpid] = requested_at

    def switch_held(self, inst: Instance) -> int | None:
        """How many entries the switches were last read to hold for flows to `inst` (learned
        entries, pins; a bucket moving away from it counts as one): None while some switch
        has not been read since the instance started draining."""
        svc = self.operations.catalogue.services.get(inst.service)
        label = self.programmer.labels.get(inst.dbid)
        if svc is None or not mode_of(svc).switch_decides or label is None:
            return 0
        if mode_of(svc).tracks:  # read by zone; unread: reached until the deadline
            if self._released.get(inst.dbid) == inst.state_since:
                return 0
            return self.tracker.held(svc.ct_zone, label, inst.state_since + READ_MARGIN_S)
        since = inst.state_since + READ_MARGIN_S
        held = 1 if self.programmer.moving_from(inst.dbid) else 0
        for dpid in self.programmer.switches_to_poll():
            entries = self.programmer.learned.get(dpid)
            if entries is None or self._read_at.get(dpid, -1e18) < since:
                return None
            held += sum(1 for e in entries if e.label == label)
        return held

    def reached(self, dbid: str) -> bool:
        """True while some flow may still reach the instance (binding or switch-held)."""
        inst = self.operations.catalogue.instances.get(dbid)
        if inst is None or self.flows.bound(dbid):
            return inst is not None
        return self.switch_held(inst) != 0

    def honour(self, now: float) -> list[Intent]:
        """Move the remaining flows of drained instances whose deadline has passed; tell the
        D-MA to stop each retiring instance once no flow reaches it; and send the clients of
        `reactive` connections moved a moment ago their nudges (dataplane/nudges.py)."""
        intents: list[Intent] = [*self.flows.nudges.due(now)]
        for inst in self.operations.deadlines_passed(now):
            moved = self.counters["affinity_moves"]
            intents += self.flows.move(inst.dbid, now) + self._release(inst, now)
            self.counters["drain_deadline_moves"] += self.counters["affinity_moves"] - moved
        self.operations.stop_drained(self.reached, now)
        return intents

    def _release(self, inst: Instance, now: float) -> list[Intent]:
        """The deadline passed: the buckets still moving away from `inst` point to their new
        instance at once, then every entry the switches learned or pinned for it goes."""
        svc = self.operations.catalogue.services.get(inst.service)
        if svc is None or not mode_of(svc).switch_decides:
            return []
        held = self.switch_held(inst)
        if mode_of(svc).tracks:
            self._released[inst.dbid] = inst.state_since
        self.counters["drain_deadline_moves"] += held or 0
        intents: list[Intent] = []
        if self.programmer.release(inst.dbid):
            insts = self.operations.catalogue.of_service(svc.name)
            intents += self.programmer.program(svc, insts, now, self.fallback)
        return intents + self.programmer.lost(inst.dbid, svc, now)

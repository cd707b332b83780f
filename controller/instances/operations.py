"""What D-MAs and operators do to instances: register, report, withdraw, drain, (re)activate.

Boundary: each operation checks the instance exists, fires its life-cycle event, updates the
instance's record and queues it for the store; the scaling policy's actions and drain
deadlines are found here too. Recomputing decisions and moving flows afterwards is the
caller's (the core facade's) job: every operation returns the instance it changed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from controller.errors import NotFound
from controller.instances.catalogue import Catalogue
from controller.instances.liveness import Liveness
from controller.instances.scaling import Action, Member, Scaler, load_of
from controller.instances.states import InstanceStates
from controller.model import Instance, Metrics, Service
from controller.selection.decisions import seen_state
from controller.writes import Writes


class Operations:
    """Instance operations and the scaling policy's clock."""

    def __init__(self, catalogue: Catalogue, states: InstanceStates, liveness: Liveness,
                 writes: Writes, counters: Counter[str]) -> None:
        self.catalogue = catalogue
        self.states = states
        self.liveness = liveness
        self.writes = writes
        self.counters = counters
        self.scaler = Scaler()
        self.ejected: set[str] = set()  # passive health's (health.py wires its own set in)
        self._stop_sent: dict[str, float] = {}  # scale-in: when `deactivate` was last sent
        states.changed = self._write  # every state change is stored (the tick's too)

    def restore(self, services: list[Service], instances: list[Instance]) -> None:
        """Stored services and instances at start; an instance stored `activating` is sent
        its reactivation trigger again (the trigger waiting for its D-MA was in memory)."""
        self.catalogue.restore(services, instances)
        for inst in self.catalogue.instances.values():
            svc = self.catalogue.services.get(inst.service)
            if inst.state == "activating" and svc is not None:
                self.states.command(inst, svc.dsid, "reactivate", "the reactivation "
                                    "trigger, sent again after a restart", inst.state_since)

    def instance(self, dbid: str) -> Instance:
        """The instance with this D-BID, or NotFound."""
        inst = self.catalogue.instances.get(dbid)
        if inst is None:
            raise NotFound("instance", dbid)
        return inst

    def register(self, dsid: str, dbid: str, dma: str, active: bool, now: float) -> Instance:
        """A D-MA announced (D-SID, D-BID), serving or inactive."""
        known = dbid in self.catalogue.instances
        inst = self.catalogue.register(dsid, dbid, dma, active, now)
        # its agent speaks for it: it may be found at a new place once (then locked again)
        self.liveness.topology.let_move(dbid)
        if not known:
            self.states.begin(inst, active, now)
        elif not active:
            self.states.fire(inst, "report_inactive", f"re-registered by D-MA {dma or '?'} as "
                             "inactive", now)
        self._write(inst)
        return inst

    def withdraw(self, dbid: str) -> Instance:
        """A D-MA withdrew an instance: it is gone from the catalogue and the store."""
        inst = self.catalogue.withdraw(dbid)
        self.liveness.forget(dbid)
        self.writes.delete("instance", dbid)
        return inst

    def report(self, dbid: str, metrics: Metrics, now: float) -> Instance:
        """A metric report: record it and apply what it says of the state."""
        inst = self.catalogue.report(dbid, metrics, now)
        self.counters["metric_reports"] += 1
        if not self.liveness.detached(dbid):  # a detached instance stays down until seen
            was = inst.state
            event = "report_active" if metrics.active else "report_inactive"
            self.states.fire(inst, event, f"D-MA {inst.dma or '?'} reports it "
                             f"{'serving' if metrics.active else 'not serving'}", now)
            if was == "activating" and inst.state == "active":
                self.counters["reactivations_completed"] += 1
        self._write(inst)
        return inst

    def drain(self, dbid: str, deadline_s: float | None, now: float, reason: str) -> Instance:
        """Drain: no new flows; bound flows keep the instance until they end or, with a
        deadline, until it passes (then they move to a live instance)."""
        inst = self.instance(dbid)
        self.states.fire(inst, "drain", reason, now)
        inst.drain_deadline = None if deadline_s is None else now + deadline_s
        self._write(inst)
        return inst

    def undrain(self, dbid: str, now: float) -> Instance:
        """End a drain: the instance takes new flows again (if otherwise usable)."""
        inst = self.instance(dbid)
        self.states.fire(inst, "undrain", "operator undrain", now)
        self.liveness.observe(inst, now)
        self._write(inst)
        return inst

    def activate(self, dbid: str, reason: str, now: float) -> Instance:
        """Send an inactive instance's D-MA the reactivation trigger; it is `activating` until
        the D-MA reports it serving (or the activation times out)."""
        inst = self.instance(dbid)
        self.states.fire(inst, "activate", reason, now)
        svc = self.catalogue.services[inst.service]
        self.states.command(inst, svc.dsid, "reactivate", reason, now)
        self.counters["reactivations"] += 1
        self._write(inst)
        return inst

    def retire(self, dbid: str, deadline_s: float | None, now: float, reason: str) -> Instance:
        """Drain an instance that its D-MA is to stop once no flow reaches it
        (a binding or a switch-held entry: dataplane/drains.py)."""
        inst = self.drain(dbid, deadline_s, now, reason)
        inst.stop_when_drained = True
        self._write(inst)
        return inst

    def deadlines_passed(self, now: float) -> list[Instance]:
        """Draining instances whose deadline has just passed (their flows must move now)."""
        out = []
        for inst in self.catalogue.instances.values():
            if inst.draining and inst.drain_deadline is not None and now >= inst.drain_deadline:
                inst.drain_deadline = None
                self._write(inst)
                out.append(inst)
        return out

    def stop_drained(self, reached: Callable[[str], bool], now: float) -> None:
        """Tell the D-MA to stop each retiring instance once no flow reaches it any more
        (`reached`: controller bindings and switch-held flows, dataplane/drains.py); again if
        the D-MA stays silent for the activation timeout."""
        for inst in list(self.catalogue.instances.values()):
            if not (inst.draining and inst.stop_when_drained) or reached(inst.dbid):
                continue
            svc = self.catalogue.services[inst.service]
            retry = svc.scaling.activation_timeout_s if svc.scaling else 60.0
            if now - self._stop_sent.get(inst.dbid, -1e9) < retry:
                continue
            self._stop_sent[inst.dbid] = now
            self.states.command(inst, svc.dsid, "deactivate", "drained: no flow reaches it",
                                now)
            self.counters["deactivations"] += 1

    def scaling_actions(self, merit: Callable[[Instance], float],
                        now: float) -> list[Action]:
        """Reactivation and scale-in for services with a scaling policy (one action at most
        per service). An active instance passive health ejected is shown to the scaler as
        `ejected`: it takes no new flows, so its load is not the service's (a dead service
        behind a live D-MA reports itself idle) and it is no scale-in candidate."""
        actions = []
        ejected = self.ejected
        for name, svc in sorted(self.catalogue.services.items()):
            if svc.scaling is None:
                continue
            members = [Member(i.dbid, seen_state(i, ejected), load_of(i.metrics), merit(i),
                              i.draining and i.stop_when_drained, bool(i.dma))
                       for i in self.catalogue.of_service(name)]
            action = self.scaler.evaluate(name, svc.scaling, members, now)
            if action is not None:
                actions.append(action)
        return actions

    def labelled(self, labels: list[tuple[str, int]]) -> None:
        """Instances got their labels (dataplane/labels.py): store them with the instance,
        so a restarted controller gives each the same."""
        for dbid, label in labels:
            inst = self.catalogue.instances.get(dbid)
            if inst is not None:
                inst.label = label
                self._write(inst)

    def _write(self, inst: Instance) -> None:
        """Queue the instance's record for the store."""
        self.writes.put("instance", inst.dbid, inst.to_dict())

"""Passive health, composed: the refusals the switches copy to us eject instances for new flows.

Boundary: no I/O and no state of its own beyond its parts: `PassiveHealth` (which instances
are ejected: instances/health.py) and `HealthPunts` (the entries that copy resets to us:
dataplane/healthpunt.py). The core calls it on a copied reset, a metric report and a
recompute; selection reads the ejected set (selection/decisions.py); the audit reads the
entries each switch should hold.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from controller.dataplane.audit import Audit
from controller.dataplane.healthpunt import HealthPunts
from controller.dataplane.programmer import Programmer
from controller.instances.catalogue import Catalogue
from controller.instances.health import HealthConfig, PassiveHealth, is_refusal
from controller.instances.intake import Intake
from controller.intents import FlowMod, Intent, cookie_kind
from controller.model import Instance, Service
from controller.selection.decisions import Decisions

Recompute = Callable[[str, float], list[Intent]]  # a service's decisions taken again (the core)


class Health:
    """Passive health's parts, wired to the catalogue, selection and the audit."""

    def __init__(self, config: HealthConfig, catalogue: Catalogue, counters: Counter[str],
                 parts: tuple[Decisions, Programmer, Audit, Intake, Recompute]) -> None:
        self.config = config
        self.catalogue = catalogue
        self.decisions, programmer, audit, intake, self.recompute = parts
        self.counters = counters
        self.state = PassiveHealth(config)
        self.decisions.ejected = self.state.ejected
        programmer.ejected = self.state.ejected
        intake.operations.ejected = self.state.ejected  # (scaling: not the service's load)
        self.dbid_of: Callable[[int], str | None] = programmer.dbid_of
        self.punts = HealthPunts(programmer.topology, programmer.labels.find)
        audit.extra = self.punts.at
        audit.unlocated = self._unlocated
        intake.reported = self.reported

    def reset(self, cookie_value: int, dpid: int, in_port: int, data: bytes,
              now: float) -> list[Intent]:
        """A reset an instance sent was copied to the controller from switch `dpid`, port
        `in_port` (its entry's cookie names the instance by its label): when it is the refusal
        that ejects the instance, its service's decisions are taken again. It counts only if
        that instance is attached there and the reset comes from its address or its D-SID: in
        a cluster every member counts the copies of entries another member numbered, and two
        D-BIDs whose labels clashed may hold each other's numbers there. Only an `active`
        instance's refusals count: a draining or inactive one gets no new flows anyway, and
        may well have closed its listener (a graceful stop); counted, they would keep it out
        for a while after an undrain."""
        self.counters["health_resets"] += 1
        split = cookie_kind(cookie_value)
        dbid = None if split is None else self.dbid_of(split[1] & 0xFFFF)
        inst = None if dbid is None else self.catalogue.instances.get(dbid)
        if inst is None or not is_refusal(data):
            return []
        if not self._sent_by(inst, dpid, in_port, data):
            self.counters["health_resets_foreign"] += 1
            return []
        self.counters["health_refusals"] += 1
        if inst.state != "active":
            return []
        active = [i.dbid for i in self.catalogue.of_service(inst.service) if i.state == "active"]
        if not self.state.refused(inst.dbid, active, now):
            return []
        self.counters["health_ejections"] += 1
        return self.recompute(inst.service, now)

    def meter_refused(self, dpid: int) -> list[Intent]:
        """Switch `dpid` refused the health meter: no reset copies there any more (the deletes
        of its entries; dataplane/healthpunt.py)."""
        self.counters["health_meter_refused"] += 1
        return self.punts.without_meter(dpid)

    def _sent_by(self, inst: Instance, dpid: int, in_port: int, data: bytes) -> bool:
        """True when `inst` is attached at `dpid` port `in_port` and the frame's source
        address (a refusal: IPv4) is its D-BID or its service's D-SID (the reply's rewrite)."""
        host = self.punts.topology.hosts.get(inst.dbid)
        if host is None or (host.dpid, host.port) != (dpid, in_port):
            return False
        svc = self.catalogue.services.get(inst.service)
        src = ".".join(map(str, data[26:30]))
        return src == inst.dbid or (svc is not None and src == svc.dsid)

    def _unlocated(self, label: int) -> bool:
        """True when the instance with `label` is registered but not located (yet): after a
        restart, until its host sends again, the switch keeps its reset copies."""
        dbid = self.dbid_of(label & 0xFFFF)
        return (self.config.enabled and dbid is not None and dbid in self.catalogue.instances
                and dbid not in self.punts.topology.hosts)

    def reported(self, dbid: str, now: float) -> None:
        """A metric report of `dbid` arrived (intake): its placements are shown, and an
        ejection past its base time ends (the recompute the report causes sees it)."""
        self.decisions.placements.reported(dbid, now)
        if self.state.ejected and self.state.reported(dbid, now):
            self.counters["health_unejections"] += 1

    def sync(self, svc: Service, insts: list[Instance]) -> list[Intent]:
        """The flow-mods that make the switches copy `svc`'s instances' resets to us."""
        return self.punts.sync(svc, insts, self.config.enabled)

    def remove(self, svc: Service, gone: list[Instance]) -> list[Intent]:
        """`svc` is deleted with its instances `gone`: the deletes of its reset-copy entries;
        their ejections are forgotten."""
        for inst in gone:
            self.state.forget(inst.dbid)
        return self.punts.remove(svc)

    def at(self, dpid: int) -> list[FlowMod]:
        """Every reset-copy entry switch `dpid` should hold."""
        return self.punts.at(dpid)

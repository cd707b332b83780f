"""The core facade: one method per event, each delegating to the feature that owns it.

Boundary: no I/O and no state of its own. Plain values and `now` in; intents out, store writes
queued in `writes`. The features: `network`, `decisions` (selection), `catalogue`, `states`,
`liveness`, `operations` (instances), `flows` (reactive bindings), `programmer` (learn/bucket/
overlay), `drains` (deadlines, retirements). What one feature's change means for another
(recompute, move flows) is said here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from controller.config import ControllerConfig
from controller.dataplane.affinity import Binding
from controller.dataplane.audit import Audit
from controller.dataplane.drains import Drains, LearnedRows
from controller.dataplane.modes import mode_of, service_punt
from controller.dataplane.programmer import Programmer
from controller.dataplane.reactive import ReactiveFlows
from controller.health import Health
from controller.instances.catalogue import Catalogue
from controller.instances.intake import Intake
from controller.instances.liveness import Liveness
from controller.instances.operations import Operations
from controller.instances.states import InstanceStates
from controller.instances.ticking import TICK_SLICE, InstanceWalk
from controller.intents import FlowMod, Intent, StoreWrite, SwitchEntry
from controller.located import SETTLE_LLDP_INTERVALS, Locator
from controller.model import Instance, Metrics, Service
from controller.network.network import Network
from controller.network.packet import ETH_TYPE_ARP, ETH_TYPE_IP, ETH_TYPE_LLDP, parse
from controller.network.paths import REPAIR_SLICE
from controller.selection.decisions import Decisions
from controller.writes import Writes


class Core:
    """The features of the controller, composed; every public method is one event."""

    def __init__(self, config: ControllerConfig) -> None:
        self.config = config
        self.counters: Counter[str] = Counter()
        self.writes = Writes()
        self.catalogue = Catalogue()
        self.network = Network(config.monitor_settings(), lambda ip: ip in self.catalogue.by_dsid)
        self.topology, self.forwarding = self.network.topology, self.network.forwarding
        self.decisions = Decisions(config.selection, config.scoring, (self.topology,
                                   self.network.costs), config.ingresses, self.counters)
        self.decisions.router_of.update(config.forwarders)
        self.decisions.places_flows = lambda svc: mode_of(svc).places_flows
        self.engine = self.decisions.engine
        self.states = InstanceStates(config.stale_after_s, config.probe_timeout_s)
        self.liveness = Liveness(self.catalogue, self.states, (self.topology, self.forwarding),
                                 config.probe_timeout_s, self.counters)
        self.operations = Operations(self.catalogue, self.states, self.liveness, self.writes,
                                     self.counters)
        self.intake = Intake(self.operations, self.decisions.placements.reported, self.counters)
        self.flows = ReactiveFlows(self.operations, self.topology, self.decisions, self.writes,
                                   self.counters, lambda: self.config.limits.affinity_per_ingress)
        self.bindings = self.flows.bindings
        self.programmer = Programmer(self.topology, self.engine, self.decisions.decider,
                                     config.group_id_prefix, self.flows.nudges)  # [dataplane]
        self.audit = Audit(self.catalogue, self.network, self.flows, self.programmer,
                           self.counters)
        self.drains = Drains(self.operations, self.flows, self.programmer, service_punt)
        self.health = Health(config.health, self.catalogue, self.counters, (  # passive health
            self.decisions, self.programmer, self.audit, self.intake, self._recompute))
        self.locator = Locator(self.network, self.liveness, self.flows,
                               (self.catalogue, self.intake), self._recompute)
        for svc in config.services:
            self.catalogue.put_service(svc, create=True)

    @property
    def _settle_s(self) -> float:
        """A new port's first round of discovery (network/settling.py), in seconds."""
        return SETTLE_LLDP_INTERVALS * self.config.lldp_interval_s

    def restore(self, services: list[Service], instances: list[Instance],
                bindings: list[Binding], now: float | None = None) -> None:
        """Load stored state at start (configured services win); bindings numbered from `now`."""
        self.operations.restore(services, instances)  # (and the triggers of `activating`)
        self.programmer.labels.restore_all((i.dbid, i.label) for i in instances)
        self.flows.restore(bindings, now)

    # --- switches and links -------------------------------------------------------------
    def switch_connected(self, dpid: int, reads_table: bool = False) -> list[Intent]:
        """A switch connected: the pipeline and punts, or none until its table is read."""
        self.programmer.forget_switch(dpid)
        self.flows.forget_switch(dpid)
        intents: list[Intent] = list(self.network.connected(dpid))
        if reads_table:
            self.programmer.expect_table(dpid)
            return []
        for svc in self.catalogue.services.values():
            intents += mode_of(svc).punts(dpid, svc)
        return intents + self.health.at(dpid)

    def switch_table_steps(self, dpid: int, entries: list[SwitchEntry], sent: list[FlowMod],
                           requested_at: float, now: float) -> Iterator[list[Intent]]:
        """What a switch holds of ours, read at `requested_at`: its repair (dataplane/audit.py)."""
        return self.audit.table_steps(dpid, entries, sent, requested_at, now, self._recompute)

    def switch_ports(self, dpid: int, ports: set[int], now: float) -> list[Intent]:
        """The port list arrived: discover links and routes; detach instances at lost ports."""
        intents, lost = self.network.ports(dpid, ports, now, self._settle_s)
        self.liveness.detach(lost, now)
        return intents + self._recompute_all(now)

    def switch_left(self, dpid: int, now: float) -> list[Intent]:
        """A control channel closed: links and instances are kept `switch_grace_s`, then gone."""
        if self.config.switch_grace_s > 0 and self.network.disconnected(dpid, now):
            return []
        return self._switch_gone(dpid, now)

    def _switch_gone(self, dpid: int, now: float) -> list[Intent]:
        """A switch is gone: forget it; paths and decisions are recomputed."""
        self.liveness.detach(self.network.left(dpid), now)
        self.decisions.forget_switch(dpid)
        return self._paths_changed(now)

    def port_changed(self, dpid: int, port: int, up: bool, now: float) -> list[Intent]:
        """A port went up or down."""
        if up:
            return self.network.port_up(dpid, port, now, self._settle_s)
        changed, lost = self.network.port_down(dpid, port)
        if not changed:
            return []
        self.liveness.detach(lost, now)
        return self._paths_changed(now)

    def port_stats(self, dpid: int, samples: list[tuple[int, int, int]],
                   now: float) -> list[Intent]:
        return [i for step in self.port_stats_steps(dpid, samples, now) for i in step]

    def port_stats_steps(self, dpid: int, samples: list[tuple[int, int, int]], now: float,
                         size: int = REPAIR_SLICE) -> Iterator[list[Intent]]:
        """Port counters (port, tx_bytes, rx_bytes); a cost moved: trees repaired `size` a step,
        routes synced; services recomputed at their next `flush` (the shell's, one a step)."""
        if self.network.port_stats(dpid, samples, now, defer=True):
            while self.topology.repair_some(size):
                yield []
            self.intake.dirty.update(self.catalogue.services)
            yield self.forwarding.sync_routes()

    def echo_rtt(self, dpid: int, rtt_s: float) -> None:
        self.network.monitor.echo_rtt(dpid, rtt_s)  # (a control-channel round trip: link delay)

    def learned_entries(self, dpid: int, rows: LearnedRows, at: float | None = None) -> None:
        """A switch's table 2 read at `at` (dataplane/drains.py)."""
        self.drains.read(dpid, rows, at)

    # --- time ---------------------------------------------------------------------------
    def tick(self, now: float) -> list[Intent]:
        return [i for step in self.tick_steps(now) for i in step]  # (every step at once)

    def tick_steps(self, now: float, size: int = TICK_SLICE) -> Iterator[list[Intent]]:
        """Periodic work, `size` instances or one service a step (instances/ticking.py)."""
        intents = self.locator.settled(now) + self.network.ask_unplaced(now)
        intents += self.flush(now)
        self.decisions.redecisions.flush(now)  # log lines of re-decisions a pick made
        for dpid in self.network.grace_over(now, self.config.switch_grace_s):
            intents += self._switch_gone(dpid, now)
        if self.network.expire(now, self.config.link_timeout_s):
            intents += self._paths_changed(now)
        yield intents + self.forwarding.lldp(now)
        while self.locator.pending():  # held sightings left: a bounded step each
            yield self.locator.settled(now)
        walk = InstanceWalk(self.catalogue, self.liveness, self.decisions.saw, now, size)
        yield from walk.probes()
        yield from walk.observe()
        yield from (self._recompute(name, now) for name in sorted(walk.changed))
        yield from walk.unlocated()
        yield from (self._recompute(n, now) for n in sorted(self.programmer.expire(now)))
        yield self.drains.honour(now) + self._autoscale(now)

    # --- packets ------------------------------------------------------------------------
    def packet_in(self, dpid: int, in_port: int, data: bytes, now: float,
                  cookie_value: int = 0) -> list[Intent]:
        """A packet reached the controller from the entry with `cookie_value` (LLDP, ARP, a
        new flow to a D-SID, a route miss)."""
        self.counters["packet_in"] += 1
        pkt = parse(data)
        if pkt is None:
            return []
        if pkt.eth_type == ETH_TYPE_LLDP:
            new_link = self.network.lldp_in(dpid, in_port, pkt, now)
            return self._paths_changed(now) if new_link else []
        if pkt.eth_type == ETH_TYPE_ARP and pkt.arp_spa is not None:
            assert pkt.arp_sha is not None
            intents = self.locator.learn(pkt.arp_spa, pkt.arp_sha, dpid, in_port, now, True,
                                         self.forwarding.arp_sure(pkt, now))
            self.liveness.arp_answer(pkt, now)
            return intents + self.forwarding.arp(dpid, in_port, pkt, data, now)
        if pkt.eth_type != ETH_TYPE_IP or pkt.ip_src is None or pkt.ip_dst is None:
            return []
        intents = self.locator.learn(pkt.ip_src, pkt.eth_src, dpid, in_port, now)
        if self.liveness.is_probe_answer(pkt):
            self.liveness.tcp_answer(pkt, now)
            return intents
        svc = self.catalogue.service_for_dsid(pkt.ip_dst)
        if svc is not None:
            intents += self.flush(now, svc.name)  # its decision must have seen every report
            return intents + self.flows.demand(svc, dpid, in_port, pkt, data, now, cookie_value)
        delivered = self.network.deliver(dpid, in_port, pkt.ip_dst, data)
        if delivered is None:
            self.counters["route_miss"] += 1
            return intents + self.liveness.probe_if_unknown(pkt.ip_dst, now)
        return intents + delivered

    def flow_removed(self, dpid: int, cookie_value: int, reason: str, now: float) -> list[Intent]:
        """A switch removed one of our entries (a timed-out binding ends)."""
        return self.flows.flow_removed(dpid, cookie_value, reason)

    # --- services -----------------------------------------------------------------------
    def put_service(self, svc: Service, create: bool, now: float) -> list[Intent]:
        """Create or replace a service; its D-SID entry is (re)installed on every switch."""
        old = self.catalogue.put_service(svc, create)
        intents: list[Intent] = []
        if old is not None and old.dsid != svc.dsid:
            intents += self.flows.remove_service(old)
        if old is not None and (mode_of(old) is not mode_of(svc) or not mode_of(svc).programmed(
                svc)):  # another dataplane, or reactive's failover or overlay turned off
            intents += self.programmer.remove(old, [i.dbid for i in self.catalogue.of_service(
                svc.name)])
        for dpid in sorted(self.topology.ports):
            intents += mode_of(svc).punts(dpid, svc)
        self.writes.put("service", svc.name, svc.to_dict())
        return intents + self._recompute(svc.name, now)

    def delete_service(self, name: str) -> list[Intent]:
        """Delete a service, its instances, its bindings and all its entries."""
        svc, gone = self.catalogue.delete_service(name)
        self.decisions.forget_service(name, [i.dbid for i in gone])
        programmed = self.programmer.remove(svc, [i.dbid for i in gone])
        for inst in gone:
            self.writes.delete("instance", inst.dbid)
        self.writes.delete("service", name)
        return programmed + self.flows.remove_service(svc) + self.health.remove(svc, gone)

    # --- instances and metrics ----------------------------------------------------------
    def register(self, dsid: str, dbid: str, dma: str, active: bool,
                 now: float) -> tuple[Instance, list[Intent]]:
        """A D-MA announced (D-SID, D-BID), serving or not; locate the D-BID if unknown."""
        inst = self.operations.register(dsid, dbid, dma, active, now)
        return inst, self.liveness.probe_if_unknown(dbid, now) + self._recompute(inst.service, now)

    def withdraw(self, dbid: str, now: float) -> list[Intent]:
        """A D-MA withdrew an instance: it gets no new flows; its bound flows move."""
        inst = self.operations.withdraw(dbid)
        self.decisions.forget_instance(dbid)
        self.health.state.forget(dbid)  # (registered again, it is no longer ejected)
        return (self._recompute(inst.service, now) + self.flows.move(dbid, now)
                + self.programmer.lost(dbid, self.catalogue.services.get(inst.service), now))

    def report(self, dbid: str, metrics: Metrics, now: float) -> list[Intent]:
        """One report on its own: record it, recompute (a burst: `intake.apply`, one `flush`)."""
        self.operations.instance(dbid)
        self.intake.apply([(dbid, metrics)], now)
        return self.flush(now)

    def flush(self, now: float, name: str | None = None) -> list[Intent]:
        """Recompute the services (or only `name`) whose decisions have not seen every report."""
        return [i for svc in self.intake.take(name) for i in self._recompute(svc, now)]

    def drain(self, dbid: str, deadline_s: float | None, now: float,
              reason: str = "operator drain") -> tuple[Instance, list[Intent]]:
        """No new flows; bound flows stay until they end or a deadline passes (then move)."""
        inst = self.operations.drain(dbid, deadline_s, now, reason)
        return inst, self._recompute(inst.service, now)

    def undrain(self, dbid: str, now: float) -> tuple[Instance, list[Intent]]:
        """End a drain: the instance takes new flows again (if otherwise usable)."""
        inst = self.operations.undrain(dbid, now)
        return inst, self._recompute(inst.service, now)

    def activate(self, dbid: str, reason: str, now: float) -> tuple[Instance, list[Intent]]:
        """Send an inactive instance's D-MA the reactivation trigger."""
        inst = self.operations.activate(dbid, reason, now)
        return inst, self._recompute(inst.service, now)

    def deactivate(self, dbid: str, deadline_s: float | None, now: float,
                   reason: str = "operator deactivate") -> tuple[Instance, list[Intent]]:
        """Drain, then have its D-MA stop it when no flow reaches it (or after the deadline)."""
        inst = self.operations.retire(dbid, deadline_s, now, reason)
        return inst, self._recompute(inst.service, now) + self.drains.honour(now)

    def _autoscale(self, now: float) -> list[Intent]:
        """Carry out the scaling policy's reactivations and scale-ins."""
        intents: list[Intent] = []
        for action in self.operations.scaling_actions(self.decisions.merit, now):
            if action.op == "reactivate":
                intents += self.activate(action.dbid, action.reason, now)[1]
                continue
            self.counters["scale_ins"] += 1
            svc = self.catalogue.services[self.catalogue.instances[action.dbid].service]
            deadline = svc.scaling.drain_deadline_s if svc.scaling else None
            intents += self.deactivate(action.dbid, deadline, now, action.reason)[1]
        return intents

    # --- decisions ----------------------------------------------------------------------
    def _paths_changed(self, now: float) -> list[Intent]:
        """Paths may have changed: routes are synced and every decision recomputed."""
        return self.forwarding.sync_routes() + self._recompute_all(now)

    def _recompute_all(self, now: float) -> list[Intent]:
        """Recompute every service's decisions (topology changed)."""
        return [i for name in sorted(self.catalogue.services) for i in self._recompute(name, now)]

    def _recompute(self, name: str, now: float) -> list[Intent]:
        """Recompute a service at every ingress; move flows off the down; re-program switches."""
        self.intake.dirty.discard(name)
        svc = self.catalogue.services.get(name)
        if svc is None:
            return []
        insts = self.catalogue.of_service(name)
        went_down = self.decisions.recompute(svc, insts, now)
        intents = self.flows.recomputed(svc, insts, went_down, now) + self.health.sync(svc, insts)
        if mode_of(svc).programmed(svc):
            intents += self.programmer.program(svc, insts, now, service_punt)
            for dbid in went_down:
                intents += self.programmer.lost(dbid, svc, now)
        self.operations.labelled(self.programmer.labels.take_assigned())  # (health's too)
        return intents

    # --- views --------------------------------------------------------------------------
    def drain_writes(self) -> list[StoreWrite]:
        """Hand the queued store writes to the shell (it applies them off the packet path)."""
        return self.writes.drain()

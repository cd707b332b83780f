"""The Dyncast core: events in (plain values and `now`), intents out. No I/O, no framework.

It composes the catalogue (services, instances), the topology, ordinary forwarding, the
decision engine and the binding table, and implements service demand dispatch: the first
packet of a new flow to a D-SID is bound to the instance the ingress's decision picks, and the
binding is installed at the ingress; a packet of a flow that already has a binding gets the
same instance again, never a new decision.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from controller.config import ControllerConfig
from controller.dataplane.affinity import (
    Binding,
    BindingTable,
    FlowKey,
    binding_flows,
    flow_key,
)
from controller.dataplane.programmer import Programmer
from controller.errors import NotFound
from controller.instances.catalogue import Catalogue
from controller.instances.scaling import Member, Scaler, load_of
from controller.instances.states import InstanceStates
from controller.intents import (
    PORT_CONTROLLER,
    PRIO_SERVICE,
    TABLE_CLASSIFY,
    VIRTUAL_MAC,
    CookieKind,
    FlowMod,
    Intent,
    Output,
    PacketOut,
    SetField,
    StoreWrite,
    cookie,
    cookie_kind,
    delete_by_cookie,
    match,
)
from controller.model import Instance, Metrics, Service
from controller.network.forwarding import Forwarding, base_flows
from controller.network.monitor import NetworkMonitor, costs_changed
from controller.network.packet import (
    ETH_TYPE_ARP,
    ETH_TYPE_IP,
    ETH_TYPE_LLDP,
    IPPROTO_TCP,
    TCP_ACK,
    TCP_SYN,
    Packet,
    build_tcp_syn,
    parse,
)
from controller.network.topology import Topology
from controller.selection.engine import EPSILON, CandidateInput, Engine, compute_ms
from controller.selection.placements import Placements, as_of, hold_s

PROBE_INTERVAL_S = 2.0
LIVENESS_PORT = 0xDC0D  # source port of the controller's TCP liveness probes
ENDING_REASONS = ("idle", "hard")  # flow-removed reasons that end a binding
PROBED_STATES = ("unknown", "active", "draining", "down")  # probed when their metrics are stale


def service_punt(dpid: int, svc: Service) -> FlowMod:
    """The entry that sends the first packet of each new flow to `svc`'s D-SID to us."""
    fields: dict[str, int | str] = {"eth_type": ETH_TYPE_IP, "ipv4_dst": svc.dsid}
    if svc.ip_proto is not None:
        fields["ip_proto"] = svc.ip_proto
    if svc.port is not None:
        fields[f"{svc.protocol}_dst"] = svc.port
    return FlowMod(dpid, TABLE_CLASSIFY, PRIO_SERVICE, match(**fields), (Output(PORT_CONTROLLER),),
                   cookie=cookie(CookieKind.SERVICE, _service_ident(svc)))


def _service_ident(svc: Service) -> int:
    """A service's cookie identifier: its D-SID as a 32-bit number."""
    a, b, c, d = (int(x) for x in svc.dsid.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


class Core:
    """All controller state; every public method is one event and returns the intents."""

    def __init__(self, config: ControllerConfig) -> None:
        sel = config.selection
        self.config = config
        self.catalogue = Catalogue()
        self.topology = Topology(hop_ms=sel.hop_ms)
        self.forwarding = Forwarding(self.topology, lambda ip: ip in self.catalogue.by_dsid)
        self.engine = Engine(sel.spread, sel.sharpness, sel.hysteresis)
        self.bindings = BindingTable()
        # new flows placed on each instance that its reports do not show yet (placements.py)
        self.placements = Placements(sel.placed_grace_s)
        # (ingress, service) -> instance -> the compute cost its decision last saw
        self._seen_compute: dict[tuple[int, str], dict[str, float]] = {}
        self.monitor = NetworkMonitor(config.monitor_settings())
        self.counters: Counter[str] = Counter()
        self.writes: list[StoreWrite] = []
        self._states: dict[str, str] = {}  # state of each instance the decisions last saw
        self.states = InstanceStates(config.stale_after_s, config.probe_timeout_s)
        self.scaler = Scaler()
        self._stop_sent: dict[str, float] = {}  # scale-in: when `deactivate` was last sent
        self._last_probe: dict[str, float] = {}
        self._detached: set[str] = set()  # instances whose attachment port or switch went away
        self._unanswered: dict[str, float] = {}  # instance -> first liveness probe not answered
        self._demand_seen: set[int] = set()  # switches outside `ingresses` where demand arrived
        self.router_of: dict[int, int] = dict(config.forwarders)  # D-Forwarder -> its D-Router
        self.programmer = Programmer(self.topology, self.engine,
                                     lambda dpid: self.router_of.get(dpid, dpid))
        for svc in config.services:
            self.catalogue.put_service(svc, create=True)

    # --- restore from the store -----------------------------------------------------------
    def restore(self, services: list[Service], instances: list[Instance],
                bindings: list[Binding]) -> None:
        """Load persisted state at start (configured services win over stored ones)."""
        for svc in services:
            if svc.name not in self.catalogue.services and svc.dsid not in self.catalogue.by_dsid:
                self.catalogue.put_service(svc, create=True)
        for inst in instances:
            if inst.service in self.catalogue.services:
                self.catalogue.instances[inst.dbid] = inst
        for b in bindings:
            if b.key.service in self.catalogue.services:
                self.bindings.restore(b)

    # --- switches -----------------------------------------------------------------------
    def switch_connected(self, dpid: int) -> list[Intent]:
        """A switch connected: install the fixed pipeline and the service entries."""
        self.forwarding.forget_switch(dpid)
        self.programmer.forget_switch(dpid)
        intents: list[Intent] = list(base_flows(dpid))
        intents += [service_punt(dpid, s) for s in self.catalogue.services.values()
                    if s.dataplane == "reactive"]
        return intents

    def switch_ports(self, dpid: int, ports: set[int], now: float) -> list[Intent]:
        """The switch's port list arrived: discover links from it and route hosts through it."""
        self.topology.switch_up(dpid, ports)
        intents = self.forwarding.lldp(now, [dpid])
        intents += self.forwarding.sync_routes()
        return intents + self._recompute_all(now)

    def switch_left(self, dpid: int, now: float) -> list[Intent]:
        """A switch disconnected: forget it; paths and decisions are recomputed."""
        lost = self.topology.switch_down(dpid)
        self._detach([h.ip for h in lost], now)
        self.forwarding.forget_switch(dpid)
        self.monitor.forget(dpid)
        self.engine.forget(ingress=dpid)
        self._seen_compute = {k: v for k, v in self._seen_compute.items() if k[0] != dpid}
        return self.forwarding.sync_routes() + self._recompute_all(now)

    def port_changed(self, dpid: int, port: int, up: bool, now: float) -> list[Intent]:
        """A port went up or down."""
        if up:
            self.topology.port_up(dpid, port)
            return self.forwarding.lldp(now, [dpid])
        link_lost, hosts_lost = self.topology.port_down(dpid, port)
        if not link_lost and not hosts_lost:
            return []
        self._detach([h.ip for h in hosts_lost], now)
        self._refresh_costs()
        return self.forwarding.sync_routes() + self._recompute_all(now)

    def tick(self, now: float) -> list[Intent]:
        """Periodic work: expire links, send LLDP, notice stale metrics, probe instances."""
        intents: list[Intent] = []
        if self.topology.expire_links(now, self.config.link_timeout_s) | self._refresh_costs():
            intents += self.forwarding.sync_routes()
            intents += self._recompute_all(now)
        intents += self.forwarding.lldp(now)
        intents += self._liveness_probes(now)
        changed = {i.service for i in list(self.catalogue.instances.values())
                   if self._observe(i, now) or self._states.get(i.dbid) != i.state}
        for name in sorted(changed):
            intents += self._recompute(name, now)
        for inst in self.catalogue.instances.values():
            intents += self._probe_if_unknown(inst.dbid, now)
        for name in sorted(self.programmer.expire(now)):
            intents += self._recompute(name, now)
        return intents + self._drain_deadlines(now) + self._autoscale(now)

    # --- measurements -------------------------------------------------------------------
    def port_stats(self, dpid: int, samples: list[tuple[int, int, int]],
                   now: float) -> list[Intent]:
        """Port counters (port, tx_bytes, rx_bytes) of one switch; congestion may move paths."""
        for port, tx_bytes, rx_bytes in samples:
            self.monitor.rates.update(dpid, port, tx_bytes, rx_bytes, now)
        if not self._refresh_costs():
            return []
        return self.forwarding.sync_routes() + self._recompute_all(now)

    def echo_rtt(self, dpid: int, rtt_s: float) -> None:
        """A control-channel round trip to a switch (for link delay measurement)."""
        self.monitor.echo_rtt(dpid, rtt_s)

    def _refresh_costs(self) -> bool:
        """Apply the monitor's link costs to the topology; True if paths may have changed."""
        costs = self.monitor.costs(self.topology)
        if not costs_changed(self.topology.link_cost_ms, costs):
            return False
        self.topology.set_costs(costs)
        return True

    def topology_view(self) -> dict[str, Any]:
        """Switches, hosts, and links with their rate, utilisation, delay and cost."""
        view = self.topology.to_dict()
        for link in view["links"]:
            direction = ((link["src"]["dpid"], link["src"]["port"]),
                         (link["dst"]["dpid"], link["dst"]["port"]))
            link.update(self.monitor.direction_view(direction))
        return view

    # --- packets ------------------------------------------------------------------------
    def packet_in(self, dpid: int, in_port: int, data: bytes, now: float) -> list[Intent]:
        """A packet reached the controller (LLDP, ARP, a new flow to a D-SID, a route miss)."""
        self.counters["packet_in"] += 1
        pkt = parse(data)
        if pkt is None:
            return []
        if pkt.eth_type == ETH_TYPE_LLDP:
            return self._lldp_in(dpid, in_port, pkt, now)
        if pkt.eth_type == ETH_TYPE_ARP and pkt.arp_spa is not None:
            assert pkt.arp_sha is not None
            intents = self._learn(pkt.arp_spa, pkt.arp_sha, dpid, in_port, now)
            if pkt.eth_dst == VIRTUAL_MAC and pkt.arp_spa in self._unanswered:
                self._alive(pkt.arp_spa, now)  # the answer to an ARP liveness probe
            return intents + self.forwarding.arp(dpid, in_port, pkt, data, now)
        if pkt.eth_type != ETH_TYPE_IP or pkt.ip_src is None or pkt.ip_dst is None:
            return []
        intents = self._learn(pkt.ip_src, pkt.eth_src, dpid, in_port, now)
        if pkt.l4_dst == LIVENESS_PORT and pkt.ip_proto == IPPROTO_TCP:
            self._liveness_answer(pkt, now)
            return intents
        svc = self.catalogue.service_for_dsid(pkt.ip_dst)
        if svc is not None:
            return intents + self._service_demand(svc, dpid, in_port, pkt, data, now)
        return intents + self._route_miss(dpid, in_port, pkt, data, now)

    def _learn(self, ip: str, mac: str, dpid: int, port: int, now: float) -> list[Intent]:
        """Learn where a sender lives; route to it, and re-decide if it is an instance."""
        if (ip == "0.0.0.0" or ip in self.catalogue.by_dsid  # a D-SID lives nowhere in
                or not self.topology.learn_host(ip, mac, dpid, port)):  # particular (overlay)
            return []
        inst = self.catalogue.instances.get(ip)
        if ip in self._detached:
            self._detached.discard(ip)
            if inst is not None:
                self.states.fire(inst, "attached", f"seen again at switch {dpid} port {port}",
                                 now)
        intents = self.forwarding.sync_routes([ip]) + self._follow_client(ip, dpid)
        if inst is not None:
            intents += self._recompute(inst.service, now)
        return intents

    def _follow_client(self, ip: str, dpid: int) -> list[Intent]:
        """A client seen at a new switch (it moved): its bindings move there before any reply
        can reach it unrewritten, and keep their instance (CATS R20)."""
        intents: list[Intent] = []
        for b in self.bindings.all():
            if b.key.src != ip or b.ingress == dpid:
                continue
            svc = self.catalogue.services.get(b.key.service)
            host = self.topology.hosts.get(b.dbid)
            if svc is None or host is None:
                continue
            intents.append(delete_by_cookie(b.ingress, cookie(CookieKind.AFFINITY_FWD, b.ident)))
            intents.append(delete_by_cookie(b.ingress, cookie(CookieKind.AFFINITY_REV, b.ident)))
            b.ingress = dpid
            self._write_binding(b)
            intents += binding_flows(b, svc, host.mac)
            self.counters["client_moves"] += 1
        return intents

    def _lldp_in(self, dpid: int, in_port: int, pkt: Packet, now: float) -> list[Intent]:
        """An LLDP frame we sent came back in at another switch: that is a link."""
        if pkt.lldp_dpid is None or pkt.lldp_port is None:
            return []
        direction = ((pkt.lldp_dpid, pkt.lldp_port), (dpid, in_port))
        new = self.topology.link_seen(*direction, now)
        if pkt.lldp_sent_at is not None:
            self.monitor.lldp_delay(direction, pkt.lldp_sent_at, now)
        if not new:
            return []
        self._refresh_costs()
        return self.forwarding.sync_routes() + self._recompute_all(now)

    def _route_miss(self, dpid: int, in_port: int, pkt: Packet, data: bytes,
                    now: float) -> list[Intent]:
        """A packet to an address we have no route for: deliver it if we now do, else probe."""
        assert pkt.ip_dst is not None
        port = self.topology.out_port(dpid, pkt.ip_dst)
        if port is None or port == in_port:
            self.counters["route_miss"] += 1
            return self._probe_if_unknown(pkt.ip_dst, now)
        mac = self.topology.hosts[pkt.ip_dst].mac
        return [PacketOut(dpid, data, (SetField("eth_dst", mac), Output(port)), in_port)]

    def _service_demand(self, svc: Service, dpid: int, in_port: int, pkt: Packet, data: bytes,
                        now: float) -> list[Intent]:
        """Bind a new flow (or re-install an existing binding) and deliver its packet."""
        key = flow_key(svc, pkt)
        if key is None:
            return []
        self.counters["packet_in_dsid"] += 1
        binding = self.bindings.get(key)
        if binding is None:
            return self._new_binding(svc, key, dpid, in_port, data, now)
        self.counters["reinstalls"] += 1
        if binding.ingress != dpid:
            binding.ingress = dpid
            self._write_binding(binding)
        return self._install(svc, binding, in_port, data)

    def _new_binding(self, svc: Service, key: FlowKey, dpid: int, in_port: int, data: bytes,
                     now: float) -> list[Intent]:
        """Take the ingress's decision for a new flow and bind it. At a D-Forwarder the
        decision of its D-Router applies; the binding is installed at the forwarder."""
        decider = self.router_of.get(dpid, dpid)
        if (decider, svc.name) not in self.engine.decisions:  # demand at a switch not
            self._demand_seen.add(decider)                    # configured as an ingress
            insts = self.catalogue.of_service(svc.name)
            self._decide(svc, insts, {i.dbid: i.state for i in insts}, decider, now)
        dbid = self._pick(svc, decider, now)
        if dbid is None or dbid not in self.topology.hosts:
            self.counters["dropped_no_instance"] += 1
            return []
        if self.config.selection.placed_flows:
            self.placements.add(dbid, now)
        binding = self.bindings.add(key, dbid, dpid, now)
        self.counters["new_flows"] += 1
        self._write_binding(binding)
        return self._install(svc, binding, in_port, data)

    def _pick(self, svc: Service, decider: int, now: float) -> str | None:
        """The instance the decider's decision picks. With placed flows counted, a pick whose
        compute cost has moved by more than the hysteresis since this ingress's decision saw it
        (flows placed since its last report, from any ingress) makes this ingress decide again
        first: lazily, one ingress at a time, only where a stale cost is about to be used."""
        dbid = self.engine.pick(decider, svc.name)
        inst = None if dbid is None else self.catalogue.instances.get(dbid)
        if inst is None or not self.config.selection.placed_flows:
            return dbid
        seen = self._seen_compute.get((decider, svc.name), {}).get(inst.dbid)
        if seen is None:
            return dbid
        cost = self._compute_ms(svc, inst, now)
        if abs(cost - seen) <= self.config.selection.hysteresis * max(seen, EPSILON):
            return dbid
        self.counters["placement_redecisions"] += 1
        insts = self.catalogue.of_service(svc.name)
        if not self._decide(svc, insts, {i.dbid: i.state for i in insts}, decider, now):
            return dbid  # within the hysteresis after all: the pick stands
        return self.engine.pick(decider, svc.name)

    def _install(self, svc: Service, binding: Binding, in_port: int,
                 data: bytes) -> list[Intent]:
        """The binding's entries, then the packet itself rewritten and sent on its way."""
        host = self.topology.hosts.get(binding.dbid)
        port = self.topology.out_port(binding.ingress, binding.dbid)
        if host is None or port is None:
            self.counters["dropped_unreachable"] += 1
            return []
        forward, reverse = binding_flows(binding, svc, host.mac)
        self.counters["flows_installed"] += 2
        actions = (SetField("eth_dst", host.mac), SetField("ipv4_dst", binding.dbid),
                   Output(port))
        return [forward, reverse, PacketOut(binding.ingress, data, actions, in_port)]

    def flow_removed(self, dpid: int, cookie_value: int, reason: str,
                     now: float) -> list[Intent]:
        """A switch removed one of our entries: a forward affinity entry that timed out ends
        its binding (deletions are our own doing and already accounted for)."""
        split = cookie_kind(cookie_value)
        if split is None or split[0] != CookieKind.AFFINITY_FWD or reason not in ENDING_REASONS:
            return []
        ident = split[1]
        reverse = delete_by_cookie(dpid, cookie(CookieKind.AFFINITY_REV, ident))
        binding = self.bindings.by_ident(ident)
        if binding is None or binding.ingress != dpid:
            return [reverse]
        self.bindings.remove(ident)
        self.counters["bindings_expired"] += 1
        self.writes.append(StoreWrite("binding", str(ident), None))
        return [reverse]

    # --- services -----------------------------------------------------------------------
    def put_service(self, svc: Service, create: bool, now: float) -> list[Intent]:
        """Create or replace a service; its D-SID entry is (re)installed on every switch."""
        old = self.catalogue.put_service(svc, create)
        intents: list[Intent] = []
        if old is not None and old.dsid != svc.dsid:
            intents += self._remove_service_flows(old)
        if old is not None and old.dataplane != svc.dataplane:
            intents += self.programmer.remove(old, [i.dbid for i in
                                                    self.catalogue.of_service(svc.name)])
        if svc.dataplane == "reactive":
            intents += [service_punt(dpid, svc) for dpid in sorted(self.topology.ports)]
        self.writes.append(StoreWrite("service", svc.name, svc.to_dict()))
        return intents + self._recompute(svc.name, now)

    def delete_service(self, name: str) -> list[Intent]:
        """Delete a service, its instances, its bindings and all its entries."""
        svc, gone = self.catalogue.delete_service(name)
        self.engine.forget(service=name)
        self._seen_compute = {k: v for k, v in self._seen_compute.items() if k[1] != name}
        programmed = self.programmer.remove(svc, [i.dbid for i in gone])
        for inst in gone:
            self.writes.append(StoreWrite("instance", inst.dbid, None))
            self._states.pop(inst.dbid, None)
        self.writes.append(StoreWrite("service", name, None))
        return programmed + self._remove_service_flows(svc)

    def _remove_service_flows(self, svc: Service) -> list[Intent]:
        """Delete the service's D-SID entry and every binding of it, at every switch."""
        intents: list[Intent] = [
            delete_by_cookie(dpid, cookie(CookieKind.SERVICE, _service_ident(svc)))
            for dpid in sorted(self.topology.ports)]
        for b in [b for b in self.bindings.all() if b.key.service == svc.name]:
            self.bindings.remove(b.ident)
            self.writes.append(StoreWrite("binding", str(b.ident), None))
            intents.append(delete_by_cookie(b.ingress, cookie(CookieKind.AFFINITY_FWD, b.ident)))
            intents.append(delete_by_cookie(b.ingress, cookie(CookieKind.AFFINITY_REV, b.ident)))
        return intents

    # --- instances and metrics ----------------------------------------------------------
    def register(self, dsid: str, dbid: str, dma: str, active: bool,
                 now: float) -> tuple[Instance, list[Intent]]:
        """A D-MA announced (D-SID, D-BID), serving or inactive; find where the D-BID lives if
        we do not know."""
        known = dbid in self.catalogue.instances
        inst = self.catalogue.register(dsid, dbid, dma, active, now)
        if not known:
            self.states.begin(inst, active, now)
        elif not active:
            self.states.fire(inst, "report_inactive", f"re-registered by D-MA {dma or '?'} as "
                             "inactive", now)
        self._write_instance(inst)
        return inst, self._probe_if_unknown(dbid, now) + self._recompute(inst.service, now)

    def withdraw(self, dbid: str, now: float) -> list[Intent]:
        """A D-MA withdrew an instance: it gets no new flows; its bound flows move."""
        inst = self.catalogue.withdraw(dbid)
        self._states.pop(dbid, None)
        self.placements.forget(dbid)
        self._unanswered.pop(dbid, None)
        self.states.forget(dbid)
        self.writes.append(StoreWrite("instance", dbid, None))
        return (self._recompute(inst.service, now) + self._move_bindings(dbid, now)
                + self.programmer.lost(dbid))

    def report(self, dbid: str, metrics: Metrics, now: float) -> list[Intent]:
        """A metric report: record it, apply what it says of the state, recompute decisions."""
        inst = self.catalogue.report(dbid, metrics, now)
        self.counters["metric_reports"] += 1
        self.placements.reported(dbid, now)
        if dbid not in self._detached:  # a detached instance stays down until seen again
            was = inst.state
            event = "report_active" if metrics.active else "report_inactive"
            self.states.fire(inst, event, f"D-MA {inst.dma or '?'} reports it "
                             f"{'serving' if metrics.active else 'not serving'}", now)
            if was == "activating" and inst.state == "active":
                self.counters["reactivations_completed"] += 1
        self._write_instance(inst)
        return self._recompute(inst.service, now)

    def take_commands(self, dbids: list[str]) -> list[dict[str, Any]]:
        """The commands waiting for the D-MA of these instances (the control channel)."""
        return self.states.take(dbids)

    def drain(self, dbid: str, deadline_s: float | None, now: float,
              reason: str = "operator drain") -> tuple[Instance, list[Intent]]:
        """Drain: no new flows; bound flows keep the instance until they end or, with a
        deadline, until it passes (then they move to a live instance)."""
        inst = self._instance(dbid)
        self.states.fire(inst, "drain", reason, now)
        inst.drain_deadline = None if deadline_s is None else now + deadline_s
        self._write_instance(inst)
        return inst, self._recompute(inst.service, now)

    def undrain(self, dbid: str, now: float) -> tuple[Instance, list[Intent]]:
        """End a drain: the instance takes new flows again (if otherwise usable)."""
        inst = self._instance(dbid)
        self.states.fire(inst, "undrain", "operator undrain", now)
        self._observe(inst, now)
        self._write_instance(inst)
        return inst, self._recompute(inst.service, now)

    def activate(self, dbid: str, reason: str, now: float) -> tuple[Instance, list[Intent]]:
        """Send an inactive instance's D-MA the reactivation trigger; it is `activating` until
        the D-MA reports it serving (or the activation times out)."""
        inst = self._instance(dbid)
        self.states.fire(inst, "activate", reason, now)
        svc = self.catalogue.services[inst.service]
        self.states.command(inst, svc.dsid, "reactivate", reason, now)
        self.counters["reactivations"] += 1
        self._write_instance(inst)
        return inst, self._recompute(inst.service, now)

    def deactivate(self, dbid: str, deadline_s: float | None, now: float,
                   reason: str = "operator deactivate") -> tuple[Instance, list[Intent]]:
        """Drain an instance, then tell its D-MA to stop it once no flow is bound to it (or the
        deadline has passed and its flows have moved); it becomes `inactive`."""
        inst, intents = self.drain(dbid, deadline_s, now, reason)
        inst.stop_when_drained = True
        self._write_instance(inst)
        return inst, intents + self._drain_deadlines(now)

    def _instance(self, dbid: str) -> Instance:
        """The instance with this D-BID, or NotFound."""
        inst = self.catalogue.instances.get(dbid)
        if inst is None:
            raise NotFound("instance", dbid)
        return inst

    def _observe(self, inst: Instance, now: float) -> bool:
        """Fire whatever event the facts about `inst` imply now; True if its state changed."""
        svc = self.catalogue.services.get(inst.service)
        timeout = (svc.scaling.activation_timeout_s if svc is not None and svc.scaling
                   else self.config.probe_timeout_s * 10)
        return self.states.observe(inst, now, inst.dbid in self._detached,
                                   self._unanswered.get(inst.dbid), timeout)

    def _drain_deadlines(self, now: float) -> list[Intent]:
        """Move the remaining flows of drained instances whose deadline has passed; tell the
        D-MA to stop a retiring instance once nothing is bound to it."""
        intents: list[Intent] = []
        for inst in list(self.catalogue.instances.values()):
            if not inst.draining:
                continue
            if inst.drain_deadline is not None and now >= inst.drain_deadline:
                inst.drain_deadline = None
                self._write_instance(inst)
                moved = self.counters["affinity_moves"]
                intents += self._move_bindings(inst.dbid, now)
                self.counters["drain_deadline_moves"] += self.counters["affinity_moves"] - moved
            if inst.stop_when_drained and not self._bound(inst.dbid):
                intents += self._send_stop(inst, now)
        return intents

    def _send_stop(self, inst: Instance, now: float) -> list[Intent]:
        """Queue `deactivate` for a drained, retiring instance (again if the D-MA stays silent)."""
        svc = self.catalogue.services[inst.service]
        retry = svc.scaling.activation_timeout_s if svc.scaling else 60.0
        if now - self._stop_sent.get(inst.dbid, -1e9) < retry:
            return []
        self._stop_sent[inst.dbid] = now
        self.states.command(inst, svc.dsid, "deactivate", "drained: no flow is bound to it", now)
        self.counters["deactivations"] += 1
        return []

    def _bound(self, dbid: str) -> int:
        """How many bindings hold this instance."""
        return sum(1 for b in self.bindings.all() if b.dbid == dbid)

    def _autoscale(self, now: float) -> list[Intent]:
        """Reactivation and scale-in for services with a scaling policy (one action at most)."""
        intents: list[Intent] = []
        for name, svc in sorted(self.catalogue.services.items()):
            if svc.scaling is None:
                continue
            insts = self.catalogue.of_service(name)
            members = [Member(i.dbid, i.state, load_of(i.metrics), self._merit(i),
                              i.draining and i.stop_when_drained, bool(i.dma)) for i in insts]
            action = self.scaler.evaluate(name, svc.scaling, members, now)
            if action is None:
                continue
            if action.op == "reactivate":
                intents += self.activate(action.dbid, action.reason, now)[1]
            else:
                self.counters["scale_ins"] += 1
                intents += self.deactivate(action.dbid, svc.scaling.drain_deadline_s, now,
                                           action.reason)[1]
        return intents

    def _merit(self, inst: Instance) -> float:
        """How useful an instance is: for an active one, its summed share of new flows over the
        ingresses; for any other, minus its mean network cost from the ingresses."""
        if inst.state == "active":
            return sum(d.shares.get(inst.dbid, 0.0) for (_, name), d in
                       self.engine.decisions.items() if name == inst.service)
        host = self.topology.hosts.get(inst.dbid)
        costs = [] if host is None else [self.topology.cost_ms(i, host.dpid)
                                         for i in self._ingresses()]
        known = [c for c in costs if c is not None]
        return -(sum(known) / len(known)) if known else -1e9

    def instance_view(self, inst: Instance, now: float) -> dict[str, Any]:
        """An instance with its state, history, location and bindings, for the API."""
        host = self.topology.hosts.get(inst.dbid)
        out = inst.to_dict()
        out["location"] = None if host is None else {"dpid": host.dpid, "port": host.port,
                                                      "mac": host.mac}
        out["bindings"] = self._bound(inst.dbid)
        svc = self.catalogue.services.get(inst.service)
        out["placed_since_report"] = 0 if svc is None else self._placed_count(svc, inst, now)
        out["pending_commands"] = [c.to_dict() for c in self.states.pending.get(inst.dbid, [])]
        return out

    # --- decisions ----------------------------------------------------------------------
    def _recompute_all(self, now: float) -> list[Intent]:
        """Recompute every service's decisions (topology changed)."""
        intents: list[Intent] = []
        for name in sorted(self.catalogue.services):
            intents += self._recompute(name, now)
        return intents

    def _recompute(self, name: str, now: float) -> list[Intent]:
        """Recompute one service's decision at every switch; move the flows of instances that
        just went down."""
        svc = self.catalogue.services.get(name)
        if svc is None:
            return []
        insts = self.catalogue.of_service(name)
        states = {i.dbid: i.state for i in insts}
        went_down = [d for d, s in states.items() if s == "down" and self._states.get(d) != s]
        self._states.update(states)
        for ingress in self._ingresses():
            self._decide(svc, insts, states, ingress, now)
        intents: list[Intent] = []
        for dbid in went_down:
            intents += self._move_bindings(dbid, now)
        if svc.dataplane != "reactive" or svc.overlay:
            intents += self.programmer.program(svc, insts, now, service_punt)
            for dbid in went_down:
                intents += self.programmer.lost(dbid)
        return intents

    def _ingresses(self) -> list[int]:
        """Switches that keep decisions: the configured ingresses (plus any where demand has
        arrived), or every switch when none are configured."""
        routers = set(self.topology.ports) - set(self.router_of)
        if not self.config.ingresses:
            return sorted(routers)
        return sorted((set(self.config.ingresses) | self._demand_seen) & routers)

    def _decide(self, svc: Service, insts: list[Instance], states: dict[str, str],
                ingress: int, now: float) -> bool:
        """Recompute one service's decision at one ingress; True if a new one is in force."""
        inputs = [self._input(svc, i, ingress, states[i.dbid], now) for i in insts]
        self._seen_compute[(ingress, svc.name)] = {r.dbid: r.compute_ms for r in inputs}
        if self.engine.update(ingress, svc.name, svc.weights, inputs, now, svc.delay_budget_ms,
                              svc.policy):
            self.counters["decision_changes"] += 1
            return True
        return False

    def _move_bindings(self, dbid: str, now: float) -> list[Intent]:
        """Rebind every flow bound to a dead instance to a live one (the only time affinity
        breaks); a flow with nowhere to go loses its binding and entries."""
        intents: list[Intent] = []
        for b in [b for b in self.bindings.all() if b.dbid == dbid]:
            svc = self.catalogue.services[b.key.service]
            intents.append(delete_by_cookie(b.ingress, cookie(CookieKind.AFFINITY_REV, b.ident)))
            target = self.engine.pick(b.ingress, svc.name)
            host = None if target is None else self.topology.hosts.get(target)
            if target is None or host is None:
                intents.append(delete_by_cookie(b.ingress,
                                                cookie(CookieKind.AFFINITY_FWD, b.ident)))
                self.bindings.remove(b.ident)
                self.writes.append(StoreWrite("binding", str(b.ident), None))
                self.counters["bindings_dropped"] += 1
                continue
            b.dbid = target
            if self.config.selection.placed_flows:
                self.placements.add(target, now)
            self._write_binding(b)
            intents += binding_flows(b, svc, host.mac)
            self.counters["affinity_moves"] += 1
        return intents

    def _detach(self, ips: list[str], now: float) -> None:
        """Instances among `ips` lost their attachment point: they are down until seen again."""
        for ip in ips:
            inst = self.catalogue.instances.get(ip)
            if inst is not None:
                self._detached.add(ip)
                self._observe(inst, now)

    def _liveness_probes(self, now: float) -> list[Intent]:
        """Probe every located instance whose metrics are stale: a TCP SYN to its service port
        from the D-SID (a SYN-ACK says it serves), or ARP for services without a TCP port."""
        intents: list[Intent] = []
        for inst in self.catalogue.instances.values():
            host = self.topology.hosts.get(inst.dbid)
            if (host is None or inst.state not in PROBED_STATES
                    or not self.states.stale(inst, now)):
                self._unanswered.pop(inst.dbid, None)
                continue
            self._unanswered.setdefault(inst.dbid, now)
            svc = self.catalogue.services[inst.service]
            if svc.protocol == "tcp" and svc.port is not None:
                syn = build_tcp_syn(VIRTUAL_MAC, host.mac, svc.dsid, inst.dbid, LIVENESS_PORT,
                                    svc.port)
                intents.append(PacketOut(host.dpid, syn, (Output(host.port),)))
            else:
                self._last_probe.pop(inst.dbid, None)
                intents += self.forwarding.probe(inst.dbid, now)
        return intents

    def _liveness_answer(self, pkt: Packet, now: float) -> None:
        """A reply to a liveness probe: SYN-ACK means the instance serves; RST means it does not."""
        flags = pkt.tcp_flags or 0
        if pkt.ip_src in self.catalogue.instances and flags & (TCP_SYN | TCP_ACK) == (
                TCP_SYN | TCP_ACK):
            self._alive(pkt.ip_src, now)

    def _alive(self, dbid: str, now: float) -> None:
        """An instance answered a liveness probe (a `down` one comes back as `unknown`)."""
        self._unanswered.pop(dbid, None)
        self.counters["liveness_answers"] += 1
        inst = self.catalogue.instances.get(dbid)
        if inst is not None:
            self.states.fire(inst, "alive", "answered a liveness probe", now)

    def _placed_count(self, svc: Service, inst: Instance, now: float) -> int:
        """New flows placed on `inst` that are likely still being served (younger than its
        holding time) and no report shows yet."""
        return self.placements.count(inst.dbid, now, hold_s(inst.metrics, svc.base_delay_ms))

    def _compute_ms(self, svc: Service, inst: Instance, now: float) -> float:
        """An instance's compute cost: its last report, and when `placed_flows` is on, that
        report aged to `now` (its requests finish) plus the flows placed on it since. Only
        where the controller places every new flow itself (`reactive`) does it know what came
        since: in the switch-driven modes the report stands as it was."""
        metrics = inst.metrics
        if self.config.selection.placed_flows:
            hold = hold_s(metrics, svc.base_delay_ms)
            age = (now - inst.metrics_at if inst.metrics_at is not None
                   and svc.dataplane == "reactive" else None)
            metrics = as_of(metrics, hold, self.placements.count(inst.dbid, now, hold), age)
        return compute_ms(metrics, svc.base_delay_ms, self.config.scoring)

    def _input(self, svc: Service, inst: Instance, ingress: int, state: str,
               now: float) -> CandidateInput:
        """One instance's costs as seen from one ingress."""
        host = self.topology.hosts.get(inst.dbid)
        network = None if host is None else self.topology.cost_ms(ingress, host.dpid)
        parts: dict[str, float] = {"hops": 0.0, "delay_ms": 0.0, "congestion_ms": 0.0,
                                   "admin_ms": 0.0}
        if network is not None and host is not None:
            for a, b in self.topology.path_links(ingress, host.dpid):
                parts["hops"] += 1
                for key, value in self.monitor.link_parts(a, b).items():
                    parts[key] += value
        return CandidateInput(inst.dbid, state, network, self._compute_ms(svc, inst, now),
                              tuple(parts.items()) if network is not None else ())

    # --- helpers ------------------------------------------------------------------------
    def _probe_if_unknown(self, ip: str, now: float) -> list[Intent]:
        """ARP-probe for an address whose location we do not know, at most every 2 s."""
        if ip in self.topology.hosts or now - self._last_probe.get(ip, -1e9) < PROBE_INTERVAL_S:
            return []
        self._last_probe[ip] = now
        return self.forwarding.probe(ip, now)

    def _write_instance(self, inst: Instance) -> None:
        """Queue the instance's record for the store."""
        self.writes.append(StoreWrite("instance", inst.dbid, inst.to_dict()))

    def _write_binding(self, binding: Binding) -> None:
        """Queue the binding's record for the store."""
        self.writes.append(StoreWrite("binding", str(binding.ident), binding.to_dict()))

    def drain_writes(self) -> list[StoreWrite]:
        """Hand the queued store writes to the shell (it applies them off the packet path)."""
        out, self.writes = self.writes, []
        return out

    def learned_entries(self, dpid: int,
                        rows: list[tuple[int, dict[str, Any], int, float]]) -> None:
        """What a switch reported of its table 2 (entries it learned, pins)."""
        self.programmer.report_learned(dpid, rows)

    def bindings_view(self) -> list[dict[str, Any]]:
        """The affinity table: bindings the controller made, and entries switches learned."""
        rows = [b.to_dict() for b in self.bindings.all()]
        for row in rows:
            row["source"] = "controller"
        return rows + self.programmer.bindings_view(
            lambda dsid: self.catalogue.by_dsid.get(dsid))

    def stats(self) -> dict[str, int]:
        """Counters for /stats."""
        out = dict(self.counters)
        out["bucket_moves_started"] = self.programmer.moves_started
        out["dataplane_entries"] = self.programmer.reconciler.count()
        out["bindings"] = len(self.bindings)
        out["decisions_recomputed"] = self.engine.recomputed
        out.setdefault("affinity_moves", 0)
        out.setdefault("errors", 0)
        return out


"""Liveness: is an instance still there when its metrics stop coming?

Boundary: it notices what the facts imply (an instance detached from its port or switch, stale
metrics, unanswered probes, an activation that timed out) and fires the matching life-cycle
events; it probes instances whose metrics are stale (a TCP SYN to the service port from the
D-SID, or ARP) and addresses whose location is unknown. Recomputing decisions and moving flows
after a state change is the caller's job.
"""

from __future__ import annotations

import functools
from collections import Counter

from controller.instances.catalogue import Catalogue
from controller.instances.states import InstanceStates
from controller.intents import VIRTUAL_MAC, Intent, Output, PacketOut
from controller.model import Instance
from controller.network.forwarding import Forwarding
from controller.network.packet import IPPROTO_TCP, TCP_ACK, TCP_SYN, Packet, build_tcp_syn
from controller.network.topology import Topology

PROBE_INTERVAL_S = 2.0  # at most one ARP probe for an unknown address this often
LIVENESS_PORT = 0xDC0D  # source port of the controller's TCP liveness probes
PROBED_STATES = ("unknown", "active", "draining", "down")  # probed when their metrics are stale
# a probe's SYN depends only on its addresses and ports: built once per instance location, not
# on every tick for every stale instance (5,000 registered, not yet reported: 50-100 ms a tick)
_probe_syn = functools.lru_cache(maxsize=16384)(build_tcp_syn)


class Liveness:
    """Detached instances, unanswered probes, and the probes themselves."""

    def __init__(self, catalogue: Catalogue, states: InstanceStates,
                 network: tuple[Topology, Forwarding], probe_timeout_s: float,
                 counters: Counter[str]) -> None:
        self.catalogue = catalogue
        self.states = states
        self.topology, self.forwarding = network
        # where a registered instance lives is locked: no packet from another port moves it
        self.topology.locked = lambda ip: ip in catalogue.instances
        self.probe_timeout_s = probe_timeout_s
        self._last_probe: dict[str, float] = {}
        self._detached: set[str] = set()  # instances whose attachment port or switch went away
        self._unanswered: dict[str, float] = {}  # instance -> first liveness probe not answered
        self.counters = counters

    def detached(self, dbid: str) -> bool:
        """True while the instance's attachment point is gone (it stays down until seen)."""
        return dbid in self._detached

    def detach(self, ips: list[str], now: float) -> None:
        """Instances among `ips` lost their attachment point: they are down until seen again."""
        for ip in ips:
            inst = self.catalogue.instances.get(ip)
            if inst is not None:
                self._detached.add(ip)
                self.observe(inst, now)

    def seen(self, ip: str, dpid: int, port: int, now: float) -> None:
        """An address was seen at a switch port: a detached instance is attached again."""
        if ip not in self._detached:
            return
        self._detached.discard(ip)
        inst = self.catalogue.instances.get(ip)
        if inst is not None:
            self.states.fire(inst, "attached", f"seen again at switch {dpid} port {port}", now)

    def observe(self, inst: Instance, now: float) -> bool:
        """Fire whatever event the facts about `inst` imply now; True if its state changed."""
        svc = self.catalogue.services.get(inst.service)
        timeout = (svc.scaling.activation_timeout_s if svc is not None and svc.scaling
                   else self.probe_timeout_s * 10)
        return self.states.observe(inst, now, inst.dbid in self._detached,
                                   self._unanswered.get(inst.dbid), timeout)

    def probes(self, now: float) -> list[Intent]:
        """Probe every located instance whose metrics are stale (`probe`)."""
        return [i for inst in self.catalogue.instances.values() for i in self.probe(inst, now)]

    def probe(self, inst: Instance, now: float) -> list[Intent]:
        """Probe the instance if it is located and its metrics are stale: a TCP SYN to its
        service port from the D-SID (a SYN-ACK says it serves), or ARP for services without
        a TCP port."""
        host = self.topology.hosts.get(inst.dbid)
        if host is None or inst.state not in PROBED_STATES or not self.states.stale(inst, now):
            self._unanswered.pop(inst.dbid, None)
            return []
        self._unanswered.setdefault(inst.dbid, now)
        svc = self.catalogue.services[inst.service]
        if svc.protocol == "tcp" and svc.port is not None:
            syn = _probe_syn(VIRTUAL_MAC, host.mac, svc.dsid, inst.dbid, LIVENESS_PORT, svc.port)
            return [PacketOut(host.dpid, syn, (Output(host.port),))]
        self._last_probe.pop(inst.dbid, None)
        return self.forwarding.probe(inst.dbid, now)

    def probe_if_unknown(self, ip: str, now: float) -> list[Intent]:
        """ARP-probe for an address whose location we do not know, at most every 2 s."""
        if ip in self.topology.hosts or now - self._last_probe.get(ip, -1e9) < PROBE_INTERVAL_S:
            return []
        self._last_probe[ip] = now
        return self.forwarding.probe(ip, now)

    def is_probe_answer(self, pkt: Packet) -> bool:
        """True for a TCP packet to our probes' source port (it is no client's traffic)."""
        return pkt.l4_dst == LIVENESS_PORT and pkt.ip_proto == IPPROTO_TCP

    def tcp_answer(self, pkt: Packet, now: float) -> None:
        """A reply to a TCP probe: SYN-ACK means the instance serves; RST means it does not."""
        flags = pkt.tcp_flags or 0
        if (pkt.ip_src in self.catalogue.instances
                and flags & (TCP_SYN | TCP_ACK) == (TCP_SYN | TCP_ACK)):
            self._alive(pkt.ip_src, now)

    def arp_answer(self, pkt: Packet, now: float) -> None:
        """An ARP packet to the controller's MAC from a probed instance answers the probe."""
        if pkt.eth_dst == VIRTUAL_MAC and pkt.arp_spa in self._unanswered:
            self._alive(pkt.arp_spa, now)

    def _alive(self, dbid: str, now: float) -> None:
        """An instance answered a liveness probe (a `down` one comes back as `unknown`)."""
        self._unanswered.pop(dbid, None)
        self.counters["liveness_answers"] += 1
        inst = self.catalogue.instances.get(dbid)
        if inst is not None:
            self.states.fire(inst, "alive", "answered a liveness probe", now)

    def forget(self, dbid: str) -> None:
        """The instance was withdrawn."""
        self._unanswered.pop(dbid, None)
        self.states.forget(dbid)

"""Ordinary connectivity: ARP handling, host routes along shortest paths, LLDP discovery frames.

The controller is the only forwarding application: it answers ARP for D-SIDs (with the virtual
MAC) and for hosts it knows (proxy ARP), floods unknown ARP requests to the edge ports of every
switch (never between switches, so there are no loops), and keeps one `forward`-table entry per
(switch, host address) pointing along the shortest path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from controller.intents import (
    PORT_CONTROLLER,
    PRIO_ARP,
    PRIO_HOST,
    PRIO_LLDP,
    PRIO_MISS,
    TABLE_AFFINITY,
    TABLE_CLASSIFY,
    TABLE_DECISION,
    TABLE_FORWARD,
    TABLE_INSTANCE,
    VIRTUAL_MAC,
    CookieKind,
    FlowMod,
    Intent,
    Output,
    PacketOut,
    Resubmit,
    SetField,
    cookie,
    match,
)
from controller.network.packet import (
    ARP_REPLY,
    ARP_REQUEST,
    BROADCAST,
    ETH_TYPE_ARP,
    ETH_TYPE_IP,
    ETH_TYPE_LLDP,
    Packet,
    build_arp,
    build_lldp,
)
from controller.network.topology import Topology

FLOOD_HOLD_S = 0.5  # one flood per (sender, target) in this window: no storms before LLDP
UNSPECIFIED = "0.0.0.0"


def base_flows(dpid: int) -> list[FlowMod]:
    """The pipeline's fixed entries: LLDP/ARP to the controller, the misses of both tables.

    A forward-table miss sends IPv4 to the controller (it probes for the destination) and
    drops anything else (IPv6 neighbour discovery and the like have no route here).
    """
    infra = cookie(CookieKind.INFRA)
    to_ctl = (Output(PORT_CONTROLLER),)
    return [
        FlowMod(dpid, TABLE_CLASSIFY, PRIO_LLDP, match(eth_type=ETH_TYPE_LLDP), to_ctl,
                cookie=infra),
        FlowMod(dpid, TABLE_CLASSIFY, PRIO_ARP, match(eth_type=ETH_TYPE_ARP), to_ctl,
                cookie=infra),
        FlowMod(dpid, TABLE_CLASSIFY, PRIO_MISS, (), goto=TABLE_FORWARD, cookie=infra),
        FlowMod(dpid, TABLE_FORWARD, PRIO_MISS + 1, match(eth_type=ETH_TYPE_IP), to_ctl,
                cookie=infra),
        FlowMod(dpid, TABLE_FORWARD, PRIO_MISS, (), cookie=infra),  # anything else: drop
        # learn/bucket services (controller/dataplane/rules.py): a flow with no entry of its own is
        # decided by the decision table; a decision or instance miss drops
        FlowMod(dpid, TABLE_AFFINITY, PRIO_MISS, (), (Resubmit(TABLE_DECISION),), cookie=infra),
        FlowMod(dpid, TABLE_DECISION, PRIO_MISS, (), cookie=infra),
        FlowMod(dpid, TABLE_INSTANCE, PRIO_MISS, (), cookie=infra),
    ]


class Forwarding:
    """ARP and host routes over a Topology; every method returns intents to carry out."""

    def __init__(self, topology: Topology, is_dsid: Callable[[str], bool]) -> None:
        self.topology = topology
        self.is_dsid = is_dsid
        self._installed: dict[int, dict[str, int]] = {}
        self._floods: dict[tuple[str, str], float] = {}

    # --- ARP ----------------------------------------------------------------------------
    def arp(self, dpid: int, in_port: int, pkt: Packet, data: bytes,
            now: float) -> list[Intent]:
        """Answer, deliver or flood an ARP packet (the caller has learned its sender)."""
        assert pkt.arp_spa is not None and pkt.arp_tpa is not None and pkt.arp_sha is not None
        intents: list[Intent] = []
        if pkt.arp_op == ARP_REQUEST and pkt.arp_spa != pkt.arp_tpa:
            intents += self._request(dpid, in_port, pkt, data, now)
        elif pkt.arp_op == ARP_REPLY and pkt.eth_dst != VIRTUAL_MAC:
            intents += self._deliver(pkt, data, now)
        return intents

    def _request(self, dpid: int, in_port: int, pkt: Packet, data: bytes,
                 now: float) -> list[Intent]:
        """Answer for a D-SID or a known host; flood otherwise."""
        assert pkt.arp_tpa is not None and pkt.arp_spa is not None and pkt.arp_sha is not None
        if self.is_dsid(pkt.arp_tpa):
            mac = VIRTUAL_MAC
        elif pkt.arp_tpa in self.topology.hosts:
            mac = self.topology.hosts[pkt.arp_tpa].mac
        else:
            return self.flood_arp(pkt, data, now, exclude=(dpid, in_port))
        reply = build_arp(ARP_REPLY, mac, pkt.arp_tpa, pkt.arp_sha, pkt.arp_spa)
        return [PacketOut(dpid, reply, (Output(in_port),))]

    def _deliver(self, pkt: Packet, data: bytes, now: float) -> list[Intent]:
        """Send an ARP reply to the host it is for."""
        assert pkt.arp_tpa is not None
        dest = self.topology.hosts.get(pkt.arp_tpa)
        if dest is None or dest.mac != pkt.eth_dst:
            return self.flood_arp(pkt, data, now, exclude=None)
        return [PacketOut(dest.dpid, data, (Output(dest.port),))]

    def flood_arp(self, pkt: Packet, data: bytes, now: float,
                  exclude: tuple[int, int] | None) -> list[Intent]:
        """Send an ARP packet out of every edge port of every switch, once per hold time."""
        assert pkt.arp_spa is not None and pkt.arp_tpa is not None
        key = (pkt.arp_spa, pkt.arp_tpa)
        if now - self._floods.get(key, -1e9) < FLOOD_HOLD_S:
            return []
        self._floods[key] = now
        if len(self._floods) > 10000:
            self._floods = {k: t for k, t in self._floods.items() if now - t < FLOOD_HOLD_S}
        return self._to_edges(data, exclude)

    def probe(self, ip: str, now: float) -> list[Intent]:
        """Ask, from the controller, who has `ip` (an ARP probe with sender address 0.0.0.0)."""
        data = build_arp(ARP_REQUEST, VIRTUAL_MAC, UNSPECIFIED, BROADCAST, ip)
        pkt = Packet(VIRTUAL_MAC, BROADCAST, ETH_TYPE_ARP, arp_op=ARP_REQUEST,
                     arp_sha=VIRTUAL_MAC, arp_spa=UNSPECIFIED, arp_tpa=ip)
        return self.flood_arp(pkt, data, now, exclude=None)

    def _to_edges(self, data: bytes, exclude: tuple[int, int] | None) -> list[Intent]:
        """Packet-outs of `data` through every edge port but `exclude`."""
        out: list[Intent] = []
        for dpid in sorted(self.topology.ports):
            ports = [p for p in self.topology.edge_ports(dpid) if (dpid, p) != exclude]
            if ports:
                out.append(PacketOut(dpid, data, tuple(Output(p) for p in ports)))
        return out

    # --- routes -------------------------------------------------------------------------
    def sync_routes(self, ips: Iterable[str] | None = None) -> list[Intent]:
        """Bring host routes in line with the topology (all hosts when `ips` is None)."""
        topo = self.topology
        wanted = list(topo.hosts) if ips is None else list(ips)
        if ips is None:
            gone = {ip for routes in self._installed.values() for ip in routes} - set(wanted)
            wanted += sorted(gone)
        intents: list[Intent] = []
        for dpid in sorted(topo.ports):
            installed = self._installed.setdefault(dpid, {})
            for ip in wanted:
                port = topo.out_port(dpid, ip) if ip in topo.hosts else None
                if installed.get(ip) == port:
                    continue
                intents.append(self._route(dpid, ip, port))
                if port is None:
                    del installed[ip]
                else:
                    installed[ip] = port
        return intents

    def _route(self, dpid: int, ip: str, port: int | None) -> FlowMod:
        """The forward-table entry for `ip` at `dpid` (a strict delete when `port` is None)."""
        fields = match(eth_type=ETH_TYPE_IP, ipv4_dst=ip)
        if port is None:
            return FlowMod(dpid, TABLE_FORWARD, PRIO_HOST, fields, command="delete_strict",
                           cookie=cookie(CookieKind.HOST))
        host = self.topology.hosts[ip]
        return FlowMod(dpid, TABLE_FORWARD, PRIO_HOST, fields,
                       (SetField("eth_dst", host.mac), Output(port)),
                       cookie=cookie(CookieKind.HOST))

    def installed_routes(self, dpid: int) -> list[FlowMod]:
        """The host routes we hold installed at a switch."""
        return [self._route(dpid, ip, port) for ip, port in
                sorted(self._installed.get(dpid, {}).items()) if ip in self.topology.hosts]

    def forget_switch(self, dpid: int) -> None:
        """A switch (re)connects or leaves: its routes are unknown until synced again."""
        self._installed.pop(dpid, None)

    # --- discovery ----------------------------------------------------------------------
    def lldp(self, now: float, dpids: Iterable[int] | None = None) -> list[Intent]:
        """LLDP frames, stamped with `now`, out of every usable port of the given switches."""
        out: list[Intent] = []
        for dpid in sorted(self.topology.ports if dpids is None else dpids):
            for port in sorted(self.topology.ports.get(dpid, ())):
                frame = build_lldp(dpid, port, VIRTUAL_MAC, now)
                out.append(PacketOut(dpid, frame, (Output(port),)))
        return out


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
    Action,
    CookieKind,
    FlowMod,
    Intent,
    Match,
    Output,
    PacketOut,
    Resubmit,
    SetField,
    cookie,
    flow_mod,
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
from controller.network.paths import Tree
from controller.network.topology import HostLoc, Topology

# where a host is, the tree towards its switch and that tree's version, the edges' ports version
Stamp = tuple[HostLoc, Tree, int, int]
HOST_COOKIE = cookie(CookieKind.HOST)
ROUTE_PARTS = 100_000  # (host, port) routes whose match and actions are kept for reuse
FLOOD_HOLD_S = 0.5  # one flood per (sender, target) in this window: no storms before LLDP
UNSPECIFIED = "0.0.0.0"


def probe_frame(ip: str) -> bytes:
    """The controller's ARP probe for `ip`: sender address 0.0.0.0, which only the address's
    owner answers (never a controller by proxy: `Forwarding._request`)."""
    return build_arp(ARP_REQUEST, VIRTUAL_MAC, UNSPECIFIED, BROADCAST, ip)


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
        # each host's routes were last synced at every switch for this (`_stamp`); switches
        # whose routes are unknown (new, reconnected) until a sync of every host
        self._stamps: dict[str, Stamp] = {}
        self._unsynced: set[int] = set()
        self._parts: dict[tuple[str, str, int | None], tuple[Match, tuple[Action, ...]]] = {}
        self._floods: dict[tuple[str, str], float] = {}
        self.lldp_key: bytes | None = None  # tags the LLDP frames (Network.keyed)
        # switch -> host -> (port, MAC, route) last made for the audit (`installed_routes`)
        self._audited: dict[int, dict[str, tuple[int, str, FlowMod]]] = {}

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
        """Answer for a D-SID or a known host; flood otherwise. A probe (sender address
        0.0.0.0: a controller's liveness probe, or a host checking that an address is free) is
        for the address's owner to answer, never answered by proxy: the owner's own reply
        says where it is (a member's proxy reply to another's probe, sent back out of the
        port it came in by, came in at the other's switch behind a link it had not seen yet,
        and placed the instance there: network/settling.py), and a host checking its address
        must not hear it is in use."""
        assert pkt.arp_tpa is not None and pkt.arp_spa is not None and pkt.arp_sha is not None
        if self.is_dsid(pkt.arp_tpa):
            mac = VIRTUAL_MAC
        elif pkt.arp_tpa in self.topology.hosts and pkt.arp_spa != UNSPECIFIED:
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

    def flooded(self, spa: str, tpa: str, now: float) -> bool:
        """True when an ARP from `spa` for `tpa` was flooded within the hold time (a copy of
        it may come back in through a link not seen yet: network/settling.py)."""
        return now - self._floods.get((spa, tpa), -1e9) < FLOOD_HOLD_S

    def arp_sure(self, pkt: Packet, now: float) -> bool:
        """True when an ARP packet cannot have crossed a link (network/settling.py): not a
        copy of one flooded within the hold time, nor a reply to a request flooded then (a
        controller's proxy reply to the copy that went out through a link not seen yet comes
        back the same way). A reply to a probe (to 0.0.0.0) is its owner's: probes are never
        answered by proxy (`_request`)."""
        assert pkt.arp_spa is not None and pkt.arp_tpa is not None
        if self.flooded(pkt.arp_spa, pkt.arp_tpa, now):
            return False
        return not (pkt.arp_op == ARP_REPLY and pkt.arp_tpa != UNSPECIFIED
                    and self.flooded(pkt.arp_tpa, pkt.arp_spa, now))

    def probe(self, ip: str, now: float) -> list[Intent]:
        """Ask, from the controller, who has `ip` (an ARP probe with sender address 0.0.0.0),
        out of every edge port."""
        data = probe_frame(ip)
        pkt = Packet(VIRTUAL_MAC, BROADCAST, ETH_TYPE_ARP, arp_op=ARP_REQUEST,
                     arp_sha=VIRTUAL_MAC, arp_spa=UNSPECIFIED, arp_tpa=ip)
        return self.flood_arp(pkt, data, now, exclude=None)

    def ask(self, ip: str, dpid: int, port: int) -> list[Intent]:
        """Ask `ip` alone, out of one port of one switch, whether it is there: an ARP probe
        (sender 0.0.0.0) that only its owner answers (`_request`); the reply places it."""
        return [PacketOut(dpid, probe_frame(ip), (Output(port),))]

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
        """Bring host routes in line with the topology (all hosts when `ips` is None).

        A host's routes depend on where it is, on the shortest-path tree towards its switch
        and on the ports of the edges on it: when only that tree was repaired since the host
        was last synced (once), only the switches whose next hop the repair changed are looked
        at, and switches whose routes are unknown (new or reconnected) get every host. Anything
        else (a host that moved or went, a tree recomputed or repaired twice, an edge that
        changed its ports) looks at every switch for that host, as the first sync does."""
        topo = self.topology
        switches = sorted(topo.ports)
        for dpid in switches:
            if dpid not in self._installed:
                self._installed[dpid] = {}
                self._unsynced.add(dpid)
        hosts = topo.hosts
        if ips is None:
            wanted = list(hosts) + sorted(self._stamps.keys() - hosts.keys())
            fresh = self._unsynced & topo.ports.keys()
        else:
            wanted, fresh = list(ips), set()
        every: list[str] = []  # hosts to look at at every switch
        some: dict[int, list[str]] = {}  # switch -> the other hosts to look at there
        stamps: dict[str, Stamp | None] = {}
        for ip in wanted:
            stamp = self._stamp(ip)
            stamps[ip] = stamp
            near = None if ips is not None else self._near(ip, stamp)
            if near is None:
                every.append(ip)
                continue
            for dpid in near:
                if dpid not in fresh:
                    some.setdefault(dpid, []).append(ip)
        intents: list[Intent] = []
        rank: dict[str, int] = {}  # (built when first needed)
        for dpid in switches:
            here = wanted if dpid in fresh else _merged(every, some.get(dpid), wanted, rank)
            if here:
                intents += self._sync_at(dpid, here, stamps)
        for ip, stamp in stamps.items():
            if stamp is None:
                self._stamps.pop(ip, None)
            else:
                self._stamps[ip] = stamp
        if ips is None:
            self._unsynced -= fresh
        return intents

    def _stamp(self, ip: str) -> Stamp | None:
        """What the routes towards `ip` depend on (None: it is not a known host)."""
        host = self.topology.hosts.get(ip)
        if host is None:
            return None
        tree = self.topology.tree(host.dpid)
        return host, tree, tree.version, self.topology.relinked

    def _near(self, ip: str, stamp: Stamp | None) -> set[int] | None:
        """The switches whose route towards `ip` may differ from the one installed when it
        was last synced (class docstring), or None: any switch's may."""
        was = self._stamps.get(ip)
        if stamp is None or was is None or was[0] != stamp[0] or was[1] is not stamp[1] or (
                was[3] != stamp[3]):
            return None
        if was[2] == stamp[2]:
            return set()
        if was[2] + 1 == stamp[2]:
            return stamp[1].moved
        return None

    def _sync_at(self, dpid: int, ips: Iterable[str],
                 stamps: dict[str, Stamp | None]) -> list[Intent]:
        """Bring the routes of `ips` at one switch in line with the topology (`stamps`: each
        one's host and tree, looked up once per sync; the port is `Topology.out_port`'s)."""
        near, installed = self.topology.ports_at(dpid), self._installed[dpid]
        route = self._route
        intents: list[Intent] = []
        for ip in ips:
            stamp = stamps[ip]
            if stamp is None:
                if ip in installed:
                    intents.append(route(dpid, ip, None, ""))
                    del installed[ip]
                continue
            host = stamp[0]
            if host.dpid == dpid:
                port: int | None = host.port
            else:
                nxt = stamp[1].parent.get(dpid)
                port = None if nxt is None else near[nxt]
            if installed.get(ip) == port:
                continue
            intents.append(route(dpid, ip, port, host.mac))
            if port is None:
                del installed[ip]
            else:
                installed[ip] = port
        return intents

    def _route(self, dpid: int, ip: str, port: int | None, mac: str | None = None) -> FlowMod:
        """The forward-table entry for `ip` (a host with `mac`: the known host's when None) at
        `dpid` (a strict delete when `port` is None). Its match and actions are shared between
        switches (a link change rewrites thousands of routes on a large network)."""
        if mac is None:
            mac = self.topology.hosts[ip].mac if port is not None else ""
        key = (ip, mac if port is not None else "", port)
        parts = self._parts.get(key)
        if parts is None:
            if len(self._parts) >= ROUTE_PARTS:
                self._parts.clear()
            actions = () if port is None else (SetField("eth_dst", mac), Output(port))
            parts = self._parts[key] = (match(eth_type=ETH_TYPE_IP, ipv4_dst=ip), actions)
        return flow_mod(dpid, TABLE_FORWARD, PRIO_HOST, parts[0], parts[1], HOST_COOKIE,
                        "add" if port is not None else "delete_strict")

    def installed_routes(self, dpid: int) -> list[FlowMod]:
        """The host routes we hold installed at a switch (each audit of a switch asks for all
        of them: a route is made again only when its port or its host's MAC changed since the
        last audit; 5,000 of them cost the audit most of its time otherwise)."""
        hosts, installed = self.topology.hosts, self._installed.get(dpid, {})
        made = self._audited.setdefault(dpid, {})
        if len(made) > 2 * len(installed) + 64:  # routes since deleted: forget them
            made = self._audited[dpid] = {ip: v for ip, v in made.items() if ip in installed}
        out = []
        for ip, port in sorted(installed.items()):
            host = hosts.get(ip)
            if host is None:
                continue
            was = made.get(ip)
            if was is None or was[0] != port or was[1] != host.mac:
                was = made[ip] = (port, host.mac, self._route(dpid, ip, port))
            out.append(was[2])
        return out

    def forget_switch(self, dpid: int) -> None:
        """A switch (re)connects or leaves: its routes are unknown until synced again."""
        self._installed.pop(dpid, None)
        self._audited.pop(dpid, None)
        self._unsynced.add(dpid)

    # --- discovery ----------------------------------------------------------------------
    def lldp(self, now: float, dpids: Iterable[int] | None = None) -> list[Intent]:
        """LLDP frames, stamped with `now`, out of every usable port of the given switches."""
        out: list[Intent] = []
        for dpid in sorted(self.topology.ports if dpids is None else dpids):
            for port in sorted(self.topology.ports.get(dpid, ())):
                frame = build_lldp(dpid, port, VIRTUAL_MAC, now, self.lldp_key)
                out.append(PacketOut(dpid, frame, (Output(port),)))
        return out


def _merged(every: list[str], some: list[str] | None, order: list[str],
            rank: dict[str, int]) -> list[str]:
    """The hosts of `every` and `some`, in the order of `order` (`rank`: each one's place in
    it, filled in here when empty)."""
    if not some:
        return every
    if not every:
        return some
    if not rank:
        rank.update((ip, i) for i, ip in enumerate(order))
    return sorted({*every, *some}, key=rank.__getitem__)

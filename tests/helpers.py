"""Builders shared by the unit tests: frames, a Figure 2 network fed to the core as events."""

from __future__ import annotations

import socket
import struct

from controller.config import ControllerConfig, SelectionConfig
from controller.core import Core
from controller.intents import VIRTUAL_MAC, FlowMod, Intent, PacketOut
from controller.model import AffinityPolicy, Metrics, Service
from controller.network.packet import ARP_REQUEST, BROADCAST, build_arp, build_lldp, mac_to_bytes

SVC1 = Service("svc1", "10.0.100.1", "tcp", 8000, AffinityPolicy("5-tuple", 30, 0))
SVC2 = Service("svc2", "10.0.100.2", "tcp", 8000, AffinityPolicy("3-tuple", 30, 0))
# host -> (ip, mac, dpid, port); Figure 2: r1=1, r2=2, r3=3 around x0=4
HOSTS = {
    "c1": ("10.0.0.1", "00:00:00:00:00:01", 1, 1),
    "c2": ("10.0.0.2", "00:00:00:00:00:02", 2, 1),
    "e21": ("10.0.0.21", "00:00:00:00:00:21", 2, 2),
    "e22": ("10.0.0.22", "00:00:00:00:00:21", 2, 2),
    "e31": ("10.0.0.31", "00:00:00:00:00:31", 3, 1),
    "e32": ("10.0.0.32", "00:00:00:00:00:31", 3, 1),
}
# (dpid, port) <-> (dpid, port)
LINKS = [((1, 10), (4, 1)), ((2, 10), (4, 2)), ((3, 10), (4, 3))]
PORTS = {1: {1, 10}, 2: {1, 2, 10}, 3: {1, 10}, 4: {1, 2, 3}}


def tcp_frame(src_mac: str, dst_mac: str, src: str, dst: str, sport: int, dport: int,
              proto: int = 6) -> bytes:
    """An Ethernet/IPv4/TCP (or UDP) frame with the given addresses and ports."""
    l4 = struct.pack("!HHIIBBHHH", sport, dport, 0, 0, 0x50, 0x02, 1024, 0, 0)
    if proto == 17:
        l4 = struct.pack("!HHHH", sport, dport, 8, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, proto, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    eth = mac_to_bytes(dst_mac) + mac_to_bytes(src_mac) + b"\x08\x00"
    return eth + ip + l4


def arp_request(host: str, target: str) -> bytes:
    """An ARP request from a Figure 2 host for `target`."""
    ip, mac, _, _ = HOSTS[host]
    return build_arp(ARP_REQUEST, mac, ip, BROADCAST, target)


def figure2_core(config: ControllerConfig | None = None, now: float = 0.0) -> Core:
    """A core that has seen Figure 2's switches, links and hosts, and svc1/svc2 registered."""
    cfg = config or ControllerConfig(services=(SVC1, SVC2),
                                     selection=SelectionConfig(spread=0.3, sharpness=4.0,
                                                               hysteresis=0.15))
    core = Core(cfg)
    for dpid, ports in PORTS.items():
        core.switch_connected(dpid)
        core.switch_ports(dpid, ports, now)
    see_links(core, now)
    for name, (_ip, _mac, dpid, port) in HOSTS.items():
        core.packet_in(dpid, port, arp_request(name, "10.0.0.254"), now)
    for dsid, dbid in (("10.0.100.1", "10.0.0.21"), ("10.0.100.1", "10.0.0.31"),
                       ("10.0.100.2", "10.0.0.22"), ("10.0.100.2", "10.0.0.32")):
        core.register(dsid, dbid, "dma", True, now)
    return core


def ports_settled(core: Core) -> None:
    """The switches' ports have had their first round of link discovery (a network up for a
    while: controller/network/settling.py); nothing was held meanwhile."""
    assert not core.network.settling.sightings
    core.network.settling.settled(float("inf"))


def see_links(core: Core, now: float) -> None:
    """Feed the core the LLDP frames that prove Figure 2's links, both directions."""
    for a, b in LINKS:
        core.packet_in(b[0], b[1], build_lldp(a[0], a[1], "02:00:00:00:00:01"), now)
        core.packet_in(a[0], a[1], build_lldp(b[0], b[1], "02:00:00:00:00:01"), now)


def report(core: Core, dbid: str, now: float, sessions: int = 0, capacity: int = 10,
           delay: float | None = None, queue: int = 0) -> None:
    """Send an idle-ish metric report for an instance."""
    core.report(dbid, Metrics(cpu=0.0, sessions=sessions, queue=queue, capacity=capacity,
                              processing_delay_ms=delay), now)


def flow_mods(intents: list[Intent]) -> list[FlowMod]:
    """The FlowMods among intents."""
    return [i for i in intents if isinstance(i, FlowMod)]


def packet_outs(intents: list[Intent]) -> list[PacketOut]:
    """The PacketOuts among intents."""
    return [i for i in intents if isinstance(i, PacketOut)]


# A Figure 2 core for failure and drain tests: short staleness and probe timeouts.
FAILURES_CFG = ControllerConfig(services=(SVC1, SVC2), stale_after_s=3.0, probe_timeout_s=2.0,
                       link_capacity_mbps=10.0, congestion_ms=10.0,
                       selection=SelectionConfig(spread=0.3, sharpness=4.0, hysteresis=0.15))


def all_fresh(core: Core, now: float) -> None:
    """A fresh idle report from every Figure 2 instance."""
    for dbid in ("10.0.0.21", "10.0.0.22", "10.0.0.31", "10.0.0.32"):
        report(core, dbid, now)


def bind_flow(core: Core, sport: int, now: float) -> str:
    """A new TCP flow from c1 to svc1: the D-BID it was bound to."""
    ip, mac, dpid, port = HOSTS["c1"]
    fwd = flow_mods(core.packet_in(dpid, port, tcp_frame(mac, VIRTUAL_MAC, ip, "10.0.100.1",
                                                         sport, 8000), now))[0]
    return str(fwd.actions[1].value)

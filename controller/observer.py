"""What a member learns from a switch it does not master: links and hosts, nothing else.

Every member asks each switch for the packet-ins of the slave role too (`apps/cluster.py`
sends OFPT_SET_ASYNC), so each one hears the LLDP frames the masters send and the hosts that
speak at every switch: one view of the network in every member. A packet-in from a switch this
member does not master goes to `observe` (but passive health's reset copies, which every member
counts: apps/dyncast_app.py), never to `Core.packet_in`: it moves a link or a host,
feeds the liveness answers, and that is all. No decision is taken for it, no binding made, no
flow entry asked for it and no packet sent back: its master does that. The routes the new view
implies are synced (the shell sends them only to the switches this member masters), and the
services it may change (every one for a new link, an instance's for its location) are left
dirty: their decisions are recomputed at the next flush, as after a report.

Most of what a member observes is new flows of the switches others master: a client's first
packet to a D-SID from where the client was already seen. `nothing_new` tells those from a
few slices of the frame and dictionary look-ups: the shell drops them in the framework's
parser, before any event is made (apps/cluster.py), and `observe` before parsing; anything else
is parsed and learned from as before.

Boundary: pure, above the core facade (it reaches into the core's features, as `views` does):
the core, a frame, `now` in; intents out. The cluster's other rules are in `controller.cluster`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from controller.instances.liveness import LIVENESS_PORT
from controller.intents import Intent
from controller.network.packet import (
    ETH_TYPE_ARP,
    ETH_TYPE_IP,
    ETH_TYPE_LLDP,
    IPPROTO_TCP,
    parse,
)
from controller.network.topology import HostLoc

if TYPE_CHECKING:
    from controller.core import Core


def observe(core: Core, dpid: int, in_port: int, data: bytes, now: float) -> list[Intent]:
    """Learn what a packet-in from a switch another member masters says about the network."""
    core.counters["packet_in_observed"] += 1
    if nothing_new(core, dpid, in_port, data):
        return []
    pkt = parse(data)
    if pkt is None:
        return []
    if pkt.eth_type == ETH_TYPE_LLDP:
        # the send time is the sending member's clock: not ours to measure a delay with
        if not core.network.lldp_in(dpid, in_port, pkt, now, measure=False):
            return []
        core.intake.dirty.update(core.catalogue.services)  # paths changed: every service
        return core.forwarding.sync_routes()
    if pkt.eth_type == ETH_TYPE_ARP and pkt.arp_spa is not None and pkt.arp_sha is not None:
        intents = core.locator.learn(pkt.arp_spa, pkt.arp_sha, dpid, in_port, now, False,
                                     core.forwarding.arp_sure(pkt, now))
        core.liveness.arp_answer(pkt, now)
        return intents
    if pkt.eth_type == ETH_TYPE_IP and pkt.ip_src is not None:
        intents = core.locator.learn(pkt.ip_src, pkt.eth_src, dpid, in_port, now, False)
        if core.liveness.is_probe_answer(pkt):
            core.liveness.tcp_answer(pkt, now)
        return intents
    return []


_IPV4 = ETH_TYPE_IP.to_bytes(2, "big")
_PROBE_PORT = LIVENESS_PORT.to_bytes(2, "big")


def _ntoa(data: bytes, at: int) -> str:
    """Dotted-quad text of the IPv4 address at `data[at:at + 4]`."""
    return f"{data[at]}.{data[at + 1]}.{data[at + 2]}.{data[at + 3]}"


def nothing_new(core: Core, dpid: int, in_port: int, data: bytes) -> bool:
    """True for an IPv4 packet to a D-SID (no probe answer) from a sender that is no
    registered instance and was last seen here, with this MAC: `observe` would learn nothing
    from it (`_host` returns nothing for a known place; it is no ARP, LLDP or probe answer)."""
    if len(data) < 34 or data[12:14] != _IPV4:
        return False
    if _ntoa(data, 30) not in core.catalogue.by_dsid:
        return False
    if data[23] == IPPROTO_TCP:  # a probe answer is a TCP packet to our probes' port
        l4 = 14 + (data[14] & 0x0F) * 4
        if data[l4 + 2:l4 + 4] == _PROBE_PORT:
            return False
    src = _ntoa(data, 26)
    topology = core.topology
    return (topology.hosts.get(src) == HostLoc(src, data[6:12].hex(":"), dpid, in_port)
            and not topology.locked(src))

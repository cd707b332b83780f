"""What a member learns from a switch it does not master: links and hosts, nothing else.

Every member asks each switch for the packet-ins of the slave role too (`apps/cluster.py`
sends OFPT_SET_ASYNC), so each one hears the LLDP frames the masters send and the hosts that
speak at every switch: one view of the network in every member. A packet-in from a switch this
member does not master goes to `observe`, never to `Core.packet_in`: it moves a link or a host,
feeds the liveness answers, and that is all. No decision is taken for it, no binding made, no
flow entry asked for it and no packet sent back: its master does that. The routes the new view
implies are synced (the shell sends them only to the switches this member masters), and the
services it may change (every one for a new link, an instance's for its location) are left
dirty: their decisions are recomputed at the next flush, as after a report.

Boundary: pure, above the core facade (it reaches into the core's features, as `views` does):
the core, a frame, `now` in; intents out. The cluster's other rules are in `controller.cluster`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from controller.intents import Intent
from controller.network.packet import ETH_TYPE_ARP, ETH_TYPE_IP, ETH_TYPE_LLDP, parse

if TYPE_CHECKING:
    from controller.core import Core


def observe(core: Core, dpid: int, in_port: int, data: bytes, now: float) -> list[Intent]:
    """Learn what a packet-in from a switch another member masters says about the network."""
    core.counters["packet_in_observed"] += 1
    pkt = parse(data)
    if pkt is None:
        return []
    if pkt.eth_type == ETH_TYPE_LLDP:
        # the send time is the sending member's clock: not ours to measure a delay with
        if not core.network.lldp_in(dpid, in_port, pkt._replace(lldp_sent_at=None), now):
            return []
        core.intake.dirty.update(core.catalogue.services)  # paths changed: every service
        return core.forwarding.sync_routes()
    if pkt.eth_type == ETH_TYPE_ARP and pkt.arp_spa is not None and pkt.arp_sha is not None:
        intents = _host(core, pkt.arp_spa, pkt.arp_sha, dpid, in_port, now)
        core.liveness.arp_answer(pkt, now)
        return intents
    if pkt.eth_type == ETH_TYPE_IP and pkt.ip_src is not None:
        intents = _host(core, pkt.ip_src, pkt.eth_src, dpid, in_port, now)
        if core.liveness.is_probe_answer(pkt):
            core.liveness.tcp_answer(pkt, now)
        return intents
    return []


def _host(core: Core, ip: str, mac: str, dpid: int, port: int, now: float) -> list[Intent]:
    """Learn where a sender lives (not a D-SID: it lives nowhere in particular): the routes to
    it; an instance's service is left dirty (as `Core.packet_in` recomputes it)."""
    if ip == "0.0.0.0" or ip in core.catalogue.by_dsid:
        return []
    if not core.topology.learn_host(ip, mac, dpid, port):
        return []
    core.liveness.seen(ip, dpid, port, now)
    inst = core.catalogue.instances.get(ip)
    if inst is not None:
        core.intake.dirty.add(inst.service)
    return core.forwarding.sync_routes([ip])

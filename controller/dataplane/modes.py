"""Dataplane modes: one object per way of keeping affinity (`reactive`, `learn`, `bucket`,
`conntrack`).

Boundary: everything that differs between the modes is answered here, through one interface,
so no other module compares a service's `dataplane` string:
- `reactive`: the first packet of each new flow goes to the controller, which binds it to an
  instance and installs the binding's two entries (`dataplane/reactive.py`);
- `learn`: the switch decides from a bucket map and learns a per-flow entry itself;
- `bucket`: the switch decides from the bucket map alone; a moving bucket pins its flows;
- `conntrack`: the switch decides from the bucket map and its connection tracker keeps each
  connection's instance (`dataplane/conntrack.py`).
Overlay (label routes instead of address translation) combines with any mode.
"""

from __future__ import annotations

import dataclasses

from controller.intents import (
    PORT_CONTROLLER,
    PORT_IN,
    PRIO_ARP,
    PRIO_SERVICE,
    TABLE_CLASSIFY,
    VIRTUAL_MAC,
    CookieKind,
    FlowMod,
    Move,
    Output,
    SetField,
    cookie,
    match,
)
from controller.model import Service
from controller.network.packet import (
    ARP_REPLY,
    ARP_REQUEST,
    ETH_TYPE_ARP,
    ETH_TYPE_IP,
    IPPROTO_TCP,
)

PRIO_SERVICE_SYN = PRIO_SERVICE + 1  # reactive: a TCP service's SYNs (see `syn_punt`)
TCP_SYN_ONLY = (0x002, 0x012)  # tcp_flags: SYN set, ACK clear


def service_ident(svc: Service) -> int:
    """The service's part of cookie identifiers: its D-SID as a 32-bit number."""
    a, b, c, d = (int(x) for x in svc.dsid.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def service_punt(dpid: int, svc: Service) -> FlowMod:
    """The entry that sends the first packet of each new flow to `svc`'s D-SID to us."""
    fields: dict[str, int | str] = {"eth_type": ETH_TYPE_IP, "ipv4_dst": svc.dsid}
    if svc.ip_proto is not None:
        fields["ip_proto"] = svc.ip_proto
    if svc.port is not None:
        fields[f"{svc.protocol}_dst"] = svc.port
    return FlowMod(dpid, TABLE_CLASSIFY, PRIO_SERVICE, match(**fields), (Output(PORT_CONTROLLER),),
                   cookie=cookie(CookieKind.SERVICE, service_ident(svc)))


def syn_punt(dpid: int, svc: Service) -> list[FlowMod]:
    """A TCP service's SYNs to us, one priority above `service_punt` (none for other services).

    It punts nothing `service_punt` would not; it makes Open vSwitch key the datapath flow it
    caches for a punted SYN on the TCP flags. That cached flow is wide on the client port and
    its action, "to the controller", is not re-translated per packet: without the flags in it,
    the connection's ACK and first request match it too and reach us as well, until OVS's
    revalidators replace it, milliseconds after the binding's entries are in (1.0-1.6 extra
    packet-ins per new connection on Figure 2; none with this entry). Same cookie as the
    service's punt, so deleting that cookie deletes both.
    """
    if svc.ip_proto != IPPROTO_TCP:
        return []
    base = service_punt(dpid, svc)
    return [FlowMod(dpid, TABLE_CLASSIFY, PRIO_SERVICE_SYN,
                    match(**dict(base.match), tcp_flags=TCP_SYN_ONLY), base.actions,
                    cookie=base.cookie)]


def dsid_arp(dpid: int, svc: Service) -> FlowMod:
    """The switch answers ARP requests for the D-SID itself, with the virtual MAC (the reply
    built from the request and sent back where it came from). A client keeps its neighbour
    entry for the D-SID while the controller is away: a client that only receives data never
    confirms it, and would otherwise lose it during a controller outage of some 20 s and stop
    sending (docs/reconciliation.md)."""
    return FlowMod(
        dpid, TABLE_CLASSIFY, PRIO_ARP + 1,
        match(eth_type=ETH_TYPE_ARP, arp_op=ARP_REQUEST, arp_tpa=svc.dsid),
        (Move("eth_src", "eth_dst"), SetField("eth_src", VIRTUAL_MAC),
         SetField("arp_op", ARP_REPLY), Move("arp_sha", "arp_tha"),
         SetField("arp_sha", VIRTUAL_MAC), Move("arp_spa", "arp_tpa"),
         SetField("arp_spa", svc.dsid), Output(PORT_IN)),
        cookie=cookie(CookieKind.DSID_ARP, service_ident(svc)))


class Mode:
    """What a dataplane mode means for the controller; the defaults are the switch-driven
    modes' (`learn`, `bucket`)."""

    name = ""
    places_flows = False  # the controller places every new flow itself (and so knows them)
    switch_decides = True  # the switches hold the decision as a bucket map
    learns = False  # flows learn their own entries in the affinity table
    pins_moves = False  # a moving bucket pins its flows to the old instance for a while
    tracks = False  # the switch's connection tracker holds each flow's instance (conntrack)

    def punts(self, dpid: int, svc: Service) -> list[FlowMod]:
        """Entries installed with the fixed pipeline (at connect and when the service is put).
        The switch-driven modes install none, but delete a `reactive` SYN punt the switch may
        still hold (the service was reactive): it would shadow their D-SID entry for SYNs."""
        return [dsid_arp(dpid, svc), *(dataclasses.replace(fm, actions=(), command="delete_strict")
                                       for fm in syn_punt(dpid, svc))]

    def programmed(self, svc: Service) -> bool:
        """True when the programmer keeps entries for this service in the switches."""
        return True


class Reactive(Mode):
    """The controller binds each new flow on its first packet."""

    name = "reactive"
    places_flows = True
    switch_decides = False

    def punts(self, dpid: int, svc: Service) -> list[FlowMod]:
        """The D-SID entries that send a new flow's first packet to the controller."""
        return [dsid_arp(dpid, svc), service_punt(dpid, svc), *syn_punt(dpid, svc)]

    def programmed(self, svc: Service) -> bool:
        """Only an overlay's label routes and failover entries are kept by the programmer."""
        return svc.overlay or svc.failover


class Learn(Mode):
    """The switch learns each new flow's entries from the bucket map (OVS `learn`)."""

    name = "learn"
    learns = True


class Bucket(Mode):
    """The switch keeps no per-flow state except pins while a bucket moves."""

    name = "bucket"
    pins_moves = True


class Conntrack(Mode):
    """The switch's connection tracker keeps each connection's instance (its translation and
    ct_mark); a decision change moves no established connection, so nothing is pinned."""

    name = "conntrack"
    tracks = True


MODES: dict[str, Mode] = {m.name: m for m in (Reactive(), Learn(), Bucket(), Conntrack())}


def mode_of(svc: Service) -> Mode:
    """The mode object of a service's dataplane (validated to be one of MODES)."""
    return MODES[svc.dataplane]

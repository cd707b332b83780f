"""Dataplane modes: one object per way of keeping affinity (`reactive`, `learn`, `bucket`).

Boundary: everything that differs between the modes is answered here, through one interface,
so no other module compares a service's `dataplane` string:
- `reactive`: the first packet of each new flow goes to the controller, which binds it to an
  instance and installs the binding's two entries (`dataplane/reactive.py`);
- `learn`: the switch decides from a bucket map and learns a per-flow entry itself;
- `bucket`: the switch decides from the bucket map alone; a moving bucket pins its flows.
Overlay (label routes instead of address translation) combines with any mode.
"""

from __future__ import annotations

from controller.intents import (
    PORT_CONTROLLER,
    PRIO_SERVICE,
    TABLE_CLASSIFY,
    CookieKind,
    FlowMod,
    Output,
    cookie,
    match,
)
from controller.model import Service
from controller.network.packet import ETH_TYPE_IP


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


class Mode:
    """What a dataplane mode means for the controller; the defaults are the switch-driven
    modes' (`learn`, `bucket`)."""

    name = ""
    places_flows = False  # the controller places every new flow itself (and so knows them)
    switch_decides = True  # the switches hold the decision as a bucket map
    learns = False  # flows learn their own entries in the affinity table
    pins_moves = False  # a moving bucket pins its flows to the old instance for a while

    def punts(self, dpid: int, svc: Service) -> list[FlowMod]:
        """Entries installed with the fixed pipeline (at connect and when the service is put)."""
        return []

    def programmed(self, svc: Service) -> bool:
        """True when the programmer keeps entries for this service in the switches."""
        return True


class Reactive(Mode):
    """The controller binds each new flow on its first packet."""

    name = "reactive"
    places_flows = True
    switch_decides = False

    def punts(self, dpid: int, svc: Service) -> list[FlowMod]:
        """The D-SID entry that sends a new flow's first packet to the controller."""
        return [service_punt(dpid, svc)]

    def programmed(self, svc: Service) -> bool:
        """Only an overlay's label routes are kept by the programmer."""
        return svc.overlay


class Learn(Mode):
    """The switch learns each new flow's entries from the bucket map (OVS `learn`)."""

    name = "learn"
    learns = True


class Bucket(Mode):
    """The switch keeps no per-flow state except pins while a bucket moves."""

    name = "bucket"
    pins_moves = True


MODES: dict[str, Mode] = {m.name: m for m in (Reactive(), Learn(), Bucket())}


def mode_of(svc: Service) -> Mode:
    """The mode object of a service's dataplane (validated to be one of MODES)."""
    return MODES[svc.dataplane]

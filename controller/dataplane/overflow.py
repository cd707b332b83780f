"""The per-ingress cap on affinity bindings, and the stateless service of flows past it.

Boundary: pure. `reactive` mode binds every new flow at its ingress; an ingress holding
`[limits] affinity_per_ingress` bindings binds no more. Its new flows are still served, never
refused: the ingress gets "overflow" entries in table 0, one priority above the services' punt
entries (below the bindings), that send each service's new flows through the decision without
the controller and without state:
- one entry per slot of the flow key (the bucket mode's hash: masked bits of the client port
  for a 5-tuple key, of the client address otherwise; `svc.buckets` slots dealt by the
  decision's shares; a slot keeps its instance while that one serves) rewriting D-SID -> D-BID;
- one entry per located instance of the service rewriting its replies D-BID -> D-SID (matched
  by source address and service port, as the bucket mode's reply entries are).
The packet that found the ingress full is sent on as its slot says. Bound flows keep their
entries (priority 2000). Once the ingress holds fewer than `LOW_WATER` of the cap, the slot
entries go and new flows are bound again (hysteresis: not on and off at every flow); an open
TCP connection served statelessly is bound to its slot's instance on its next packet, and the
reply entries stay until the service's next recompute.
Caveats (docs/dataplanes.md): a stateless flow follows its slot, so it moves when its instance
stops taking new flows (draining, ejected too); share changes do not rebalance the slots; while
overflow is on, every packet from an instance's service port at that ingress has its source
rewritten to the D-SID. Overlay services are not capped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from controller.dataplane.buckets import quotas
from controller.dataplane.modes import mode_of, service_ident
from controller.dataplane.reconciler import Reconciler
from controller.dataplane.rules import ipv4_int, service_fields
from controller.instances.catalogue import Catalogue
from controller.instances.liveness import LIVENESS_PORT
from controller.intents import (
    PRIO_SERVICE,
    TABLE_CLASSIFY,
    TABLE_FORWARD,
    VIRTUAL_MAC,
    CookieKind,
    FlowMod,
    Intent,
    MatchValue,
    Output,
    PacketOut,
    SetField,
    cookie,
    match,
)
from controller.limits import Limits
from controller.model import Service
from controller.network.packet import ETH_TYPE_IP, IPPROTO_TCP, TCP_SYN, Packet
from controller.network.topology import Topology
from controller.selection.decisions import Decisions

PRIO_OVERFLOW = PRIO_SERVICE + 2  # above the punt (1000) and SYN punt (1001), below bindings
# (PRIO_OVERFLOW + 1: liveness probe answers, let through unrewritten)
LOW_WATER = 0.9  # overflow ends below this fraction of the cap
SERVING = ("active", "unknown")  # states whose instances keep their slots
DEFAULT_CAP = Limits().affinity_per_ingress  # [limits] affinity_per_ingress


def capped(svc: Service) -> bool:
    """True for the services whose flows the cap applies to (reactive, address translation)."""
    return mode_of(svc).places_flows and not svc.overlay


def slot_fields(svc: Service, slot: int) -> dict[str, MatchValue]:
    """The service's packets that fall into `slot` (see `slot_of`)."""
    fields = service_fields(svc)
    size = svc.buckets - 1
    if svc.affinity.key == "5-tuple" and svc.protocol in ("tcp", "udp"):
        fields[f"{svc.protocol}_src"] = (slot << 1, size << 1)
    else:
        fields["ipv4_src"] = (slot, size)
    return fields


def slot_of(svc: Service, pkt: Packet) -> int:
    """The slot a packet of the service falls into: bits 1.. of the client port for a 5-tuple
    key (Linux picks even ports), else the low bits of the client address."""
    size = svc.buckets - 1
    if (svc.affinity.key == "5-tuple" and svc.protocol in ("tcp", "udp")
            and pkt.l4_src is not None):
        return (pkt.l4_src >> 1) & size
    return ipv4_int(pkt.ip_src or "0.0.0.0") & size


class Overflow:
    """Which ingresses are past the cap, and their overflow entries."""

    def __init__(self, cap: Callable[[], int], topology: Topology, decisions: Decisions,
                 catalogue: Catalogue, counters: Counter[str]) -> None:
        self.cap = cap  # read at each use: [limits] is reloadable
        self.topology = topology
        self.decisions = decisions
        self.catalogue = catalogue
        self.counters = counters
        self.on: set[int] = set()
        self.reconciler = Reconciler()  # scopes: "slots:<service>", "replies:<service>"
        self._maps: dict[tuple[int, str], list[str | None]] = {}  # kept after overflow ends

    def full(self, dpid: int, held: int) -> bool:
        """True when a new flow at `dpid` (holding `held` bindings) is served statelessly."""
        return dpid in self.on or held >= self.cap()

    def serve(self, svc: Service, dpid: int, in_port: int, pkt: Packet, data: bytes,
              now: float) -> list[Intent]:
        """A new flow at a full ingress: it is not bound; the ingress's overflow entries take
        its next packets and this one goes where its slot says."""
        self.decisions.demand_at(self.decisions.decider(dpid), svc, self.catalogue, now)
        if dpid not in self.on:
            self.on.add(dpid)
            self.counters["overflow_on"] += 1
        out = [i for s in self._services() for i in self._sync(dpid, s)]
        slots = self._slots(dpid, svc)
        dbid = None if slots is None else slots[slot_of(svc, pkt)]
        host = None if dbid is None else self.topology.hosts.get(dbid)
        port = None if dbid is None else self.topology.out_port(dpid, dbid)
        if dbid is None or host is None or port is None:
            self.counters["dropped_no_instance"] += 1
            return out
        self.counters["stateless_flows"] += 1
        actions = (SetField("eth_dst", host.mac), SetField("ipv4_dst", dbid), Output(port))
        return [*out, PacketOut(dpid, data, actions, in_port)]

    def relax(self, dpid: int, held: int) -> list[Intent]:
        """The ingress holds `held` bindings: below the low water mark, overflow ends. The
        slot entries go; the reply entries stay until the service's next recompute, so the
        live stateless connections are bound (`resumed`) before their replies lose them."""
        if dpid not in self.on or held >= self.cap() * LOW_WATER:
            return []
        self.on.discard(dpid)
        self.counters["overflow_off"] += 1
        return [i for scope in self.reconciler.scopes(dpid) if scope.startswith("slots:")
                for i in self.reconciler.apply(dpid, scope, [])]

    def resumed(self, dpid: int, svc: Service, pkt: Packet) -> str | None:
        """The instance a TCP packet of a connection already open (no SYN) was sent to while
        overflow was on at `dpid` (it has ended): it is bound there. None otherwise."""
        slots = self._maps.get((dpid, svc.name))
        if (dpid in self.on or slots is None or pkt.ip_proto != IPPROTO_TCP
                or (pkt.tcp_flags or 0) & TCP_SYN):
            return None
        dbid = slots[slot_of(svc, pkt)]
        return dbid if dbid in self.topology.hosts else None

    def service(self, svc: Service) -> list[Intent]:
        """A service's decision (or settings) changed: its entries at every full ingress;
        reply entries left where overflow ended go."""
        out: list[Intent] = []
        touched = self.on | {d for d, name in self._maps if name == svc.name}  # entries only
        for dpid in sorted(touched & set(self.topology.ports)):  # where overflow has been on
            if dpid in self.on:
                out += self._sync(dpid, svc)
            else:
                out += self.reconciler.apply(dpid, f"replies:{svc.name}", [])
        return out

    def removed(self, svc: Service) -> list[Intent]:
        """A service is gone (or changes D-SID): its entries go."""
        out: list[Intent] = []
        for dpid in sorted(self.topology.ports):
            for scope in (f"slots:{svc.name}", f"replies:{svc.name}"):
                out += self.reconciler.apply(dpid, scope, [])
            self._maps.pop((dpid, svc.name), None)
        return out

    def at(self, dpid: int) -> list[FlowMod]:
        """The overflow entries the switch should hold (what the audit keeps and restores)."""
        if dpid not in self.on:
            return [fm for _, fm in self.reconciler.held(dpid).values()]
        return [fm for svc in self._services() for part in self._entries(dpid, svc)
                for fm in part]

    def forget_switch(self, dpid: int) -> None:
        """A switch (re)connected: what it holds is unknown."""
        self.reconciler.forget_switch(dpid)

    def _services(self) -> list[Service]:
        return [s for _, s in sorted(self.catalogue.services.items()) if capped(s)]

    def _sync(self, dpid: int, svc: Service) -> list[Intent]:
        slots, replies = self._entries(dpid, svc)
        return (self.reconciler.apply(dpid, f"replies:{svc.name}", replies)
                + self.reconciler.apply(dpid, f"slots:{svc.name}", slots))

    def _slots(self, dpid: int, svc: Service) -> list[str | None] | None:
        """The slot -> instance map of the service at `dpid` (None without a decision). A
        stateless flow has nothing but its slot to keep its instance, and decisions move on
        every report, so a slot keeps its instance while that one takes new flows (`SERVING`,
        located, not ejected); only the others' slots are dealt anew, by the decision's shares."""
        decision = self.decisions.engine.decisions.get((self.decisions.decider(dpid), svc.name))
        if decision is None:
            return None
        ejected = self.decisions.ejected  # passive health's: no new flows, as if draining
        alive = {i.dbid for i in self.catalogue.of_service(svc.name)
                 if i.state in SERVING and i.dbid in self.topology.hosts
                 and i.dbid not in ejected}
        old = self._maps.get((dpid, svc.name), [])
        slots: list[str | None] = ([d if d in alive else None for d in old]
                                   if len(old) == svc.buckets else [None] * svc.buckets)
        free = [i for i, d in enumerate(slots) if d is None]
        want = quotas({d: v for d, v in decision.shares.items() if d in alive}, len(free))
        for i, dbid in zip(free, [d for d in sorted(want) for _ in range(want[d])], strict=False):
            slots[i] = dbid
        self._maps[(dpid, svc.name)] = slots
        return slots

    def _entries(self, dpid: int, svc: Service) -> tuple[list[FlowMod], list[FlowMod]]:
        """The service's slot entries and reply entries at `dpid` (none unless it is capped
        and decided there). The replies go in first: no reply may overtake its rewrite."""
        slots = self._slots(dpid, svc) if capped(svc) else None
        if slots is None:
            return [], []
        ident = service_ident(svc) << 16
        out = []
        for slot, dbid in enumerate(slots):
            host = None if dbid is None else self.topology.hosts.get(dbid)
            if dbid is None or host is None:
                continue
            out.append(FlowMod(dpid, TABLE_CLASSIFY, PRIO_OVERFLOW,
                               match(**slot_fields(svc, slot)),
                               (SetField("eth_dst", host.mac), SetField("ipv4_dst", dbid)),
                               goto=TABLE_FORWARD,
                               cookie=cookie(CookieKind.OVERFLOW, ident | slot)))
        return out, [fm for inst in self.catalogue.of_service(svc.name)
                     if inst.dbid in self.topology.hosts for fm in _replies(dpid, svc, inst.dbid)]


def _replies(dpid: int, svc: Service, dbid: str) -> list[FlowMod]:
    """An instance's reply entry at `dpid` (D-BID -> D-SID, matched by source address and
    service port), and above it one that lets the answers to the controller's liveness
    probes through unchanged (they must come from the D-BID). A probe goes from the D-SID's
    LIVENESS_PORT, so its answer is matched by that destination address too: a client whose
    own port is LIVENESS_PORT (Linux's ephemeral range holds it) keeps its rewrite."""
    fields: dict[str, MatchValue] = {"eth_type": ETH_TYPE_IP, "ipv4_src": dbid}
    if svc.ip_proto is not None:
        fields["ip_proto"] = svc.ip_proto
        if svc.port is not None and svc.protocol in ("tcp", "udp"):
            fields[f"{svc.protocol}_src"] = svc.port
    ck = cookie(CookieKind.OVERFLOW_REV, ipv4_int(dbid))
    probe: dict[str, MatchValue] = {"eth_type": ETH_TYPE_IP, "ipv4_src": dbid,
                                    "ipv4_dst": svc.dsid, "ip_proto": IPPROTO_TCP,
                                    "tcp_dst": LIVENESS_PORT}
    return [FlowMod(dpid, TABLE_CLASSIFY, PRIO_OVERFLOW + 1, match(**probe), (),
                    goto=TABLE_FORWARD, cookie=ck),
            FlowMod(dpid, TABLE_CLASSIFY, PRIO_OVERFLOW, match(**fields),
                    (SetField("eth_src", VIRTUAL_MAC), SetField("ipv4_src", svc.dsid)),
                    goto=TABLE_FORWARD, cookie=ck)]

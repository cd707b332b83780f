"""Instance affinity: flow keys, the binding table, and the entries that enforce a binding.

A service's affinity policy names its flow key: `5-tuple` (source, D-SID, protocol, ports),
`3-tuple` (source, D-SID, protocol) or `source` (client address only). A binding maps one flow
key to one instance; the switch enforces it with a forward entry (D-SID -> D-BID) and a reverse
entry (D-BID -> D-SID, for the replies) at the ingress.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from controller.intents import (
    PRIO_AFFINITY,
    TABLE_CLASSIFY,
    TABLE_FORWARD,
    VIRTUAL_MAC,
    CookieKind,
    FlowMod,
    Match,
    Output,
    PacketOut,
    SetField,
    cookie,
    flow_mod_of,
    match,
    packet_out,
)
from controller.model import Service
from controller.network.packet import (
    ETH_TYPE_IP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    TCP_ACK,
    Packet,
    build_tcp,
)
from controller.network.topology import HostLoc

_L4_FIELDS = {IPPROTO_TCP: ("tcp_src", "tcp_dst"), IPPROTO_UDP: ("udp_src", "udp_dst")}


class FlowKey(NamedTuple):
    """The fields that identify a flow for a service's affinity; unused fields are None. A
    named tuple (same fields, repr and hash as the frozen dataclass it was): one is made and
    looked up per packet-in to a D-SID."""

    service: str
    src: str
    dsid: str
    proto: int | None = None
    sport: int | None = None
    dport: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the key as JSON-ready values."""
        return {"src": self.src, "dsid": self.dsid, "proto": self.proto,
                "sport": self.sport, "dport": self.dport}


def flow_key(service: Service, pkt: Packet) -> FlowKey | None:
    """Extract the service's flow key from a packet to its D-SID; None if it is not one."""
    if pkt.ip_src is None or pkt.ip_dst != service.dsid:
        return None
    if service.ip_proto is not None and pkt.ip_proto != service.ip_proto:
        return None
    if service.port is not None and pkt.l4_dst != service.port:
        return None
    kind = service.affinity.key
    if kind == "source":
        return FlowKey(service.name, pkt.ip_src, service.dsid)
    if kind == "3-tuple" or pkt.l4_src is None:
        return FlowKey(service.name, pkt.ip_src, service.dsid, pkt.ip_proto)
    return FlowKey(service.name, pkt.ip_src, service.dsid, pkt.ip_proto, pkt.l4_src, pkt.l4_dst)


@dataclass(slots=True)
class Binding:
    """One affinity binding: flow key -> instance, installed at `ingress`."""

    ident: int
    key: FlowKey
    dbid: str
    ingress: int
    created_at: float
    moved_at: float = 0.0  # when its flow last moved to another instance (0: never)

    def to_dict(self) -> dict[str, Any]:
        """Return the binding as JSON-ready values (`moved_at` once it has moved)."""
        out = {"id": self.ident, "service": self.key.service, "flow": self.key.to_dict(),
               "dbid": self.dbid, "ingress": self.ingress, "created_at": self.created_at}
        if self.moved_at:
            out["moved_at"] = self.moved_at
        return out


class BindingTable:
    """Bindings by flow key, by identifier (the identifier is in the entries' cookies), by
    ingress switch (what the audit of one switch reads), by client address (what follows a
    client that moved) and by instance (what a dead or draining one holds): none of these
    walks every binding, of which there may be a hundred thousand an ingress."""

    def __init__(self, first_ident: int = 1) -> None:
        self._by_key: dict[FlowKey, Binding] = {}
        self._by_ident: dict[int, Binding] = {}
        self._at: dict[int, dict[int, Binding]] = {}  # ingress -> identifier -> binding
        self._by_src: dict[str, dict[int, Binding]] = {}  # client address -> ident -> binding
        self._of: dict[str, dict[int, Binding]] = {}  # instance -> identifier -> binding
        self._next = first_ident

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, key: FlowKey) -> Binding | None:
        """The binding for a flow key, if any."""
        return self._by_key.get(key)

    def by_ident(self, ident: int) -> Binding | None:
        """The binding with this identifier, if any."""
        return self._by_ident.get(ident)

    def add(self, key: FlowKey, dbid: str, ingress: int, now: float) -> Binding:
        """Create a binding with a fresh identifier (one per new flow: `restore`'s work less
        what a fresh one cannot need, since `_next` is above every identifier taken)."""
        ident = self._next
        binding = Binding(ident, key, dbid, ingress, now)
        self._next = ident + 1
        self._by_key[key] = binding
        self._by_ident[ident] = binding
        there = self._at.get(ingress)
        if there is None:
            there = self._at[ingress] = {}
        there[ident] = binding
        _index(self._by_src, key.src, binding)
        _index(self._of, dbid, binding)
        return binding

    def restore(self, binding: Binding) -> None:
        """Insert a binding as it was (e.g. loaded from the store)."""
        old = self._by_ident.get(binding.ident)
        if old is not None:
            self._unplace(old)
            _unindex(self._by_src, old.key.src, old)
            _unindex(self._of, old.dbid, old)
        self._by_key[binding.key] = binding
        self._by_ident[binding.ident] = binding
        self._at.setdefault(binding.ingress, {})[binding.ident] = binding
        _index(self._by_src, binding.key.src, binding)
        _index(self._of, binding.dbid, binding)
        self._next = max(self._next, binding.ident + 1)

    def remove(self, ident: int) -> Binding | None:
        """Remove and return the binding with this identifier."""
        binding = self._by_ident.pop(ident, None)
        if binding is not None:
            self._by_key.pop(binding.key, None)
            self._unplace(binding)
            _unindex(self._by_src, binding.key.src, binding)
            _unindex(self._of, binding.dbid, binding)
        return binding

    def rebind(self, binding: Binding, dbid: str, at: float) -> None:
        """The binding's flow goes to instance `dbid` from `at` on (its old one died)."""
        _unindex(self._of, binding.dbid, binding)
        binding.dbid, binding.moved_at = dbid, at
        if self._by_ident.get(binding.ident) is binding:
            _index(self._of, dbid, binding)

    def move(self, binding: Binding, ingress: int) -> None:
        """The binding is installed at `ingress` from now on (its client moved)."""
        self._unplace(binding)
        binding.ingress = ingress
        if self._by_ident.get(binding.ident) is binding:
            self._at.setdefault(ingress, {})[binding.ident] = binding

    def _unplace(self, binding: Binding) -> None:
        """Drop the binding from its ingress's index."""
        there = self._at.get(binding.ingress)
        if there is not None and there.get(binding.ident) is binding:
            del there[binding.ident]
            if not there:
                del self._at[binding.ingress]

    @property
    def next_ident(self) -> int:
        """The identifier the next new binding gets."""
        return self._next

    def number_from(self, first: int) -> None:
        """New bindings get identifiers from `first` on (or above any already taken)."""
        self._next = max(self._next, first)

    def all(self) -> list[Binding]:
        """Every binding, oldest first."""
        return sorted(self._by_ident.values(), key=lambda b: b.ident)

    def unordered(self) -> Iterable[Binding]:
        """Every binding, in no particular order (for counting: no sort)."""
        return self._by_ident.values()

    def count_at(self, ingress: int) -> int:
        """How many bindings are installed at switch `ingress`."""
        return len(self._at.get(ingress, ()))

    def at(self, ingress: int) -> list[Binding]:
        """The bindings installed at switch `ingress`, oldest first (from the index: the work
        is that switch's bindings, whatever the number elsewhere)."""
        return _oldest_first(self._at.get(ingress))

    def of_client(self, src: str) -> list[Binding]:
        """The bindings of flows from client address `src`, oldest first."""
        return _oldest_first(self._by_src.get(src))

    def of_instance(self, dbid: str) -> list[Binding]:
        """The bindings holding instance `dbid`, oldest first."""
        return _oldest_first(self._of.get(dbid))

    def count_of(self, dbid: str) -> int:
        """How many bindings hold instance `dbid`."""
        return len(self._of.get(dbid, ()))


def _index(index: dict[str, dict[int, Binding]], name: str, binding: Binding) -> None:
    """File `binding` under `name` in one of the table's indexes."""
    there = index.get(name)
    if there is None:
        there = index[name] = {}
    there[binding.ident] = binding


def _unindex(index: dict[str, dict[int, Binding]], name: str, binding: Binding) -> None:
    """Take `binding` out from under `name` (if it is filed there)."""
    there = index.get(name)
    if there is not None and there.get(binding.ident) is binding:
        del there[binding.ident]
        if not there:
            del index[name]


def _oldest_first(there: dict[int, Binding] | None) -> list[Binding]:
    """The bindings of one index entry, oldest (lowest identifier) first."""
    return [] if there is None else sorted(there.values(), key=lambda b: b.ident)


def _forward_match(key: FlowKey) -> dict[str, int | str]:
    """Match fields of the client -> D-SID direction."""
    fields: dict[str, int | str] = {"eth_type": ETH_TYPE_IP, "ipv4_src": key.src,
                                    "ipv4_dst": key.dsid}
    if key.proto is not None:
        fields["ip_proto"] = key.proto
        names = _L4_FIELDS.get(key.proto)
        if names and key.sport is not None and key.dport is not None:
            fields[names[0]], fields[names[1]] = key.sport, key.dport
    return fields


def _reverse_match(key: FlowKey, service: Service, dbid: str) -> dict[str, int | str]:
    """Match fields of the instance -> client direction (the replies)."""
    fields: dict[str, int | str] = {"eth_type": ETH_TYPE_IP, "ipv4_src": dbid,
                                    "ipv4_dst": key.src}
    proto = key.proto if key.proto is not None else service.ip_proto
    if proto is not None:
        fields["ip_proto"] = proto
        names = _L4_FIELDS.get(proto)
        if names and key.sport is not None and key.dport is not None:
            fields[names[0]], fields[names[1]] = key.dport, key.sport
        elif names and service.port is not None:
            fields[names[0]] = service.port
    return fields


def key_of_forward(service: Service, fields: dict[str, Any]) -> FlowKey | None:
    """The flow key a forward entry's match stands for (None if it is no such match)."""
    src, dsid, proto = fields.get("ipv4_src"), fields.get("ipv4_dst"), fields.get("ip_proto")
    if not isinstance(src, str) or dsid != service.dsid:
        return None
    names = _L4_FIELDS.get(proto) if isinstance(proto, int) else None
    sport, dport = (fields.get(names[0]), fields.get(names[1])) if names else (None, None)
    if not (isinstance(sport, int) and isinstance(dport, int)):
        sport = dport = None
    return FlowKey(service.name, src, dsid, proto if isinstance(proto, int) else None,
                   sport, dport)


PRIO_EXCEPTION = PRIO_AFFINITY + 2  # an exception's entries (above a group's SYN guard)


def binding_flows(binding: Binding, service: Service, dbid_mac: str) -> tuple[FlowMod, FlowMod]:
    """The forward and reverse entries that enforce a binding at its ingress.

    Both carry the service's timeouts except that the reverse entry has no idle timeout (a
    client may be the only one talking); the forward entry reports its removal, and the core
    then deletes the reverse entry and the binding. One pair is made per new flow: the
    matches of a TCP or UDP 5-tuple are written in `match`'s order directly, and the rewrites
    (the same for every binding to one instance) are made once (`_rewrites`).
    """
    key, aff, ident = binding.key, service.affinity, binding.ident & _IDENT_MASK
    proto, sport, dport = key.proto, key.sport, key.dport
    names = _L4_FIELDS.get(proto) if proto is not None else None
    if names is not None and proto is not None and sport is not None and dport is not None:
        dst_name, src_name = names[1], names[0]  # "tcp_dst" < "tcp_src": match()'s order
        fwd_match: Match = (("eth_type", ETH_TYPE_IP), ("ip_proto", proto),
                            ("ipv4_dst", key.dsid), ("ipv4_src", key.src),
                            (dst_name, dport), (src_name, sport))
        rev_match: Match = (("eth_type", ETH_TYPE_IP), ("ip_proto", proto),
                            ("ipv4_dst", key.src), ("ipv4_src", binding.dbid),
                            (dst_name, sport), (src_name, dport))
    else:
        fwd_match = match(**_forward_match(key))
        rev_match = match(**_reverse_match(key, service, binding.dbid))
    to_instance, from_service = _rewrites(dbid_mac, binding.dbid, service.dsid)
    # an exact key in a group-keyed service: an exception (dataplane/guards.py), above the
    # group's entries and their SYN guard
    prio = PRIO_AFFINITY if sport is None or aff.key == "5-tuple" else PRIO_EXCEPTION
    forward = flow_mod_of(binding.ingress, TABLE_CLASSIFY, prio, fwd_match, to_instance,
                          TABLE_FORWARD, aff.idle_timeout, aff.hard_timeout,
                          _FWD_COOKIE | ident, "add", True, 0, None)
    reverse = flow_mod_of(binding.ingress, TABLE_CLASSIFY, prio, rev_match, from_service,
                          TABLE_FORWARD, 0, aff.hard_timeout, _REV_COOKIE | ident, "add", False,
                          0, None)
    return forward, reverse


_IDENT_MASK = 0xFFFF_FFFF_FFFF
_FWD_COOKIE = cookie(CookieKind.AFFINITY_FWD)
_REV_COOKIE = cookie(CookieKind.AFFINITY_REV)


@lru_cache(maxsize=4096)
def _rewrites(dbid_mac: str, dbid: str, dsid: str) -> tuple[tuple[SetField, ...],
                                                          tuple[SetField, ...]]:
    """A binding's rewrites: towards the instance, and of its replies back to the D-SID."""
    return ((SetField("eth_dst", dbid_mac), SetField("ipv4_dst", dbid)),
            (SetField("eth_src", VIRTUAL_MAC), SetField("ipv4_src", dsid)))


@lru_cache(maxsize=4096)
def delivery(mac: str, dbid: str, port: int) -> tuple[SetField, SetField, Output]:
    """A bound flow's packet sent on by the controller: rewritten to its instance and out of
    `port` (the same actions for every packet to that instance at one ingress: made once)."""
    return SetField("eth_dst", mac), SetField("ipv4_dst", dbid), Output(port)


def moved_nudge(key: FlowKey, client: HostLoc | None) -> list[PacketOut]:
    """What tells the client of a TCP connection moved off a dead instance that it ended: two
    empty ACK segments from the D-SID's port to the client's, sent out of the client's own
    switch port, their sequence numbers 2**31 apart, so that one at least is outside the
    connection's receive window (at most 2**30). A TCP stack answers such a segment on an
    open connection with an ACK of its own numbers (RFC 9293 3.10.7.4); that ACK takes the
    moved flow's entries to the new instance, which holds no such connection and answers it
    with a reset whose sequence number is the one the client waits for (RFC 9293 3.10.7.1),
    back from the D-SID. (Not a SYN, whose challenge ACK would do the same: a client still
    connecting, its SYN about to be sent again to the new instance, would take it for a
    simultaneous open and be reset; an ACK it only answers with a reset of its own, which
    the new instance drops.) Without it a client that only waits to read (a long poll, a
    stream whose server went quiet) waited until its keepalive, or for good, and a failed
    instance that came back still sending reached it from its D-BID, which its stack
    refused. Nothing for a flow that is not one TCP connection (a group key, UDP) or a
    client not located."""
    if key.proto != IPPROTO_TCP or key.sport is None or key.dport is None or client is None:
        return []
    ports, out = (key.dport, key.sport), (Output(client.port),)
    return [packet_out(client.dpid, build_tcp(VIRTUAL_MAC, client.mac, key.dsid, key.src,
                                              ports, (TCP_ACK, seq, NUDGE_ACK)), out, None)
            for seq in NUDGE_SEQS]


NUDGE_SEQS = (0x1DC0_0000, 0x9DC0_0000)  # 2**31 apart
NUDGE_ACK = 0x0DC0_0001

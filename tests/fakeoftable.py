"""A fake OpenFlow 1.3 pipeline for the core's flow intents: where would this packet go?

Boundary: tests only; no framework, no I/O. `FakeOFTable` is one switch: flow-mods as OpenFlow
1.3 section 6.4 says (an add replaces the entry of the same priority and match), packets run as
OVS runs what apps/ofmsg.py encodes: apply-actions in order, `Resubmit` runs another table's
entry (its goto too) and comes back, a miss drops, `Learn` adds or replaces the entry it builds
from the packet as it is then, `Ct` hands the packet to the switches' shared connection tracker
(tests/fakeconntrack.py) and looks the tracked copy up in its table. `FakeNetwork` follows a
packet across links to the edge or the controller. Header values are integers (addresses too).
What OVS would refuse or leave undefined (a match without its prerequisites, a backward goto, a
set-field on a header the packet lacks, two top-priority entries matching one packet) raises
FakeTableError.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from controller.intents import (
    PORT_CONTROLLER,
    PORT_IN,
    Action,
    Ct,
    CtFlush,
    FlowMod,
    Group,
    GroupMod,
    Intent,
    Learn,
    MatchValue,
    Move,
    Output,
    PacketOut,
    PopMpls,
    PushMpls,
    Resubmit,
    SetField,
    match,
)
from controller.network.packet import build_arp, build_lldp, mac_to_bytes, parse
from tests.fakeconntrack import Conntrack

Fields = dict[str, int]
Masked = tuple[int, int]
PORT_TABLE = 0xFFFFFFF9  # OFPP_TABLE: a packet-out's packet goes through table 0
TABLE_ALL = 0xFF
EXACT = (1 << 64) - 1
MAX_DEPTH = 64  # resubmits and gotos per packet, like OVS's recursion limit
MAX_HOPS = 16  # switches a packet may cross before we call it a loop
ETH_IP, ETH_ARP, ETH_MPLS, ETH_LLDP = 0x0800, 0x0806, 0x8847, 0x88CC
PREREQS: dict[str, tuple[str, int]] = {
    **dict.fromkeys(("ip_proto", "ipv4_src", "ipv4_dst", "ip_dscp"), ("eth_type", ETH_IP)),
    **dict.fromkeys(("tcp_src", "tcp_dst", "tcp_flags"), ("ip_proto", 6)),
    **dict.fromkeys(("udp_src", "udp_dst"), ("ip_proto", 17)),
    **dict.fromkeys(("icmpv4_type", "icmpv4_code"), ("ip_proto", 1)),
    **dict.fromkeys(("arp_op", "arp_spa", "arp_tpa", "arp_sha", "arp_tha"), ("eth_type", ETH_ARP)),
    "mpls_label": ("eth_type", ETH_MPLS),
}
MACS = frozenset({"eth_src", "eth_dst", "arp_sha", "arp_tha"})
IPV4S = frozenset({"ipv4_src", "ipv4_dst", "arp_spa", "arp_tpa"})
PIPELINE_ONLY = ("in_port", "reg", "ct_")  # fields that stay in the switch when the packet leaves


class FakeTableError(Exception):
    """A flow-mod a switch would refuse, or a packet it could not run through its pipeline."""


def number(value: int | str) -> int:
    """A header value as an integer (MACs and dotted IPv4 addresses included)."""
    if isinstance(value, int):
        return value
    if value.count(":") == 5:
        return int(value.replace(":", ""), 16)
    if value.count(".") == 3:
        return int.from_bytes(socket.inet_aton(value), "big")
    raise FakeTableError(f"not a header value: {value!r}")


def shown(name: str, value: int) -> int | str:
    """A header value as the intents spell it (MACs and IPv4 addresses as text)."""
    if name in MACS:
        return value.to_bytes(6, "big").hex(":")
    if name in IPV4S:
        return socket.inet_ntoa(value.to_bytes(4, "big"))
    return value


def _masked(value: MatchValue) -> Masked:
    """A match value as (value, mask); an unmasked one has every bit set in its mask."""
    if isinstance(value, tuple):
        return value[0] & value[1], value[1]
    return number(value), EXACT


def _prereqs_met(pkt: Mapping[str, int], name: str) -> bool:
    """True when the packet carries the headers `name` belongs to (eth_type, ip_proto)."""
    while name in PREREQS:
        name, value = PREREQS[name]
        if pkt.get(name) != value:
            return False
    return True


def _value(pkt: Mapping[str, int], name: str) -> int | None:
    """The packet's `name`, None when it has no such header (registers start at 0)."""
    if name.startswith(("reg", "ct_")):
        return pkt.get(name, 0)
    return pkt.get(name) if _prereqs_met(pkt, name) else None


def _hits(want: Mapping[str, Masked], pkt: Mapping[str, int]) -> bool:
    """True when the packet matches every field of an entry under its mask."""
    for name, (value, mask) in want.items():
        have = _value(pkt, name)
        if have is None or have & mask != value:
            return False
    return True


def _headers(pkt: Mapping[str, int]) -> Fields:
    """The packet as it leaves the switch: no in_port, no registers."""
    return {k: v for k, v in pkt.items() if not k.startswith(PIPELINE_ONLY)}


@dataclass(frozen=True, slots=True)
class Hop:
    """A packet leaving switch `dpid` by `port`, or (a packet-in) arriving there by `port`."""

    dpid: int
    port: int
    fields: Fields
    cookie: int = 0  # a packet-in: the cookie of the entry that sent it (OpenFlow 1.3)

    def __getitem__(self, name: str) -> int | str:
        """A header as the intents spell it (`hop["ipv4_dst"] == "10.0.0.21"`)."""
        return shown(name, self.fields[name])

    def has(self, **expect: int | str) -> bool:
        """True when every given header has the given value."""
        return all(self.fields.get(k) == number(v) for k, v in expect.items())


@dataclass(slots=True)
class Result:
    """Where a packet went: out of which ports, rewritten how, and what reached the controller."""

    outputs: list[Hop] = field(default_factory=list)
    packet_ins: list[Hop] = field(default_factory=list)
    meters: list[int] = field(default_factory=list)  # the meters the packet passed, in order

    @property
    def to_controller(self) -> bool:
        """True when the packet (or a copy) was sent to the controller."""
        return bool(self.packet_ins)

    def merge(self, other: Result) -> Result:
        """Both results together."""
        return Result(self.outputs + other.outputs, self.packet_ins + other.packet_ins,
                      self.meters + other.meters)

    def is_output(self, port: int, dpid: int | None = None, **expect: int | str) -> bool:
        """True when a copy left by `port` (of switch `dpid`) with the given headers."""
        return any(h.port == port and dpid in (None, h.dpid) and h.has(**expect)
                   for h in self.outputs)

    def only(self) -> Hop:
        """The one output; AssertionError naming them when there is not exactly one."""
        if len(self.outputs) != 1:
            raise AssertionError(f"expected one output, got {self.outputs} "
                                 f"(packet-ins: {self.packet_ins})")
        return self.outputs[0]


@dataclass(slots=True)
class _Entry:
    """A flow entry: the flow-mod that made it, its match as masked integers, its times."""

    fm: FlowMod
    want: dict[str, Masked]
    added: float
    used: float
    packets: int = 0

    def timed_out(self, now: float) -> str | None:
        """`hard` or `idle` when that timeout has passed, else None."""
        if self.fm.hard_timeout and now - self.added >= self.fm.hard_timeout:
            return "hard"
        if self.fm.idle_timeout and now - self.used >= self.fm.idle_timeout:
            return "idle"
        return None


class FakeOFTable:
    """One switch's flow tables."""

    def __init__(self, dpid: int, conntrack: Conntrack | None = None) -> None:
        self.dpid = dpid
        self.conntrack = Conntrack() if conntrack is None else conntrack  # tests/fakeconntrack
        self.tables: dict[int, list[_Entry]] = {}
        self.removed: list[tuple[int, int, str]] = []  # (dpid, cookie, reason) to report
        self.groups: dict[int, GroupMod] = {}  # fast-failover groups by id
        self.down: set[int] = set()  # ports whose link is down: no output, not live
        self._cookie = 0  # the entry whose actions run (a packet-in carries its cookie)

    def apply_group(self, gm: GroupMod) -> None:
        """Add or modify a group (OVS's ADD_OR_MOD), or delete it with the entries naming it
        (OpenFlow 1.3 section 6.5)."""
        if gm.command == "add_or_mod":
            self.groups[gm.group_id] = gm
            return
        self.groups.pop(gm.group_id, None)
        for tid, table in self.tables.items():
            self.tables[tid] = [e for e in table if Group(gm.group_id) not in e.fm.actions]

    def apply(self, fm: FlowMod, now: float = 0.0) -> None:
        """Apply one flow-mod."""
        want = {k: _masked(v) for k, v in fm.match}
        if fm.command == "add":
            self._add(fm, want, now)
            return
        strict = fm.command == "delete_strict"
        for tid in list(self.tables) if fm.table == TABLE_ALL else [fm.table]:
            self.tables[tid] = [e for e in self.tables.get(tid, [])
                                if not _deleted_by(fm, want, e, strict)]

    def _add(self, fm: FlowMod, want: dict[str, Masked], now: float) -> None:
        """Add an entry, replacing one with the same priority and match."""
        for name in want:
            while name in PREREQS:
                name, value = PREREQS[name]
                if want.get(name) != (value, EXACT):
                    raise FakeTableError(f"{fm}: match needs {name}={value:#x}")
        if fm.goto is not None and fm.goto <= fm.table:
            raise FakeTableError(f"{fm}: goto must go to a later table")
        for act in fm.actions:
            if isinstance(act, Group) and act.group_id not in self.groups:
                raise FakeTableError(f"{fm}: no group {act.group_id} (OFPBAC_BAD_OUT_GROUP)")
        table = [e for e in self.tables.get(fm.table, [])
                 if (e.fm.priority, e.want) != (fm.priority, want)]
        self.tables[fm.table] = [*table, _Entry(fm, want, now, now)]

    def entries(self, table: int | None = None) -> list[FlowMod]:
        """The flow-mods behind the entries (of one table), for inspection."""
        return [e.fm for tid, t in sorted(self.tables.items()) if table in (None, tid) for e in t]

    def flow_stats(self, table: int, now: float) -> list[tuple[int, dict[str, object], int, float]]:
        """A table's entries as a flow-stats reply gives them: (cookie, match, packets, age)."""
        self.expire(now)
        return [(e.fm.cookie, {k: v if isinstance(v, tuple) else shown(k, number(v))
                               for k, v in e.fm.match}, e.packets, now - e.added)
                for e in self.tables.get(table, [])]

    def expire(self, now: float) -> None:
        """Remove entries whose timeout has passed; note those that ask to be reported."""
        for tid, table in self.tables.items():
            kept = []
            for e in table:
                reason = e.timed_out(now)
                if reason is None:
                    kept.append(e)
                elif e.fm.notify_removal:
                    self.removed.append((self.dpid, e.fm.cookie, reason))
            self.tables[tid] = kept

    def lookup(self, fields: Mapping[str, int | str], in_port: int, now: float = 0.0) -> Result:
        """Run a packet arriving on `in_port` through the pipeline from table 0."""
        self.expire(now)
        pkt = {k: number(v) for k, v in fields.items()} | {"in_port": in_port}
        res = Result()
        self._table(0, pkt, res, now, 0)
        return res

    def packet_out(self, po: PacketOut, now: float = 0.0) -> Result:
        """Run a packet-out's actions on its packet (an output to PORT_TABLE: the pipeline)."""
        self.expire(now)
        pkt = fields_of(po.data) | {"in_port": PORT_CONTROLLER if po.in_port is None
                                    else po.in_port}
        res = Result()
        self._run(po.actions, pkt, res, now, 0)
        return res

    def _table(self, tid: int, pkt: Fields, res: Result, now: float, depth: int) -> None:
        """Look the packet up in one table and run the entry it hits (a miss drops)."""
        if depth > MAX_DEPTH:
            raise FakeTableError(f"switch {self.dpid}: more than {MAX_DEPTH} table lookups")
        hits = [e for e in self.tables.get(tid, []) if _hits(e.want, pkt)]
        if not hits:
            return
        top = max(e.fm.priority for e in hits)
        best = [e for e in hits if e.fm.priority == top]
        if len(best) > 1:
            raise FakeTableError(f"switch {self.dpid} table {tid}: {len(best)} entries of "
                                 f"priority {top} match {pkt}: {[e.fm for e in best]}")
        entry = best[0]
        entry.used = now
        entry.packets += 1
        if entry.fm.meter is not None:
            res.meters.append(entry.fm.meter)
        outer, self._cookie = self._cookie, entry.fm.cookie
        self._run(entry.fm.actions, pkt, res, now, depth)
        self._cookie = outer
        if entry.fm.goto is not None:
            self._table(entry.fm.goto, pkt, res, now, depth + 1)

    def _run(self, actions: Iterable[Action], pkt: Fields, res: Result, now: float,
             depth: int) -> None:
        """Apply actions in order to the packet."""
        for act in actions:
            if isinstance(act, SetField):
                if not _prereqs_met(pkt, act.field):
                    raise FakeTableError(f"switch {self.dpid}: {act} on a packet without that "
                                         f"header: {pkt}")
                pkt[act.field] = number(act.value)
            elif isinstance(act, Output):
                self._output(act.port, pkt, res, now, depth)
            elif isinstance(act, Resubmit):
                self._table(act.table, pkt, res, now, depth + 1)
            elif isinstance(act, PushMpls):
                pkt.update(eth_type=act.ethertype, mpls_label=0)  # hides the IP headers
            elif isinstance(act, Move):
                if act.src not in pkt or not _prereqs_met(pkt, act.dst):
                    raise FakeTableError(f"switch {self.dpid}: {act} on {pkt}")
                pkt[act.dst] = pkt[act.src]
            elif isinstance(act, PopMpls):
                if pkt.get("eth_type") != ETH_MPLS:
                    raise FakeTableError(f"switch {self.dpid}: pop_mpls on {pkt}")
                pkt.pop("mpls_label", None)
                pkt["eth_type"] = act.ethertype
            elif isinstance(act, Group):  # fast failover: a copy through the first live bucket
                live = [b for b in self.groups[act.group_id].buckets
                        if b.watch_port not in self.down]
                if live:
                    self._run(live[0].actions, dict(pkt), res, now, depth + 1)
            elif isinstance(act, Ct):  # the tracked copy goes on in act.table, if any
                tracked = self.conntrack.track(act, pkt)
                if act.table is not None:
                    self._table(act.table, tracked, res, now, depth + 1)
            else:
                self._learn(act, pkt, now)

    def _output(self, port: int, pkt: Fields, res: Result, now: float, depth: int) -> None:
        """Send a copy out of `port`; never back out of the port it came in by (OpenFlow)."""
        if port == PORT_CONTROLLER:
            res.packet_ins.append(Hop(self.dpid, pkt["in_port"], _headers(pkt), self._cookie))
        elif port == PORT_TABLE:
            self._table(0, pkt, res, now, depth + 1)
        elif port in self.down or (port == PORT_IN and pkt["in_port"] in self.down):
            return  # a link that is down carries nothing
        elif port == PORT_IN:
            res.outputs.append(Hop(self.dpid, pkt["in_port"], _headers(pkt)))
        elif port != pkt["in_port"]:
            res.outputs.append(Hop(self.dpid, port, _headers(pkt)))

    def _learn(self, act: Learn, pkt: Fields, now: float) -> None:
        """Add the entry a `learn` action builds from the packet as it is now."""
        fields: dict[str, MatchValue] = {}
        loads = []
        for spec in act.specs:
            value = spec.value if spec.src is None else _value(pkt, spec.src)
            if value is None:
                raise FakeTableError(f"switch {self.dpid}: learn reads {spec.src} from {pkt}")
            value &= (1 << spec.bits) - 1
            if spec.kind == "match":
                fields[spec.dst] = value
            else:
                loads.append(SetField(spec.dst, value))
        learned = FlowMod(self.dpid, act.table, act.priority, match(**fields), tuple(loads),
                          idle_timeout=act.idle_timeout, hard_timeout=act.hard_timeout,
                          cookie=act.cookie)
        self._add(learned, {k: _masked(v) for k, v in learned.match}, now)


def _deleted_by(fm: FlowMod, want: Mapping[str, Masked], e: _Entry, strict: bool) -> bool:
    """True when a delete flow-mod removes the entry (its match must contain the delete's)."""
    if (e.fm.cookie ^ fm.cookie) & fm.cookie_mask:
        return False
    if strict:
        return (e.fm.priority, e.want) == (fm.priority, dict(want))
    return all(e.want.get(k) == v for k, v in want.items())


class FakeNetwork:
    """Fake switches joined by links: follows a packet hop by hop to the edge or controller."""

    def __init__(self, links: Iterable[tuple[tuple[int, int], tuple[int, int]]]) -> None:
        self.switches: dict[int, FakeOFTable] = {}
        self.peer: dict[tuple[int, int], tuple[int, int]] = {}
        self.conntrack = Conntrack()  # one ovs-vswitchd's: every switch shares it
        for a, b in links:
            self.peer[a], self.peer[b] = b, a

    def switch(self, dpid: int) -> FakeOFTable:
        """The switch `dpid` (an empty one the first time)."""
        return self.switches.setdefault(dpid, FakeOFTable(dpid, self.conntrack))

    def apply(self, intents: Iterable[Intent], now: float = 0.0) -> Result:
        """Install the flow-mods and send the packet-outs, in order; where the latter went."""
        res = Result()
        for intent in intents:
            if isinstance(intent, FlowMod):
                self.switch(intent.dpid).apply(intent, now)
            elif isinstance(intent, CtFlush):
                self.conntrack.forget(intent)
            elif isinstance(intent, GroupMod):
                self.switch(intent.dpid).apply_group(intent)
            else:
                res = res.merge(self._follow(self.switch(intent.dpid).packet_out(intent, now),
                                             now, 0))
        return res

    def send(self, dpid: int, in_port: int, fields: Mapping[str, int | str],
             now: float = 0.0) -> Result:
        """Where a packet arriving at switch `dpid` by `in_port` leaves the network."""
        return self._follow(self.switch(dpid).lookup(fields, in_port, now), now, 0)

    def _follow(self, res: Result, now: float, hops: int) -> Result:
        """Carry outputs on link ports on to the switch at the other end."""
        out = Result(packet_ins=list(res.packet_ins), meters=list(res.meters))
        for hop in res.outputs:
            peer = self.peer.get((hop.dpid, hop.port))
            if peer is None:
                out.outputs.append(hop)
                continue
            if hops >= MAX_HOPS:
                raise FakeTableError(f"forwarding loop: {hop}")
            nxt = self.switch(peer[0]).lookup(hop.fields, peer[1], now)
            out = out.merge(self._follow(nxt, now, hops + 1))
        return out

    def take_removed(self, now: float) -> list[tuple[int, int, str]]:
        """Time out entries everywhere; the flow-removed reports (dpid, cookie, reason)."""
        out = []
        for sw in self.switches.values():
            sw.expire(now)
            out += sw.removed
            sw.removed.clear()
        return out


def fields_of(data: bytes) -> Fields:
    """An Ethernet frame's headers by OXM name (LLDP: `lldp_dpid`, `lldp_port`)."""
    pkt = parse(data)
    if pkt is None:
        raise FakeTableError(f"not an Ethernet frame: {data!r}")
    out = {"eth_src": number(pkt.eth_src), "eth_dst": number(pkt.eth_dst),
           "eth_type": pkt.eth_type}
    for name, value in (("arp_op", pkt.arp_op), ("arp_sha", pkt.arp_sha),
                        ("arp_spa", pkt.arp_spa), ("arp_tpa", pkt.arp_tpa),
                        ("ipv4_src", pkt.ip_src), ("ipv4_dst", pkt.ip_dst),
                        ("ip_proto", pkt.ip_proto), ("tcp_flags", pkt.tcp_flags),
                        ("lldp_dpid", pkt.lldp_dpid), ("lldp_port", pkt.lldp_port)):
        if value is not None:
            out[name] = number(value)
    if pkt.ip_proto in (6, 17) and pkt.l4_src is not None and pkt.l4_dst is not None:
        l4 = "tcp" if pkt.ip_proto == 6 else "udp"
        out[f"{l4}_src"], out[f"{l4}_dst"] = pkt.l4_src, pkt.l4_dst
    return out


def frame_of(fields: Mapping[str, int | str]) -> bytes:
    """An Ethernet frame with these headers (IPv4 with TCP or UDP, ARP, LLDP)."""
    f = {k: number(v) for k, v in fields.items()}
    src, dst = str(shown("eth_src", f["eth_src"])), str(shown("eth_dst", f["eth_dst"]))
    if f["eth_type"] == ETH_ARP:
        return build_arp(f["arp_op"], src, str(shown("arp_spa", f["arp_spa"])), dst,
                         str(shown("arp_tpa", f["arp_tpa"])))
    if f["eth_type"] == ETH_LLDP:
        return build_lldp(f["lldp_dpid"], f["lldp_port"], src)
    if f["eth_type"] != ETH_IP:
        raise FakeTableError(f"cannot build a frame of {fields}")
    proto = f.get("ip_proto", 0)
    l4 = b""
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", f["tcp_src"], f["tcp_dst"], f.get("tcp_seq", 0), 0, 0x50,
                         f.get("tcp_flags", 0x10), 1024, 0, 0)
    elif proto == 17:
        l4 = struct.pack("!HHHH", f["udp_src"], f["udp_dst"], 8, 0)
    ip = struct.pack("!BBHHHBBHII", 0x45, 0, 20 + len(l4), 0, 0, 64, proto, 0,
                     f["ipv4_src"], f["ipv4_dst"])
    return mac_to_bytes(dst) + mac_to_bytes(src) + struct.pack("!H", ETH_IP) + ip + l4

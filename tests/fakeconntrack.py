"""A fake connection tracker for tests/fakeoftable.py: what OVS's `ct` action does to a packet.

Boundary: tests only; no framework, no I/O. One `Conntrack` stands for one ovs-vswitchd's
tracker, which every bridge of it shares (a connection committed at one switch is known at the
others, as in Mininet). Per zone it keeps committed connections by their original and reply
tuples: a packet of the original direction is `+trk+new` until the connection has seen a reply,
then `+trk+est`; a reply is `+trk+est+rpl`; an unknown packet is `+trk+new` and is only
remembered when committed, but an unknown TCP SYN-ACK is `+trk+inv` (Open vSwitch's userspace
tracker lets a SYN or a mid-stream segment begin a connection, never a SYN-ACK: a liveness
probe's answer, whose SYN the tracker never saw, was dropped so in Mininet). `nat` applies a
connection's destination translation both ways (the original direction gets the new
destination, replies get the original destination back as their source); `commit` with
`nat_dst` sets it (the address only), with `mark` sets ct_mark (also on a connection already
committed, as `exec(set_field:..->ct_mark)` does). `forget`
is what an NXT_CT_FLUSH naming a reply source does. `limits` are per-zone limits
(`dpctl/ct-set-limits`): in a full zone a commit creates nothing, and the packet comes back
`+trk+new`, untranslated and unmarked (what Open vSwitch 3.1's userspace tracker does).
`invalid` says which packets of a known connection the tracker judges invalid (its TCP window
checks are not modelled): `+trk+inv`, still translated and marked as Open vSwitch's userspace
tracker does, or neither with `kernel` (the kernel's tracker gives an invalid packet no
connection). An ICMP error (types 3, 11, 12) quoting a packet (`inner_*` fields: the quoted
packet's ipv4_src, ipv4_dst, ip_proto, sport, dport) is `+trk+rel` (`+rpl` when it travels
in the reply direction) when the quoted packet belongs to a connection, its outer and inner
addresses translated; else `+trk+inv`. Not modelled: timeouts, TCP state (a FIN or RST ends
nothing), port translation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from controller.intents import CT_EST, CT_INV, CT_NEW, CT_REL, CT_RPL, CT_TRK, Ct, CtFlush

Tuple = tuple[int, int, int, int, int]  # ip_proto, source, destination, source/dest port


@dataclass(slots=True)
class Conn:
    """One committed connection."""

    zone: int
    orig: Tuple
    reply: Tuple
    nat_dst: int | None  # the translated destination of the original direction
    mark: int = 0
    replied: bool = False


def _tuple(pkt: dict[str, int]) -> Tuple:
    """The packet's 5-tuple (ports 0 for protocols without them)."""
    proto = pkt.get("ip_proto", 0)
    l4 = {6: "tcp", 17: "udp"}.get(proto)
    sport = pkt.get(f"{l4}_src", 0) if l4 else 0
    dport = pkt.get(f"{l4}_dst", 0) if l4 else 0
    return proto, pkt["ipv4_src"], pkt["ipv4_dst"], sport, dport


ICMP_ERRORS = (3, 11, 12)
INNER = ("inner_ip_proto", "inner_ipv4_src", "inner_ipv4_dst", "inner_sport", "inner_dport")


def _quoted(pkt: dict[str, int]) -> Tuple | None:
    """The tuple of the connection packet an ICMP error quotes, reversed (the direction the
    error travels in), or None when the packet is not such an error."""
    if pkt.get("ip_proto") != 1 or pkt.get("icmpv4_type") not in ICMP_ERRORS:
        return None
    proto, src, dst, sport, dport = (pkt[k] for k in INNER)
    return proto, dst, src, dport, sport


def _ipv4(addr: str) -> int:
    """A dotted IPv4 address as an integer."""
    a, b, c, d = (int(x) for x in addr.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


class Conntrack:
    """One ovs-vswitchd's connection tracker."""

    def __init__(self) -> None:
        self.conns: dict[tuple[int, Tuple], tuple[Conn, bool]] = {}  # -> (conn, is reply)
        self.limits: dict[int, int] = {}  # zone -> most connections it may hold
        self.invalid: Callable[[dict[str, int]], bool] = lambda pkt: False
        self.kernel = False  # an invalid packet is untranslated and unmarked (no connection)

    def entries(self, zone: int | None = None) -> list[Conn]:
        """The committed connections (of one zone)."""
        seen = {id(c): c for c, rpl in self.conns.values() if not rpl}
        return [c for c in seen.values() if zone in (None, c.zone)]

    def flush(self, zone: int | None = None) -> None:
        """Forget every connection (of one zone), as `ovs-appctl dpctl/flush-conntrack`."""
        self.conns = {k: v for k, v in self.conns.items() if zone not in (None, k[0])}

    def forget(self, flush: CtFlush) -> None:
        """Forget the connections an NXT_CT_FLUSH names (zone, protocol, reply source, port)."""
        for conn in self.entries(flush.zone):
            proto, src, _, sport, _ = conn.reply
            if (proto, src, sport) == (flush.ip_proto, _ipv4(flush.reply_src), flush.reply_sport):
                del self.conns[(conn.zone, conn.orig)], self.conns[(conn.zone, conn.reply)]

    def track(self, act: Ct, pkt: dict[str, int]) -> dict[str, int]:
        """The packet as `act` hands it back tracked (a copy, with ct_state, ct_zone, ct_mark);
        commits what `act` commits."""
        if pkt.get("eth_type") != 0x0800:
            raise ValueError(f"ct on a packet that is not IPv4: {pkt}")
        out = dict(pkt)
        quoted = _quoted(pkt)
        if quoted is not None:
            return self._related(act, out, quoted)
        found = self.conns.get((act.zone, _tuple(pkt)))
        full = len(self.entries(act.zone)) >= self.limits.get(act.zone, 1 << 62)
        if found is None and act.commit and not full:
            orig = _tuple(pkt)
            nat = None if act.nat_dst is None else _ipv4(act.nat_dst)
            proto, src, dst, sport, dport = orig
            conn = Conn(act.zone, orig, (proto, dst if nat is None else nat, src, dport, sport),
                        nat)
            self.conns[(act.zone, conn.orig)] = (conn, False)
            self.conns[(act.zone, conn.reply)] = (conn, True)
            found = (conn, False)
            state = CT_TRK | CT_NEW
        elif found is None:
            syn_ack = pkt.get("ip_proto") == 6 and pkt.get("tcp_flags", 0) & 0x12 == 0x12
            out.update(ct_state=CT_TRK | (CT_INV if syn_ack else CT_NEW), ct_zone=act.zone,
                       ct_mark=0)
            return out
        conn, reply = found
        if self.invalid(pkt):
            if self.kernel:
                out.update(ct_state=CT_TRK | CT_INV, ct_zone=act.zone, ct_mark=0)
                return out
            state = CT_TRK | CT_INV | (CT_RPL if reply else 0)
        elif reply:
            conn.replied = True
            state = CT_TRK | CT_EST | CT_RPL
        else:
            state = CT_TRK | (CT_EST if conn.replied else CT_NEW)
        if act.commit and act.mark is not None:
            conn.mark = act.mark
        if conn.nat_dst is not None and (act.nat or act.nat_dst is not None):
            if reply:
                out["ipv4_src"] = conn.orig[2]
            else:
                out["ipv4_dst"] = conn.nat_dst
        out.update(ct_state=state, ct_zone=act.zone, ct_mark=conn.mark)
        return out

    def _related(self, act: Ct, out: dict[str, int], quoted: Tuple) -> dict[str, int]:
        """An ICMP error: +rel (and translated) if it quotes a connection's packet, else +inv."""
        found = self.conns.get((act.zone, quoted))
        if found is None:
            out.update(ct_state=CT_TRK | CT_INV, ct_zone=act.zone, ct_mark=0)
            return out
        conn, reply = found
        if conn.nat_dst is not None and (act.nat or act.nat_dst is not None):
            if reply:  # from the instance: its address back to the D-SID, outside and inside
                out["ipv4_src"] = out["inner_ipv4_dst"] = conn.orig[2]
            else:  # from the client: the D-SID to the instance's address
                out["ipv4_dst"] = out["inner_ipv4_src"] = conn.nat_dst
        out.update(ct_state=CT_TRK | CT_REL | (CT_RPL if reply else 0), ct_zone=act.zone,
                   ct_mark=conn.mark)
        return out

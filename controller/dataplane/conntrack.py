"""The `conntrack` dataplane: the switch decides, its connection tracker keeps affinity.

Boundary: pure rule builders, as `rules.py` for `learn` and `bucket`; the programmer says what
each switch should hold (bucket maps, located instances) and this module says which entries.

Every packet to the D-SID, and every packet from an instance's service port, goes through the
tracker in the service's zone (`Service.ct_zone`) with `nat`, which applies a known
connection's translation in either direction, and is looked up again in table 2:
- `+trk+new` to the D-SID (a new connection): table 3, where its bucket (masked bits of the
  flow key, as in `bucket`) commits it: `ct(commit, nat(dst=D-BID k), exec(ct_mark=k))`,
  then looked up in table 2 again, now translated and marked;
- `+trk-rpl` with ct_mark k (a connection's own packets, translated): table 4, whose entry for
  k sets the instance's MAC, then on to `forward`;
- `+trk+rpl` from the D-SID (a reply, translated back): the virtual MAC, then `forward`;
- `+trk` with ct_mark 0 (an instance's service port talking to someone directly): forwarded
  as it is; `+trk+inv` of the service's protocol with ct_mark 0 (the tracker could not tie
  it to a connection, so it is untranslated): dropped, but for a TCP SYN-ACK, which answers a
  SYN the tracker never saw (a client of the instance's D-BID itself, or the controller's
  liveness probe) and is forwarded as it is (Open vSwitch's tracker lets no SYN-ACK begin a
  connection: such a client never connected). An invalid packet of a known connection
  is translated and marked like its valid ones (Open vSwitch's userspace tracker) and goes on:
  a client's RST to a stale socket at the instance, or that socket's challenge ACK, must
  reach the other end, or a client reusing the port of a connection the instance still
  believes open never connects (docs/dataplanes.md, `conntrack`, invalid packets);
- ICMP errors (destination unreachable, fragmentation needed, time exceeded) about a tracked
  connection's packets, from its instance or its client: `+trk+rel`, translated (outer and
  inner headers) by the same `nat`, and forwarded as the connection's packets are;
- `+trk+new` to the D-SID with reg1 = 1 (table 3 sets it before its commit): the commit
  created nothing, the zone being at its limit (`dpctl/ct-set-limits`): dropped at once,
  rather than decided again until Open vSwitch's recirculation limit drops it.
A decision change rewrites table 3 only: established connections keep their translation and
mark, and so their instance, even across a wipe and reinstall of every table (the tracker
lives in ovs-vswitchd, not in the flow tables). The NAT names the address alone: Ryu 4.34 and
os-ken 3.1.1 encode a port range one field short (docs/dataplanes.md, `conntrack`).

With overlay (instances answer on the D-SID itself) nothing is translated: the same entries
without `nat`; table 4's entry for ct_mark k pushes MPLS label k (the overlay's label routes
carry it to the instance's switch, which pops it); the tracked replies are those from the
D-SID's service port (the tracker must see both directions, or a TCP connection's ACK after
its SYN is invalid), forwarded as they are. A lost or retired instance's connections cannot
be flushed by their reply source (the D-SID names no instance): their packets find no
table-4 entry for its mark and are decided again by table 3, whose commit re-marks the
connection with the bucket's instance (UDP flows move; a moved TCP connection is reset by an
instance that has no socket for it, and the client opens a new one).
"""

from __future__ import annotations

from controller.dataplane.modes import service_ident
from controller.dataplane.rules import (
    ETH_TYPE_IP,
    ETH_TYPE_MPLS,
    PRIO_BUCKET,
    Program,
    bucket_fields,
    service_fields,
)
from controller.intents import (
    CT_INV,
    CT_NEW,
    CT_RPL,
    CT_TRK,
    PRIO_SERVICE,
    TABLE_AFFINITY,
    TABLE_CLASSIFY,
    TABLE_DECISION,
    TABLE_FORWARD,
    TABLE_INSTANCE,
    VIRTUAL_MAC,
    Action,
    CookieKind,
    Ct,
    FlowMod,
    MatchValue,
    PushMpls,
    Resubmit,
    SetField,
    cookie,
    ct_state,
    match,
)

PRIO_CT_SYN_ACK = 106  # an untracked connection's SYN-ACK (a client of the D-BID itself)
PRIO_CT_REFUSED = 105
PRIO_CT_INVALID = 104
PRIO_CT_NEW = 103
PRIO_CT_REPLY = 102
PRIO_CT_UNMARKED = 101
PRIO_CT_MARKED = 100
ICMP = 1
ICMP_ERRORS = (3, 11, 12)  # destination unreachable (and fragmentation needed), time exceeded,
# parameter problem: the ICMP messages that quote a packet of a connection (+rel)
PRIO_REDECIDE = 1  # overlay: a connection marked for an instance no longer located here
TCP_SYN_ACK = 0x12  # both flags: what answers a SYN
COMMITTED = "reg1"  # 1: table 3 committed this packet (it survives the recirculation)


def _fm(dpid: int, table: int, priority: int, fields: dict[str, MatchValue],
        actions: list[Action], ck: int, goto: int | None = None) -> FlowMod:
    """A FlowMod with a match built from `fields`."""
    return FlowMod(dpid, table, priority, match(**fields), tuple(actions), goto=goto, cookie=ck)


def conntrack_entries(p: Program) -> list[FlowMod]:
    """Every entry of a `conntrack` service at one switch (see the module docstring)."""
    svc, dpid, zone = p.svc, p.dpid, p.svc.ct_zone
    sid = cookie(CookieKind.SERVICE, service_ident(svc))
    track = Ct(zone, table=TABLE_AFFINITY, nat=not svc.overlay)
    l4 = svc.protocol or "tcp"
    out = [_fm(dpid, TABLE_CLASSIFY, PRIO_SERVICE, service_fields(svc), [track], sid),
           _fm(dpid, TABLE_CLASSIFY, PRIO_SERVICE,
               {"eth_type": ETH_TYPE_IP, "ip_proto": ICMP, "ipv4_dst": svc.dsid}, [track], sid)]
    base: dict[str, MatchValue] = {"eth_type": ETH_TYPE_IP, "ct_zone": zone}
    tracked = base
    new = ct_state(on=CT_TRK | CT_NEW, off=CT_RPL)
    if svc.overlay:  # untranslated, a committed packet is still to the D-SID: its mark tells
        tracked = {**tracked, "ct_mark": 0}
    reply_acts: list[Action] = ([] if svc.overlay else [SetField("eth_src", VIRTUAL_MAC)])
    reply_acts.append(Resubmit(TABLE_FORWARD))
    out += [] if svc.overlay or l4 != "tcp" else [
        _fm(dpid, TABLE_AFFINITY, PRIO_CT_SYN_ACK,
            {**base, "ip_proto": 6, "ct_mark": 0, "ct_state": ct_state(on=CT_TRK | CT_INV),
             "tcp_flags": (TCP_SYN_ACK, TCP_SYN_ACK)}, [Resubmit(TABLE_FORWARD)], sid)]
    out += [
        _fm(dpid, TABLE_AFFINITY, PRIO_CT_REFUSED,
            {**service_fields(svc), **tracked, COMMITTED: 1, "ct_state": new}, [], sid),
        _fm(dpid, TABLE_AFFINITY, PRIO_CT_INVALID,
            {**base, "ip_proto": svc.ip_proto or 6, "ct_mark": 0,
             "ct_state": ct_state(on=CT_TRK | CT_INV)}, [], sid),
        _fm(dpid, TABLE_AFFINITY, PRIO_CT_NEW,
            {**service_fields(svc), **tracked, "ct_state": new}, [], sid, goto=TABLE_DECISION),
        _fm(dpid, TABLE_AFFINITY, PRIO_CT_REPLY,
            {**base, "ipv4_src": svc.dsid, "ct_state": ct_state(on=CT_TRK | CT_RPL)},
            reply_acts, sid),
        _fm(dpid, TABLE_AFFINITY, PRIO_CT_UNMARKED,
            {**base, "ct_mark": 0, "ct_state": ct_state(on=CT_TRK)},
            [Resubmit(TABLE_FORWARD)], sid),
        _fm(dpid, TABLE_AFFINITY, PRIO_CT_MARKED,
            {**base, "ct_state": ct_state(on=CT_TRK, off=CT_RPL)}, [], sid,
            goto=TABLE_INSTANCE),
    ]
    ident = service_ident(svc) << 16
    if svc.overlay:
        return out + _overlay_entries(p, track) + decision_entries(p)
    for t in p.targets:
        ck = cookie(CookieKind.INSTANCE, ident | t.label)
        out.append(_fm(dpid, TABLE_CLASSIFY, PRIO_SERVICE,
                       {"eth_type": ETH_TYPE_IP, "ip_proto": svc.ip_proto or 6,
                        "ipv4_src": t.dbid, f"{l4}_src": svc.port or 0}, [track], ck))
        out += [_fm(dpid, TABLE_CLASSIFY, PRIO_SERVICE,
                    {"eth_type": ETH_TYPE_IP, "ip_proto": ICMP, "icmpv4_type": kind,
                     "ipv4_src": t.dbid}, [track], ck) for kind in ICMP_ERRORS]
        out.append(_fm(dpid, TABLE_INSTANCE, PRIO_BUCKET, {**base, "ct_mark": t.label},
                       [SetField("eth_dst", t.mac), Resubmit(TABLE_FORWARD)], ck))
    return out + decision_entries(p)


def _overlay_entries(p: Program, track: Ct) -> list[FlowMod]:
    """Overlay: replies (and ICMP errors) from the D-SID tracked; table 4 labels by ct_mark."""
    svc, dpid = p.svc, p.dpid
    sid = cookie(CookieKind.SERVICE, service_ident(svc))
    l4 = svc.protocol or "tcp"
    out = [_fm(dpid, TABLE_CLASSIFY, PRIO_SERVICE,
               {"eth_type": ETH_TYPE_IP, "ip_proto": svc.ip_proto or 6,
                "ipv4_src": svc.dsid, f"{l4}_src": svc.port or 0}, [track], sid)]
    out += [_fm(dpid, TABLE_CLASSIFY, PRIO_SERVICE,
                {"eth_type": ETH_TYPE_IP, "ip_proto": ICMP, "icmpv4_type": kind,
                 "ipv4_src": svc.dsid}, [track], sid) for kind in ICMP_ERRORS]
    tracked: dict[str, MatchValue] = {"eth_type": ETH_TYPE_IP, "ct_zone": svc.ct_zone}
    for t in p.targets:
        ck = cookie(CookieKind.INSTANCE, (service_ident(svc) << 16) | t.label)
        out.append(_fm(dpid, TABLE_INSTANCE, PRIO_BUCKET, {**tracked, "ct_mark": t.label},
                       [PushMpls(ETH_TYPE_MPLS), SetField("mpls_label", t.label),
                        Resubmit(TABLE_FORWARD)], ck))
    out.append(_fm(dpid, TABLE_INSTANCE, PRIO_REDECIDE,
                   {**tracked, "ct_state": ct_state(on=CT_TRK, off=CT_RPL)},
                   [Resubmit(TABLE_DECISION)], sid))
    return out


def decision_entries(p: Program) -> list[FlowMod]:
    """Table 3: one entry per bucket committing a new connection to the bucket's instance."""
    if p.buckets is None:
        return []
    svc = p.svc
    dbids = {t.label: t.dbid for t in p.targets}
    out = []
    for b, label in enumerate(p.buckets):
        dbid = None if label is None else dbids.get(label)
        if label is None or dbid is None:
            continue  # not located here: the bucket's new connections are dropped (a miss)
        commit = Ct(svc.ct_zone, table=TABLE_AFFINITY, commit=True,
                    nat_dst=None if svc.overlay else dbid, mark=label)
        out.append(_fm(p.dpid, TABLE_DECISION, PRIO_BUCKET, bucket_fields(svc, b),
                       [SetField(COMMITTED, 1), commit],
                       cookie(CookieKind.DECISION, (service_ident(svc) << 16) | b)))
    return out

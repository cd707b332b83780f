"""Affinity without the controller in the path: the `learn` and `bucket` dataplanes, and overlay.

Boundary: pure rule builders and a reconciler; the core decides *what* each switch should hold
(decisions as bucket maps, instance labels, pins in progress) and this module says *which
entries* that is, and which flow-mods turn what a switch holds into it.

Tables (controller/intents.py): a packet to the D-SID matches the service's entry in table 0,
which looks it up in table 2 `affinity` (`resubmit`) and then goes to table 4 `instance`.
- Table 2 holds the per-flow entries the switch learned itself (`learn`): a hit loads the
  flow's instance label into reg0. A miss resubmits to table 3 `decision`, and so does a
  TCP SYN in `learn` mode with a 5-tuple key (`fresh_syns`): a new connection is decided anew.
- Table 3 holds the decision: one entry per bucket (masked bits of the flow key's source port,
  or of the client address for `3-tuple`/`source` keys, so the datapath can cache wide
  megaflows). `learn` mode: the entry learns the flow's table-2 entry and loads reg0;
  `bucket` mode: it only loads reg0 (no per-flow state), except while the bucket moves to
  another instance (see `pinning`).
- Table 4 says what label k means: rewrite D-SID -> D-BID (and, in `learn` mode, learn the
  reply entry), or in overlay mode push MPLS label k; then on to table 1 `forward`.
Replies (address translation only) match a per-instance entry in table 0: in `learn` mode it
looks up the learned reply entries of table 2; in `bucket` mode it rewrites D-BID -> D-SID for
any reply from the instance's service port.

Moving a bucket (`bucket` mode) without breaking a flow: for idle_timeout + 1 s its entry
learns a pin (table 2) of every flow it sees to the old instance and sends it there; from
SYN_DELAY_S into that phase, TCP SYNs (new connections) are pinned to the new instance; then the
entry points to the new instance. A flow idle for longer than idle_timeout has no affinity left
to keep. The SYN entry waits until OVS has revalidated the bucket's wide datapath flows into
per-flow ones (its revalidators run every 0.5 s): a wide flow created by the SYN of a connection
still alive would otherwise be re-translated through the SYN entry and pin that live connection
to the new instance (docs/dataplanes.md, "Why 1a and 1b are separate").
The SYN entry's learn has a limit (OVS learn2, never reached): OVS then deletes, rather than
keeps, a cached SYN datapath flow whose pin is missing. Without it, a SYN flow cached for an
earlier connection on the same 5-tuple, re-translated after its pin idled out, sent a new
connection's SYN to the new instance without learning its pin, and the connection's next
packet, missing table 2, was pinned to the old one (docs/dataplanes.md, pitfall 14).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controller.dataplane.modes import mode_of, service_ident
from controller.instances.liveness import LIVENESS_PORT
from controller.intents import (
    PORT_CONTROLLER,
    PRIO_SERVICE,
    TABLE_AFFINITY,
    TABLE_CLASSIFY,
    TABLE_DECISION,
    TABLE_FORWARD,
    TABLE_INSTANCE,
    Action,
    CookieKind,
    FlowMod,
    Learn,
    LearnSpec,
    MatchValue,
    Output,
    PopMpls,
    PushMpls,
    Resubmit,
    SetField,
    cookie,
    match,
)
from controller.model import Service

PRIO_BUCKET = 100
PRIO_BUCKET_SYN = 110  # during a move: new connections of the bucket go to the new instance
SYN_DELAY_S = 1.0  # ... from this long after the move started (module docstring)
SYN_PIN_LIMIT = 0xFFFFFFFF  # learn2's limit on the SYN entry's pins: never reached, it is
# there for what OVS does with a limited learn's cached flows (module docstring)
PRIO_LEARNED = 100
PRIO_LABEL = 100
# table 0: an instance's answer to a liveness probe, let through as it is (`probe_answer`)
PRIO_PROBE_ANSWER = PRIO_SERVICE + 3
ETH_TYPE_IP = 0x0800
ETH_TYPE_MPLS = 0x8847
TCP_SYN_ONLY = (0x002, 0x012)  # tcp_flags +syn-ack
VIRTUAL_MAC_INT = 0x02DC00000001  # controller.intents.VIRTUAL_MAC
OVS_MAX_IDLE_S = 10  # Open vSwitch's default other_config:max-idle (ms / 1000)


def ipv4_int(addr: str) -> int:
    """A dotted IPv4 address as an integer."""
    a, b, c, d = (int(x) for x in addr.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


@dataclass(frozen=True, slots=True)
class Target:
    """One instance as the rules of one switch need it."""

    dbid: str
    label: int
    mac: str


def _l4(svc: Service) -> str:
    """`tcp` or `udp` (the service's protocol; only those have learn/bucket dataplanes)."""
    return svc.protocol or "tcp"


def service_fields(svc: Service) -> dict[str, MatchValue]:
    """What identifies a packet to the service's D-SID."""
    fields: dict[str, MatchValue] = {"eth_type": ETH_TYPE_IP, "ipv4_dst": svc.dsid}
    if svc.ip_proto is not None:
        fields["ip_proto"] = svc.ip_proto
    if svc.port is not None:
        fields[f"{_l4(svc)}_dst"] = svc.port
    return fields


def bucket_fields(svc: Service, bucket: int) -> dict[str, MatchValue]:
    """The service's packets that fall into `bucket`: bits 1.. of the source port for a
    5-tuple key (bit 0 is skipped: Linux's connect() picks even ports), else the low bits of
    the client address (a client's flows then stay together, as its key says)."""
    fields = service_fields(svc)
    size = svc.buckets - 1
    if svc.affinity.key == "5-tuple":
        fields[f"{_l4(svc)}_src"] = (bucket << 1, size << 1)
    else:
        fields["ipv4_src"] = (bucket, size)
    return fields


def bucket_of(svc: Service, fields: Mapping[str, object]) -> int | None:
    """The bucket (`bucket_fields`) a flow of `svc` with these exact match fields falls into;
    None when they lack the field its key buckets by."""
    size = svc.buckets - 1
    if svc.affinity.key == "5-tuple":
        port = fields.get(f"{_l4(svc)}_src")
        return (port >> 1) & size if isinstance(port, int) else None
    src = fields.get("ipv4_src")
    return ipv4_int(src) & size if isinstance(src, str) else None


def _key_specs(svc: Service) -> list[LearnSpec]:
    """Learned-match parts copying the packet's flow key (before any rewrite)."""
    specs = [LearnSpec("match", "eth_type", 16, value=ETH_TYPE_IP),
             LearnSpec("match", "ip_proto", 8, value=svc.ip_proto or 6),
             LearnSpec("match", "ipv4_src", 32, src="ipv4_src"),
             LearnSpec("match", "ipv4_dst", 32, src="ipv4_dst")]
    if svc.affinity.key == "5-tuple":
        l4 = _l4(svc)
        specs += [LearnSpec("match", f"{l4}_src", 16, src=f"{l4}_src"),
                  LearnSpec("match", f"{l4}_dst", 16, src=f"{l4}_dst")]
    return specs


def learn_forward(svc: Service, label: int, kind: CookieKind, limit: int = 0) -> Learn:
    """The learn action that gives this flow its own table-2 entry loading `label` into reg0
    (`limit`: OVS learn2's, see SYN_PIN_LIMIT)."""
    specs = (*_key_specs(svc), LearnSpec("load", "reg0", 32, value=label))
    return Learn(TABLE_AFFINITY, specs, svc.affinity.idle_timeout, svc.affinity.hard_timeout,
                 PRIO_LEARNED, cookie(kind, label), limit)


def learn_reply(svc: Service, label: int) -> Learn:
    """The learn action (run after the rewrite) giving the flow's replies their own entry that
    rewrites the source back to the D-SID."""
    specs = [LearnSpec("match", "eth_type", 16, value=ETH_TYPE_IP),
             LearnSpec("match", "ip_proto", 8, value=svc.ip_proto or 6),
             LearnSpec("match", "ipv4_src", 32, src="ipv4_dst"),
             LearnSpec("match", "ipv4_dst", 32, src="ipv4_src")]
    if svc.affinity.key == "5-tuple":
        l4 = _l4(svc)
        specs += [LearnSpec("match", f"{l4}_src", 16, src=f"{l4}_dst"),
                  LearnSpec("match", f"{l4}_dst", 16, src=f"{l4}_src")]
    specs += [LearnSpec("load", "ipv4_src", 32, value=ipv4_int(svc.dsid)),
              LearnSpec("load", "eth_src", 48, value=VIRTUAL_MAC_INT)]
    return Learn(TABLE_AFFINITY, tuple(specs), svc.affinity.idle_timeout,
                 svc.affinity.hard_timeout, PRIO_LEARNED, cookie(CookieKind.LEARNED_REV, label))


def caveats(svc: Service) -> list[str]:
    """What an operator should know about this service's settings (they are valid).

    `learn` with address translation and an idle timeout at or below Open vSwitch's datapath
    flow idle limit: when a flow's learned entries idle out, OVS keeps the flow's cached
    datapath flows (for up to other_config:max-idle, 10 s by default) and re-translates them
    without running `learn` again; the reply's cached flow loses its rewrite at once, the
    forward one re-learns only when the revalidator next pushes its statistics. A flow that
    comes back after idling between the two limits (or a new connection reusing its 5-tuple)
    then sees replies from the D-BID for up to about a second. Overlay needs no reply rewrite,
    and `bucket` rewrites replies with a wildcard entry, so neither is affected
    (docs/dataplanes.md, pitfall 13)."""
    idle = svc.affinity.idle_timeout
    if mode_of(svc).learns and not svc.overlay and 0 < idle <= OVS_MAX_IDLE_S:
        return [f"dataplane 'learn' with affinity.idle_timeout {idle} s: Open vSwitch keeps a "
                f"flow's datapath cache up to other_config:max-idle ({OVS_MAX_IDLE_S} s by "
                "default) without re-running learn, so a flow resuming after "
                f"{idle}-{OVS_MAX_IDLE_S} s idle can get un-rewritten replies for up to about "
                f"a second; use an idle_timeout above {OVS_MAX_IDLE_S} s, or set max-idle "
                "below it"]
    return []


def _fm(dpid: int, table: int, priority: int, fields: dict[str, MatchValue],
        actions: Iterable[Action], ck: int, goto: int | None = None) -> FlowMod:
    """A FlowMod with a match built from `fields`."""
    return FlowMod(dpid, table, priority, match(**fields), tuple(actions), goto=goto, cookie=ck)


@dataclass(frozen=True, slots=True)
class Program:
    """What one switch should hold for one learn/bucket service."""

    svc: Service
    dpid: int
    targets: tuple[Target, ...]  # the service's located instances
    buckets: tuple[int | None, ...] | None  # label per bucket; None: no decision here
    # (bucket, old label, new label, new TCP connections go to the new label yet) being pinned
    moving: tuple[tuple[int, int, int, bool], ...] = ()
    guarded: tuple[int, ...] = ()  # labels of instances that cannot take a new connection


def service_entries(p: Program) -> list[FlowMod]:
    """Every entry of the service at the switch (see the module docstring)."""
    svc, dpid = p.svc, p.dpid
    ident = service_ident(svc) << 16
    out = [_fm(dpid, TABLE_CLASSIFY, PRIO_SERVICE, service_fields(svc),
               [Resubmit(TABLE_AFFINITY)], cookie(CookieKind.SERVICE, service_ident(svc)),
               goto=TABLE_INSTANCE)]
    out += fresh_syns(p)
    l4 = _l4(svc)
    for t in p.targets:
        ck = cookie(CookieKind.INSTANCE, ident | t.label)
        inst_match: dict[str, MatchValue] = {"eth_type": ETH_TYPE_IP,
                                             "ip_proto": svc.ip_proto or 6, "reg0": t.label}
        if svc.overlay:
            acts: list[Action] = [PushMpls(ETH_TYPE_MPLS), SetField("mpls_label", t.label),
                                  Resubmit(TABLE_FORWARD)]
        else:
            acts = [SetField("eth_dst", t.mac), SetField("ipv4_dst", t.dbid)]
            if mode_of(svc).learns:
                acts.append(learn_reply(svc, t.label))
            acts.append(Resubmit(TABLE_FORWARD))
            reply: dict[str, MatchValue] = {"eth_type": ETH_TYPE_IP,
                                            "ip_proto": svc.ip_proto or 6, "ipv4_src": t.dbid,
                                            f"{l4}_src": svc.port or 0}
            back: list[Action] = ([Resubmit(TABLE_AFFINITY)] if mode_of(svc).learns else
                                  [SetField("eth_src", "02:dc:00:00:00:01"),
                                   SetField("ipv4_src", svc.dsid)])
            out.append(_fm(dpid, TABLE_CLASSIFY, PRIO_SERVICE, reply, back, ck,
                           goto=TABLE_FORWARD))
            if not mode_of(svc).learns:  # (`learn`'s replies are rewritten by flow only)
                out += probe_answer(dpid, svc, t.dbid, ck)
        out.append(_fm(dpid, TABLE_INSTANCE, PRIO_BUCKET, inst_match, acts, ck))
    out += group_guards(p) + decision_entries(p)
    return out


def probe_answer(dpid: int, svc: Service, dbid: str, ck: int) -> list[FlowMod]:
    """`bucket`, TCP with a port (not overlay): instance `dbid`'s answer to the controller's
    liveness probe (a SYN from the D-SID's LIVENESS_PORT to the service port, sent when its
    metrics are stale) goes on to `forward` as it is, which hands it to the controller (the
    D-SID is no host). Without it the instance's reply entry gave it the D-SID as its source:
    the controller could not tell whose answer it was, and an instance serving on went down
    when its D-MA died, its held connections with it. (`conntrack`'s tracker, which never saw
    the probe's SYN, passes the SYN-ACK on by its own entry for untracked SYNs' answers.)
    Matched by both addresses and both ports: a client whose own port is LIVENESS_PORT sends
    to the D-SID, not from it."""
    if svc.overlay or svc.protocol != "tcp" or svc.port is None:
        return []
    fields: dict[str, MatchValue] = {"eth_type": ETH_TYPE_IP, "ip_proto": 6, "ipv4_src": dbid,
                                     "ipv4_dst": svc.dsid, "tcp_src": svc.port,
                                     "tcp_dst": LIVENESS_PORT}
    return [_fm(dpid, TABLE_CLASSIFY, PRIO_PROBE_ANSWER, fields, [], ck, goto=TABLE_FORWARD)]


def group_guards(p: Program) -> list[FlowMod]:
    """TCP with a `source`/`3-tuple` key (not overlay): a SYN that a table-2 entry sends to an
    instance that cannot take a new connection (`Program.guarded`: inactive, or ejected by
    passive health) goes to the controller from table 4, which binds that connection alone
    elsewhere (an exception, as in `reactive`: dataplane/guards.py); the group's entry, and
    the client's open connections it holds, stay. Without it such a client's new connections
    followed its entry into the dead instance for as long as its retries kept it from idling
    out. Table 3 never names such an instance, so only a held entry's SYNs are caught."""
    svc = p.svc
    if svc.affinity.key == "5-tuple" or svc.protocol != "tcp" or svc.overlay:
        return []
    ident = service_ident(svc) << 16
    return [_fm(p.dpid, TABLE_INSTANCE, PRIO_BUCKET + 1,
                {"eth_type": ETH_TYPE_IP, "ip_proto": 6, "reg0": label,
                 "tcp_flags": TCP_SYN_ONLY}, [Output(PORT_CONTROLLER)],
                cookie(CookieKind.INSTANCE, ident | label)) for label in p.guarded]


def fresh_syns(p: Program) -> list[FlowMod]:
    """`learn`, TCP, 5-tuple key: a SYN (a new connection) skips the learned entries and is
    decided afresh, learning its entry anew (a learn with the same match replaces the old one).
    A client reusing the 5-tuple of a closed connection whose entry is still held would
    otherwise follow it to an instance that takes no new flows (draining, deactivated). A SYN
    resent before the answer meets the same bucket, so the same instance unless the decision
    moved meanwhile. Not for `source`/`3-tuple` keys: their one entry also holds the client's
    live connections, which a fresh decision would move."""
    svc = p.svc
    if not mode_of(svc).learns or svc.protocol != "tcp" or svc.affinity.key != "5-tuple":
        return []
    return [_fm(p.dpid, TABLE_AFFINITY, PRIO_LEARNED + 1,
                {**service_fields(svc), "tcp_flags": TCP_SYN_ONLY}, [Resubmit(TABLE_DECISION)],
                cookie(CookieKind.SERVICE, service_ident(svc)))]


def decision_entries(p: Program) -> list[FlowMod]:
    """The decision table's entries: one per bucket, two for a bucket being moved."""
    if p.buckets is None:
        return []
    svc, dpid = p.svc, p.dpid
    moving = {b: (old, new, syn) for b, old, new, syn in p.moving}
    out = []
    for b, label in enumerate(p.buckets):
        if label is None:
            continue
        ck = cookie(CookieKind.DECISION, (service_ident(svc) << 16) | b)
        fields = bucket_fields(svc, b)
        if b in moving:
            old, new, syn_on = moving[b]
            out.append(_fm(dpid, TABLE_DECISION, PRIO_BUCKET, fields,
                           [learn_forward(svc, old, CookieKind.PIN), SetField("reg0", old)], ck))
            if svc.protocol == "tcp" and syn_on:
                syn = {**fields, "tcp_flags": TCP_SYN_ONLY}
                out.append(_fm(dpid, TABLE_DECISION, PRIO_BUCKET_SYN, syn,
                               [learn_forward(svc, new, CookieKind.PIN, SYN_PIN_LIMIT),
                                SetField("reg0", new)], ck))
            continue
        acts: list[Action] = [SetField("reg0", label)]
        if mode_of(svc).learns:
            acts.insert(0, learn_forward(svc, label, CookieKind.LEARNED_FWD))
        out.append(_fm(dpid, TABLE_DECISION, PRIO_BUCKET, fields, acts, ck))
    return out


def label_routes(dpid: int, routes: Iterable[tuple[Target, int, bool]]) -> list[FlowMod]:
    """Overlay: for each (instance, port towards it, this switch is its egress), the entry
    that carries its label on, or pops it and delivers at the egress."""
    out = []
    for t, port, egress in routes:
        acts: list[Action] = ([PopMpls(ETH_TYPE_IP), SetField("eth_dst", t.mac), Output(port)]
                              if egress else [Output(port)])
        out.append(_fm(dpid, TABLE_FORWARD, PRIO_LABEL,
                       {"eth_type": ETH_TYPE_MPLS, "mpls_label": t.label}, acts,
                       cookie(CookieKind.LABEL, t.label)))
    return out

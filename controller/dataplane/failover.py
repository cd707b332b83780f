"""Switch-local failover: a ranked backup for every instance of a `failover` service, held by
the switch the instance is attached to, so that its new packets move when its port goes down
without waiting for the controller.

Boundary: pure. Given a service, its located instances and the topology, it says which
fast-failover groups (OpenFlow 1.3 OFPGT_FF, `GroupMod`) and entries each switch holds, and
which group-mods turn what a switch was sent into that (`FailoverGroups`, the groups' own
reconciler; the entries go through the programmer's `Reconciler`).

Where the group is (docs/dataplanes.md, "Switch-local failover"): at the instance's own switch
(its *egress*), in front of the host route to its D-BID. A group's bucket is live while its
`watch_port` is, and a switch sees only its own ports: the instance's access port is at its
egress, so a group there sees the instance's link go down, whichever ingress the flow came
from; a group at the ingress would see only the ingress's own first hop. Per instance k (label
L) at switch S, access port P, backup b (the located active instance of the service nearest to
S by path cost; ties by D-BID), Q the port at S towards b:
- group 2L: bucket 1 (watch P): set eth_dst MAC(k), output P; bucket 2 (watch Q): set
  ipv4_dst D-BID b, eth_dst MAC(b), output Q. Group 2L+1 is the same with bucket 2 sending
  back out of the port it came in by (OFPP_IN_PORT): a switch never outputs a packet to its
  own in_port otherwise, and the way to b may be the way the packet came.
- table 1, priority PRIO_HOST + 1: the service's packets to D-BID k (protocol, port) -> group
  2L; priority PRIO_HOST + 2, the same from in_port Q -> group 2L+1. The host route (the
  network's, PRIO_HOST) still carries everything else to k.
- "2L" is short for the group id `(prefix << 24) | 2L` (`group_ids`): the prefix
  ([dataplane] `group_id_prefix`, default 0xD5) marks Dyncast's groups in a switch it shares
  with other applications; labels are below 2^16, so 2L+1 fits in the low 24 bits. Groups
  numbered 2L without a prefix (before 2026-12) are an earlier process's
  (dataplane/groupaudit.py deletes them once nothing names them).
- the backup's replies: in `bucket` mode every ingress already rewrites any located
  instance's replies to the D-SID; in `reactive` mode a binding's reverse entry matches its own
  instance only, so every switch gets, per instance that is some instance's backup, a reply
  entry (table 0, PRIO_SERVICE: D-BID b, protocol, source port -> D-SID) under the bindings';
  in `learn` mode the flow's learned reply entry (table 2) matches the instance it was learned
  for, so every switch gets the same reply entry in table 2 under the learned ones
  (PRIO_FAILOVER_REPLY, above the table's miss), where the per-instance table-0 entry of b
  already looks b's replies up. `conntrack` is refused (docs/dataplanes.md): the tracker
  committed the connection towards k, so it does not know b's replies (a SYN-ACK opening
  nothing is invalid and dropped), and a stateless rewrite of b's replies would hide them from
  the tracker for b's own connections too.
What it covers: the instance's access link or port going down (a dead host whose port stays
up is not seen: the controller's liveness moves those flows). New packets of a flow bound to k
then reach b, which answers those that open a connection (a TCP SYN, a UDP request); packets of
connections open at k are refused by b (reset), as after any move. The backup is chosen when
the entries are computed: if b's own link is down too, the group has no live bucket and drops.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from controller.dataplane.labels import FIRST_LABEL, LABEL_LIMIT
from controller.dataplane.modes import mode_of, service_ident
from controller.dataplane.rules import ETH_TYPE_IP
from controller.intents import (
    PORT_IN,
    PRIO_HOST,
    PRIO_SERVICE,
    TABLE_AFFINITY,
    TABLE_CLASSIFY,
    TABLE_FORWARD,
    VIRTUAL_MAC,
    CookieKind,
    FlowMod,
    Group,
    GroupBucket,
    GroupMod,
    Intent,
    MatchValue,
    Output,
    SetField,
    cookie,
    match,
)
from controller.model import Instance, Service
from controller.network.topology import Topology

PRIO_FAILOVER = PRIO_HOST + 1  # the service's packets to an instance, at its switch
PRIO_FAILOVER_IN = PRIO_HOST + 2  # ... those that came in by the port towards its backup
PRIO_FAILOVER_REPLY = 1  # learn: a backup's replies, under the learned entries (table 2)
BACKUP_STATES = ("active",)  # what a backup may be: an instance that takes new flows


@dataclass(frozen=True, slots=True)
class Backup:
    """Instance `dbid` at `dpid` port `port`, and the instance its packets go to when that
    port is down (`backup`, reached by `backup_port` at `dpid`)."""

    dbid: str
    label: int
    mac: str
    dpid: int
    port: int
    backup: str
    backup_mac: str
    backup_port: int


GROUP_PREFIX_SHIFT = 24  # a group id: prefix (8 bits), then 2L + b (labels < 2^16)
DEFAULT_GROUP_PREFIX = 0xD5
GROUP_PREFIX_MIN, GROUP_PREFIX_MAX = 1, 0xFE  # 0: unmarked; 0xFF: OFPG_MAX, ALL, ANY ahead


def group_ids(label: int, prefix: int) -> tuple[int, int]:
    """The two fast-failover groups of the instance with `label` (see the module docstring);
    `prefix` 0 gives the unmarked ids of processes before 2026-12."""
    base = prefix << GROUP_PREFIX_SHIFT | label << 1
    return base, base | 1


def label_of_group(group_id: int, prefix: int) -> int | None:
    """The label whose group `group_id` is, at `prefix` (None: not one of those ids)."""
    if group_id >> GROUP_PREFIX_SHIFT != prefix:
        return None
    label = (group_id & ((1 << GROUP_PREFIX_SHIFT) - 1)) >> 1
    return label if FIRST_LABEL <= label < LABEL_LIMIT else None


def backups(svc: Service, insts: list[Instance], topology: Topology,
            label: Callable[[str], int], ejected: Collection[str] = ()) -> list[Backup]:
    """Every located instance of `svc` with the backup its switch fails over to (none for an
    instance that has no other located active instance reachable from its switch). An
    instance passive health ejected is no backup: its host refuses new connections, and a
    flow failed over to it would be refused where, with no backup, its client sends again
    once the controller has moved it."""
    if not svc.failover:
        return []
    located = [(i, topology.hosts[i.dbid]) for i in sorted(insts, key=lambda i: i.dbid)
               if i.dbid in topology.hosts]
    out = []
    for inst, host in located:
        ranked = []
        for other, where in located:
            cost = topology.cost_ms(host.dpid, where.dpid)
            if (other.dbid != inst.dbid and other.state in BACKUP_STATES and cost is not None
                    and other.dbid not in ejected):
                ranked.append((cost, other.dbid, where.mac))
        if not ranked:
            continue
        _, dbid, mac = min(ranked)
        port = topology.out_port(host.dpid, dbid)
        if port is None or port == host.port:
            continue
        out.append(Backup(inst.dbid, label(inst.dbid), host.mac, host.dpid, host.port, dbid,
                          mac, port))
    return out


def _l4(svc: Service) -> str:
    return svc.protocol or "tcp"


def groups_at(dpid: int, found: list[Backup], prefix: int) -> list[GroupMod]:
    """The fast-failover groups switch `dpid` holds for the instances attached to it."""
    out = []
    for b in found:
        if b.dpid != dpid:
            continue
        primary = GroupBucket(b.port, (SetField("eth_dst", b.mac), Output(b.port)))
        moved = (SetField("ipv4_dst", b.backup), SetField("eth_dst", b.backup_mac))
        plain, back_in = group_ids(b.label, prefix)
        out.append(GroupMod(dpid, plain, (primary, GroupBucket(
            b.backup_port, (*moved, Output(b.backup_port))))))
        out.append(GroupMod(dpid, back_in, (primary, GroupBucket(
            b.backup_port, (*moved, Output(PORT_IN))))))
    return out


def entries_at(svc: Service, dpid: int, found: list[Backup], prefix: int) -> list[FlowMod]:
    """The entries switch `dpid` holds for `svc`'s failover (see the module docstring)."""
    ident = service_ident(svc) << 16
    l4 = _l4(svc)
    out = []
    for b in found:
        if b.dpid != dpid:
            continue
        ck = cookie(CookieKind.FAILOVER, ident | b.label)
        fields: dict[str, MatchValue] = {"eth_type": ETH_TYPE_IP, "ipv4_dst": b.dbid,
                                         "ip_proto": svc.ip_proto or 6,
                                         f"{l4}_dst": svc.port or 0}
        plain, back_in = group_ids(b.label, prefix)
        out.append(FlowMod(dpid, TABLE_FORWARD, PRIO_FAILOVER, match(**fields),
                           (Group(plain),), cookie=ck))
        out.append(FlowMod(dpid, TABLE_FORWARD, PRIO_FAILOVER_IN,
                           match(**fields, in_port=b.backup_port), (Group(back_in),), cookie=ck))
    return out + _backup_replies(svc, dpid, found)


def _backup_replies(svc: Service, dpid: int, found: list[Backup]) -> list[FlowMod]:
    """`reactive` and `learn`: every switch rewrites each backup's replies to the D-SID, under
    the per-flow reverse entries (module docstring); `bucket` already does, for any instance."""
    mode = mode_of(svc)
    if not (mode.places_flows or mode.learns):
        return []
    ident = service_ident(svc) << 16
    l4 = _l4(svc)
    out = []
    for dbid in sorted({b.backup for b in found}):
        label = next(x.label for x in found if x.backup == dbid)
        fields: dict[str, MatchValue] = {"eth_type": ETH_TYPE_IP,
                                         "ip_proto": svc.ip_proto or 6, "ipv4_src": dbid,
                                         f"{l4}_src": svc.port or 0}
        rewrite = (SetField("eth_src", VIRTUAL_MAC), SetField("ipv4_src", svc.dsid))
        ck = cookie(CookieKind.FAILOVER, ident | label)
        if mode.learns:  # looked up from b's table-0 entry, which then goes on to forward
            out.append(FlowMod(dpid, TABLE_AFFINITY, PRIO_FAILOVER_REPLY, match(**fields),
                               rewrite, cookie=ck))
        else:
            out.append(FlowMod(dpid, TABLE_CLASSIFY, PRIO_SERVICE, match(**fields), rewrite,
                               goto=TABLE_FORWARD, cookie=ck))
    return out


class FailoverGroups:
    """What groups we sent each switch, per scope, and the group-mods to a desired set:
    add-or-modify for new or changed groups (first: entries name them), deletes for the rest
    (last: deleting a group deletes the entries that name it)."""

    def __init__(self) -> None:
        self._sent: dict[tuple[int, str], dict[int, GroupMod]] = {}

    def apply(self, dpid: int, scope: str, desired: list[GroupMod]
              ) -> tuple[list[Intent], list[Intent]]:
        """(group-mods to send before the entries, group-mods to send after them)."""
        want = {g.group_id: g for g in desired}
        have = self._sent.get((dpid, scope), {})
        first: list[Intent] = [g for gid, g in want.items() if have.get(gid) != g]
        last: list[Intent] = [GroupMod(dpid, gid, command="delete")
                              for gid in have if gid not in want]
        if want:
            self._sent[(dpid, scope)] = want
        else:
            self._sent.pop((dpid, scope), None)
        return first, last

    def forget_switch(self, dpid: int) -> None:
        """A switch (re)connected: its groups are sent again (add-or-modify: no error)."""
        for key in [k for k in self._sent if k[0] == dpid]:
            del self._sent[key]

    def held(self, dpid: int) -> list[GroupMod]:
        """Every group we sent a switch."""
        return [g for (d, _), groups in self._sent.items() if d == dpid
                for g in groups.values()]

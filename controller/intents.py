"""Flow intents: frozen values that say what to install or send where, and the named pipeline.

The core returns these; `apps/ofmsg.py` is the one place that turns them into OpenFlow 1.3
messages. Match fields and set-field names are OpenFlow OXM names as the OFPMatch keyword
arguments spell them (`eth_type`, `ipv4_dst`, `tcp_src`, ...).

Pipeline (every entry carries a cookie whose top byte is COOKIE_APP):
- table 0 `classify`: LLDP and ARP to the controller; per-flow affinity entries (forward:
  D-SID -> D-BID, reverse: D-BID -> D-SID) at priority 2000; one entry per service sending the
  first packet of a new flow to the D-SID to the controller at priority 1000; everything else
  goes on to table 1.
- table 1 `forward`: one entry per (switch, known host address) sending IPv4 on along the
  shortest path; a miss goes to the controller, which learns nothing from it but probes for the
  destination with ARP. In overlay mode also one entry per (switch, instance label) carrying
  MPLS-labelled packets to the instance's switch, which pops the label and delivers.
- tables 2-4, for services whose dataplane is `learn` or `bucket` (controller/dataplane/rules.py):
  2 `affinity` (per-flow entries the switch learned itself, and pins), 3 `decision` (the
  current decision as one entry per bucket of the flow key), 4 `instance` (what instance k
  means at this ingress: rewrite, or label, then on to `forward`).
- table 5 `health`, with passive health on: per instance, a copy of its TCP resets to the
  controller through their own meter (controller/dataplane/healthpunt.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

TABLE_CLASSIFY = 0
TABLE_FORWARD = 1
TABLE_AFFINITY = 2
TABLE_DECISION = 3
TABLE_INSTANCE = 4
TABLE_HEALTH = 5
TABLES = {TABLE_CLASSIFY: "classify", TABLE_FORWARD: "forward", TABLE_AFFINITY: "affinity",
          TABLE_DECISION: "decision", TABLE_INSTANCE: "instance", TABLE_HEALTH: "health"}

PRIO_LLDP = 60000
PRIO_ARP = 50000
PRIO_AFFINITY = 2000
PRIO_SERVICE = 1000
PRIO_HOST = 100
PRIO_MISS = 0

COOKIE_APP = 0xDC
COOKIE_MASK_APP = 0xFF << 56
COOKIE_MASK_ALL = (1 << 64) - 1
PORT_CONTROLLER = 0xFFFFFFFD
PORT_ANY = 0xFFFFFFFF
PORT_IN = 0xFFFFFFF8  # OFPP_IN_PORT: back out of the port the packet came in by
VIRTUAL_MAC = "02:dc:00:00:00:01"  # the MAC the controller answers ARP for every D-SID with


class CookieKind(IntEnum):
    """What kind of entry a cookie marks (bits 48-55)."""

    INFRA = 0
    SERVICE = 1
    AFFINITY_FWD = 2
    AFFINITY_REV = 3
    HOST = 4
    DECISION = 5       # a bucket's entry in the decision table (ident: service << 16 | bucket)
    INSTANCE = 6       # an instance's entries, tables 0 and 4 (ident: D-SID << 16 | label);
    #                    one sends to the controller: a held group's SYN (rules.group_guards)
    LEARNED_FWD = 7    # learned by the switch: a flow's forward entry (ident: label)
    LEARNED_REV = 8    # learned by the switch: a flow's reply entry (ident: label)
    PIN = 9            # learned while a bucket moves: a flow pinned to its instance (label)
    LABEL = 10         # overlay: a label route in the forward table (ident: label)
    DSID_ARP = 11      # the switch answers ARP for a D-SID itself (ident: D-SID)
    SYN_GUARD = 12     # reactive: a new connection reusing the flow of a binding to an instance
    #                    that takes no new flows goes to the controller (ident: binding id)
    OVERFLOW = 13      # reactive, ingress past its binding cap: a slot's stateless entry
    #                    (ident: D-SID << 16 | slot; controller/dataplane/overflow.py)
    OVERFLOW_REV = 14  # ... and an instance's reply entry there (ident: D-BID as a number)
    FAILOVER = 15      # a failover service's entries: to an instance's fast-failover group at
    #                    its switch (table 1), its backup's replies (table 0) (ident: D-SID << 16
    #                    | label; controller/dataplane/failover.py)
    HEALTH = 16        # passive health: an instance's resets copied to the controller, tables 0
    #                    and 5 at its switch (ident: label; controller/dataplane/healthpunt.py)


_KINDS = {int(k): k for k in CookieKind}


def cookie(kind: CookieKind, ident: int = 0) -> int:
    """Return the cookie for an entry of `kind` with a 48-bit identifier."""
    return (COOKIE_APP << 56) | (int(kind) << 48) | (ident & 0xFFFF_FFFF_FFFF)


def cookie_kind(value: int) -> tuple[CookieKind, int] | None:
    """Split one of our cookies into (kind, ident); None when it is not ours."""
    if value >> 56 != COOKIE_APP:
        return None
    kind = _KINDS.get((value >> 48) & 0xFF)  # (not CookieKind(...): an audit splits thousands)
    return None if kind is None else (kind, value & 0xFFFF_FFFF_FFFF)


MatchValue = int | str | tuple[int, int]  # a masked value is (value, mask)
Match = tuple[tuple[str, MatchValue], ...]


@dataclass(frozen=True, slots=True)
class SetField:
    """Rewrite one header field."""

    field: str
    value: int | str


@dataclass(frozen=True, slots=True)
class Output:
    """Send out of a port (PORT_CONTROLLER sends the whole packet to the controller)."""

    port: int


@dataclass(frozen=True, slots=True)
class Resubmit:
    """Look the packet up in `table` now, apply that entry's actions, and come back (Nicira)."""

    table: int


@dataclass(frozen=True, slots=True)
class PushMpls:
    """Push an MPLS header (the label is then set with SetField("mpls_label", ...))."""

    ethertype: int = 0x8847


@dataclass(frozen=True, slots=True)
class PopMpls:
    """Pop the MPLS header; the packet is `ethertype` again."""

    ethertype: int = 0x0800


@dataclass(frozen=True, slots=True)
class LearnSpec:
    """One part of a learned entry: `kind` "match" (its match on `dst`) or "load" (an action
    writing `dst`); the value comes from the packet's `src` field or is the constant `value`."""

    kind: Literal["match", "load"]
    dst: str
    bits: int
    src: str | None = None
    value: int | None = None


@dataclass(frozen=True, slots=True)
class Learn:
    """Make the switch add an entry to `table` built from the packet (OVS `learn`).

    `limit` (nonzero: OVS `learn2`) caps the entries of `cookie` in `table`; it also makes OVS
    drop, instead of keep, a cached datapath flow whose learned entry is missing when it
    re-translates it without packets (docs/dataplanes.md, pitfall 14)."""

    table: int
    specs: tuple[LearnSpec, ...]
    idle_timeout: int = 0
    hard_timeout: int = 0
    priority: int = 100
    cookie: int = 0
    limit: int = 0


@dataclass(frozen=True, slots=True)
class Move:
    """Copy header field `src` into `dst` (same width; Nicira reg_move)."""

    src: str
    dst: str


@dataclass(frozen=True, slots=True)
class Ct:
    """Send the packet through the switch's connection tracker in `zone` (Nicira `ct`).

    `nat`: apply the translation the connection already has (either direction); `nat_dst`
    (with `commit`): translate a new connection's destination address to it (the address only:
    Ryu 4.34 and os-ken 3.1.1 encode a port range one field short, which OVS refuses);
    `commit`: make the connection's entry (with `mark` put in its ct_mark); `table`: look the
    tracked packet up again from that table (recirculation; its ct_state, ct_zone and ct_mark
    are then known), else the packet goes on untracked. Match a tracked packet with `ct_state`
    (CT_* bits, masked), `ct_zone` and `ct_mark`."""

    zone: int
    table: int | None = None
    commit: bool = False
    nat: bool = False
    nat_dst: str | None = None
    mark: int | None = None


CT_NEW, CT_EST, CT_REL, CT_RPL, CT_INV, CT_TRK = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20


def ct_state(*, on: int = 0, off: int = 0) -> tuple[int, int]:
    """A masked ct_state match: the CT_* bits `on` set and `off` clear."""
    return on, on | off


@dataclass(frozen=True, slots=True)
class Group:
    """Hand the packet to group `group_id` (OpenFlow 1.3 group action)."""

    group_id: int


Action = SetField | Output | Resubmit | PushMpls | PopMpls | Learn | Move | Ct | Group


@dataclass(frozen=True, slots=True)
class FlowMod:
    """Add or delete a flow entry at switch `dpid`."""

    dpid: int
    table: int
    priority: int
    match: Match
    actions: tuple[Action, ...] = ()
    goto: int | None = None
    idle_timeout: int = 0
    hard_timeout: int = 0
    cookie: int = cookie(CookieKind.INFRA)
    # "adopted": a placeholder for an entry found in a switch (dataplane/reconciler.py); never sent
    command: Literal["add", "delete", "delete_strict", "adopted"] = "add"
    notify_removal: bool = False
    cookie_mask: int = 0
    meter: int | None = None  # the OpenFlow meter the entry's packets pass first (punt limit)


# each field's slot setter, past the frozen class's own __setattr__ (`flow_mod`; a field
# added to FlowMod and not set there fails tests/test_intents_flow_mod.py)
(_DPID, _TABLE, _PRIORITY, _MATCH, _ACTIONS, _GOTO, _IDLE, _HARD, _COOKIE, _COMMAND, _NOTIFY,
 _MASK, _METER) = (getattr(FlowMod, name).__set__ for name in (
    "dpid", "table", "priority", "match", "actions", "goto", "idle_timeout", "hard_timeout",
    "cookie", "command", "notify_removal", "cookie_mask", "meter"))


def flow_mod(dpid: int, table: int, priority: int, match: Match, actions: tuple[Action, ...],
             cookie: int, command: Literal["add", "delete_strict"] = "add") -> FlowMod:
    """`FlowMod(dpid, table, priority, match, actions, cookie=cookie, command=command)`, made
    without the frozen dataclass's __init__ (a third of its time: a link change on a large
    network rewrites thousands of host routes); equal to it field for field."""
    return flow_mod_of(dpid, table, priority, match, actions, None, 0, 0, cookie, command,
                       False, 0, None)


def flow_mod_of(dpid: int, table: int, priority: int, match: Match, actions: tuple[Action, ...],
                goto: int | None, idle_timeout: int, hard_timeout: int, cookie: int,
                command: Literal["add", "delete", "delete_strict", "adopted"],
                notify_removal: bool, cookie_mask: int, meter: int | None) -> FlowMod:
    """`FlowMod(...)` with every field given, in its order, made as `flow_mod` makes one
    (half the dataclass's time: every new flow's binding makes two)."""
    fm: FlowMod = object.__new__(FlowMod)
    _DPID(fm, dpid)
    _TABLE(fm, table)
    _PRIORITY(fm, priority)
    _MATCH(fm, match)
    _ACTIONS(fm, actions)
    _GOTO(fm, goto)
    _IDLE(fm, idle_timeout)
    _HARD(fm, hard_timeout)
    _COOKIE(fm, cookie)
    _COMMAND(fm, command)
    _NOTIFY(fm, notify_removal)
    _MASK(fm, cookie_mask)
    _METER(fm, meter)
    return fm


@dataclass(frozen=True, slots=True)
class PacketOut:
    """Send `data` from switch `dpid` with `actions` (in_port None = from the controller)."""

    dpid: int
    data: bytes
    actions: tuple[Action, ...]
    in_port: int | None = None


_PO_DPID, _PO_DATA, _PO_ACTIONS, _PO_IN_PORT = (getattr(PacketOut, name).__set__ for name in (
    "dpid", "data", "actions", "in_port"))


def packet_out(dpid: int, data: bytes, actions: tuple[Action, ...],
               in_port: int | None) -> PacketOut:
    """`PacketOut(dpid, data, actions, in_port)` made past the frozen dataclass's __init__
    (as `flow_mod`: one per new flow); equal to it field for field."""
    po: PacketOut = object.__new__(PacketOut)
    _PO_DPID(po, dpid)
    _PO_DATA(po, data)
    _PO_ACTIONS(po, actions)
    _PO_IN_PORT(po, in_port)
    return po


@dataclass(frozen=True, slots=True)
class CtFlush:
    """Make switch `dpid`'s connection tracker (its ovs-vswitchd's) forget the connections of
    `zone` whose replies come from `reply_src` port `reply_sport` (OVS 3.1+ NXT_CT_FLUSH)."""

    dpid: int
    zone: int
    ip_proto: int
    reply_src: str
    reply_sport: int


@dataclass(frozen=True, slots=True)
class GroupBucket:
    """One bucket of a fast-failover group: live while port `watch_port` is up."""

    watch_port: int
    actions: tuple[Action, ...]


@dataclass(frozen=True, slots=True)
class GroupMod:
    """Make switch `dpid` hold fast-failover group `group_id` with `buckets` (the first live
    bucket takes each packet), or delete it. "add_or_mod" is Open vSwitch's ADD_OR_MOD command
    (OpenFlow 1.3's ADD fails on a group that exists, MODIFY on one that does not)."""

    dpid: int
    group_id: int
    buckets: tuple[GroupBucket, ...] = ()
    command: Literal["add_or_mod", "delete"] = "add_or_mod"


Intent = FlowMod | PacketOut | CtFlush | GroupMod


def match(**fields: MatchValue) -> Match:
    """Build a Match from keyword fields, in a stable order."""
    return tuple(sorted(fields.items()))


def delete_by_cookie(dpid: int, value: int, table: int = TABLE_CLASSIFY) -> FlowMod:
    """Delete every entry in `table` whose cookie is exactly `value`."""
    return FlowMod(dpid=dpid, table=table, priority=0, match=(), command="delete",
                   cookie=value, cookie_mask=COOKIE_MASK_ALL)


@dataclass(frozen=True, slots=True)
class StoreWrite:
    """Persist (`value`) or delete (None) one record; the shell applies these off the packet path.

    `kind` is one of "service", "instance", "binding", "agent_seq"; `key` is its name, D-BID,
    binding id or agent id.
    """

    kind: str
    key: str
    value: dict[str, object] | None


@dataclass(frozen=True, slots=True)
class SwitchEntry:
    """One entry read back from a switch (flow statistics): its identity, what its actions
    set and where they output (("output", port) pairs among the set-fields), and its age."""

    cookie: int
    table: int
    priority: int
    match: Match
    sets: tuple[tuple[str, int | str], ...] = ()
    duration_s: float = 0.0
    packets: int = 0

    def value(self, name: str) -> int | str | None:
        """What the entry's actions set `name` to (None if they do not)."""
        return next((v for k, v in self.sets if k == name), None)


def action_signature(fm: FlowMod) -> tuple[tuple[str, int | str], ...]:
    """The set-fields and outputs of a flow-mod, as a SwitchEntry's `sets` spells them."""
    out: list[tuple[str, int | str]] = []
    for act in fm.actions:
        if isinstance(act, SetField):
            out.append((act.field, act.value))
        elif isinstance(act, Output):
            out.append(("output", act.port))
    return tuple(out)

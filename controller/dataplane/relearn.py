"""What a switch learned itself, sent back to it: to an emptied switch as it was, and for a
lost instance's flows as they would learn it now.

Boundary: pure. The entries a `learn` flow learns (its forward entry, cookie kind 7, and its
reply entry, kind 8) and the pins a moving `bucket` learns (kind 9) live in the switch alone;
the controller only reads the forward entries and pins, every `stats_interval_s`
(dataplane/drains.py). A switch that comes back holding none of our pipeline (its tables
flushed: `ovs-vsctl del-controller` and `set-controller`, a restart of ovs-vswitchd,
`del-flows`) has lost them all:
- the next packet of each such flow is decided again from the current bucket map, which may
  name another instance (a bucket that moved, an instance draining): the connection is reset
  there;
- `learn`: the instance's replies find no reply entry and are dropped, and a client that only
  receives sends nothing that would learn it again: every held connection through the switch
  stalls (seen on a six-switch mesh in Mininet: all 50 held connections, on every instance).
So the entries of the switch's latest read go back with the rest of its repair, each forward
entry with the reply entry its flow had learned (the same key reversed, from the instance's
D-BID, rewritten to come from the D-SID), for instances that may still hold flows (`active`,
`unknown`, `draining`), with their service's timeouts; one whose flow ended meanwhile idles out
again. Entries deleted since the read (`Programmer.lost`: an instance gone, a drain deadline)
are struck from it then. A flow that began after the latest read is not known and follows the
bucket map.

The same read serves an instance lost while its `learn` flows are held (`rehomed`: it died,
was withdrawn or ejected, or a drain's deadline passed). Deleting its entries alone leaves each
flow to learn its entries again at its next packet, but a packet that hits a cached datapath
flow learns nothing until Open vSwitch's revalidators next account for it, and the pass after
the move's second table change finds no packets (docs/dataplanes.md, pitfall 14): for up to
half a second the new instance's replies found no reply entry and reached the client from its
D-BID. So each flow the latest read showed on the lost instance is given, in the same
flow-mods, the entries it would learn from the new bucket map: its forward entry to the
instance its bucket now names (replacing the old one: same match and priority) and that
instance's reply entry; its client, if it is a TCP connection's, is told it ended (`told`).
Only a flow learned since the latest read, or beyond the first REHOME_MAX, learns its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from controller.dataplane.affinity import FlowKey, moved_nudge
from controller.dataplane.modes import mode_of
from controller.dataplane.rules import PRIO_LEARNED, bucket_of
from controller.instances.catalogue import Catalogue
from controller.intents import (
    TABLE_AFFINITY,
    VIRTUAL_MAC,
    CookieKind,
    FlowMod,
    PacketOut,
    SetField,
    cookie,
    match,
)
from controller.model import Service
from controller.network.topology import HostLoc

HOLDS_FLOWS = ("active", "unknown", "draining")  # states whose flows are kept on them
KEY_FIELDS = frozenset({"eth_type", "ip_proto", "ipv4_src", "ipv4_dst", "tcp_src", "tcp_dst",
                        "udp_src", "udp_dst"})  # what rules.learn_forward's entries match
REQUIRED = frozenset({"eth_type", "ip_proto", "ipv4_src", "ipv4_dst"})  # ... always
# flows one lost instance's move gives their new entries, over every switch: about 31 us of
# the event loop a flow, computed and encoded (`.venv/bin/python bench/rehome_cost.py`,
# bench/results/rehome_cost.txt: 1,000 flows 31 ms, 10,000 flows 485 ms, CPU time); the
# rest learn their own, as before
REHOME_MAX = 1_000


@dataclass(slots=True)
class Learned:
    """One entry a switch learned by itself (read back with flow statistics)."""

    dpid: int
    kind: str  # "learned" or "pin"
    label: int
    fields: dict[str, Any]
    packets: int
    duration_s: float


def _ours(fields: dict[str, Any]) -> bool:
    """True for the exact match a learn of ours makes (not masked, no other fields)."""
    return REQUIRED <= set(fields) <= KEY_FIELDS and not any(
        isinstance(v, (tuple, list)) for v in fields.values())


def relearned(dpid: int, read: Iterable[Learned], catalogue: Catalogue,
              dbid_of: Callable[[int], str | None]) -> list[FlowMod]:
    """The learned entries and pins of `read` (switch `dpid`'s latest) as flow-mods, for
    those whose instance and service still keep them."""
    out: list[FlowMod] = []
    for e in read:
        fields: dict[str, Any] = e.fields
        dbid = dbid_of(e.label)
        inst = catalogue.instances.get(dbid) if dbid is not None else None
        svc = catalogue.service_for_dsid(str(fields.get("ipv4_dst")))
        if inst is None or svc is None or inst.service != svc.name \
                or inst.state not in HOLDS_FLOWS:
            continue
        mode = mode_of(svc)
        kind = CookieKind.LEARNED_FWD if e.kind == "learned" else CookieKind.PIN
        if not (mode.learns if kind == CookieKind.LEARNED_FWD else mode.pins_moves):
            continue
        if not _ours(fields):
            continue  # not an entry our learn makes (masked, or other fields)
        out += _entries(dpid, svc, kind, e.label, inst.dbid, fields)
    return out


def rehomed(dpid: int, read: Iterable[Learned], svc: Service, label: int,
            bucket_map: list[str | None] | None, label_of: Callable[[str], int],
            limit: int = REHOME_MAX) -> tuple[list[FlowMod], list[Learned], list[Learned]]:
    """`learn`: the entries giving each flow of `read` (switch `dpid`'s latest) learned to
    instance `label`, which is being lost, the instance its bucket names in `bucket_map` (the
    switch's new one), as its learn would there; `read` as it then stands (those flows under
    their new label, the rest of `label`'s struck); and the flows so moved, at most `limit`.
    Flows whose bucket names no instance, or still `label`, are left out."""
    out: list[FlowMod] = []
    kept: list[Learned] = []
    moved: list[Learned] = []
    for e in read:
        if e.label != label:
            kept.append(e)
        if e.label != label or e.kind != "learned" or len(moved) >= limit:
            continue
        fields = e.fields
        bucket = bucket_of(svc, fields) if _ours(fields) and str(
            fields.get("ipv4_dst")) == svc.dsid else None
        dbid = None if bucket is None or bucket_map is None or bucket >= len(bucket_map) \
            else bucket_map[bucket]
        if dbid is None or (new := label_of(dbid)) == label:
            continue
        out += _entries(dpid, svc, CookieKind.LEARNED_FWD, new, dbid, fields)
        kept.append(replace(e, label=new))
        moved.append(kept[-1])
    return out, kept, moved


def told(svc: Service, moved: Iterable[Learned], hosts: Mapping[str, HostLoc]
         ) -> list[PacketOut]:
    """What tells the clients of the TCP connections `rehomed` moved that they ended, as a
    moved `reactive` binding's client is told (affinity.moved_nudge): their answer takes the
    new entries to the new instance, whose reset reaches them through the new reply entry.
    Nothing for a group key or UDP."""
    out: list[PacketOut] = []
    for e in moved:
        key = FlowKey(svc.name, str(e.fields.get("ipv4_src")), svc.dsid, svc.ip_proto,
                      e.fields.get("tcp_src"), e.fields.get("tcp_dst"))
        out += moved_nudge(key, hosts.get(key.src))
    return out


def _entries(dpid: int, svc: Service, kind: CookieKind, label: int, dbid: str,
             fields: dict[str, Any]) -> list[FlowMod]:
    """A flow's entry of `kind` (a forward entry or a pin) to instance `label` at `dbid`, as
    its learn makes it, after the reply entry a forward entry's flow learns with it (reply
    first: the flow's replies are rewritten before its packets reach the instance)."""
    out = []
    if kind == CookieKind.LEARNED_FWD and not svc.overlay:
        out.append(_entry(dpid, svc, CookieKind.LEARNED_REV, label, _reversed(fields, dbid),
                          (SetField("ipv4_src", svc.dsid), SetField("eth_src", VIRTUAL_MAC))))
    out.append(_entry(dpid, svc, kind, label, fields, (SetField("reg0", label),)))
    return out


def _reversed(fields: dict[str, Any], dbid: str) -> dict[str, Any]:
    """The match of a flow's reply entry (rules.learn_reply) from that of its forward entry:
    the key reversed, from the instance's D-BID."""
    out = {"eth_type": fields["eth_type"], "ip_proto": fields["ip_proto"], "ipv4_src": dbid,
           "ipv4_dst": fields["ipv4_src"]}
    for l4 in ("tcp", "udp"):
        if f"{l4}_src" in fields and f"{l4}_dst" in fields:
            out[f"{l4}_src"], out[f"{l4}_dst"] = fields[f"{l4}_dst"], fields[f"{l4}_src"]
    return out


def _entry(dpid: int, svc: Service, kind: CookieKind, label: int, fields: dict[str, Any],
           actions: tuple[SetField, ...]) -> FlowMod:
    """One learned entry of `svc`, as its learn action makes it."""
    return FlowMod(dpid, TABLE_AFFINITY, PRIO_LEARNED, match(**fields), actions,
                   idle_timeout=svc.affinity.idle_timeout, hard_timeout=svc.affinity.hard_timeout,
                   cookie=cookie(kind, label))

"""What an emptied switch had learned itself, sent back to it.

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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from controller.dataplane.modes import mode_of
from controller.dataplane.programmer import Learned
from controller.dataplane.rules import PRIO_LEARNED
from controller.instances.catalogue import Catalogue
from controller.intents import (
    TABLE_AFFINITY,
    VIRTUAL_MAC,
    CookieKind,
    FlowMod,
    SetField,
    cookie,
    match,
)
from controller.model import Service

HOLDS_FLOWS = ("active", "unknown", "draining")  # states whose flows are kept on them
KEY_FIELDS = frozenset({"eth_type", "ip_proto", "ipv4_src", "ipv4_dst", "tcp_src", "tcp_dst",
                        "udp_src", "udp_dst"})  # what rules.learn_forward's entries match
REQUIRED = frozenset({"eth_type", "ip_proto", "ipv4_src", "ipv4_dst"})  # ... always


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
        if not REQUIRED <= set(fields) <= KEY_FIELDS or any(isinstance(v, (tuple, list))
                                                            for v in fields.values()):
            continue  # not an entry our learn makes (masked, or other fields)
        if kind == CookieKind.LEARNED_FWD and not svc.overlay:
            out.append(_entry(dpid, svc, CookieKind.LEARNED_REV, e.label,
                              _reversed(fields, inst.dbid),
                              (SetField("ipv4_src", svc.dsid), SetField("eth_src", VIRTUAL_MAC))))
        out.append(_entry(dpid, svc, kind, e.label, fields, (SetField("reg0", e.label),)))
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

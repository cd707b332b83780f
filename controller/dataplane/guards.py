"""SYN guards: a new TCP connection does not follow a binding to an instance that cannot take it.

Boundary: pure. Which instances' bindings carry a guard, and the guard entries themselves;
`ReactiveFlows` (reactive.py) installs them and answers the SYNs they send to the controller.

A guard is an entry one priority above a binding's forward entry that matches the same flow
with the TCP flags of a SYN without ACK and sends it to the controller. Which bindings get one
depends on their key (docs/decisions.md, "New connections and old bindings"):
- an *exact* key (one TCP connection: a `5-tuple` service's) is guarded while its instance
  takes no new flows: `draining`, `inactive`, or `active` but ejected by passive health. A
  guarded SYN is a new connection reusing the ports of a closed one: the old binding ends and
  the connection gets a fresh decision.
- a *group* key (`3-tuple`, `source`: all of a client's connections, on purpose) is guarded
  only while its instance cannot take new connections at all: `inactive` (its D-MA says it
  does not serve) or ejected (its host refuses them). A draining instance keeps its groups, as
  it always has. A guarded SYN gets an *exception*: a binding of its own exact key (the
  connection's 5-tuple) to a fresh decision, installed two priorities above the group's
  entries, while the group's binding keeps the client's open connections where they are.
  Without it, a client whose instance died behind a live D-MA (or whose host refuses) would
  retry into it for as long as its retries keep the group's entry from idling out.
"""

from __future__ import annotations

import dataclasses

from controller.dataplane.affinity import Binding, FlowKey, binding_flows
from controller.dataplane.modes import TCP_SYN_ONLY
from controller.intents import PORT_CONTROLLER, CookieKind, FlowMod, Output, cookie, match
from controller.model import Instance, Service
from controller.network.packet import IPPROTO_TCP, TCP_ACK, TCP_SYN, Packet
from controller.selection.decisions import EJECTED, seen_state

GUARDED_STATES = ("draining", "inactive", EJECTED)  # an exact key's guard
GROUP_GUARDED_STATES = ("inactive", EJECTED)  # a group key's guard


def is_exact(key: FlowKey) -> bool:
    """True for a key that names one connection (its ports), False for a group key."""
    return key.sport is not None


def exception_key(svc: Service, pkt: Packet) -> FlowKey | None:
    """The exact key of a TCP packet to a group-keyed service (None: not TCP with ports)."""
    if pkt.ip_proto != IPPROTO_TCP or pkt.l4_src is None or pkt.l4_dst is None:
        return None
    assert pkt.ip_src is not None
    return FlowKey(svc.name, pkt.ip_src, svc.dsid, IPPROTO_TCP, pkt.l4_src, pkt.l4_dst)


def opens(pkt: Packet) -> bool:
    """True for a TCP SYN without ACK: a connection being opened."""
    flags = pkt.tcp_flags
    return flags is not None and flags & (TCP_SYN | TCP_ACK) == TCP_SYN


def guard_entry(b: Binding, svc: Service, mac: str) -> FlowMod | None:
    """The entry sending a TCP SYN (no ACK) that matches binding `b`'s forward entry to the
    controller (None when the binding's flows cannot be TCP)."""
    if b.key.proto not in (None, IPPROTO_TCP) or svc.ip_proto not in (None, IPPROTO_TCP):
        return None
    fwd = binding_flows(b, svc, mac)[0]
    fields = dict(fwd.match)
    fields["ip_proto"] = IPPROTO_TCP  # (a `source` key's match names no protocol)
    return FlowMod(b.ingress, fwd.table, fwd.priority + 1,
                   match(**fields, tcp_flags=TCP_SYN_ONLY), (Output(PORT_CONTROLLER),),
                   cookie=cookie(CookieKind.SYN_GUARD, b.ident))


def unguard(fm: FlowMod) -> FlowMod:
    """The delete of a guard entry."""
    return dataclasses.replace(fm, actions=(), command="delete_strict")


class Guards:
    """The instances whose exact-key and group-key bindings are guarded."""

    def __init__(self) -> None:
        self.exact: set[str] = set()
        self.group: set[str] = set()

    def update(self, inst: Instance, ejected: set[str]) -> tuple[bool | None, bool | None]:
        """Bring `inst`'s two memberships up to its state; each kind's new value where it
        changed (None where it did not)."""
        state = seen_state(inst, ejected)
        wanted = (state in GUARDED_STATES, state in GROUP_GUARDED_STATES)
        changes: list[bool | None] = []
        for held, want in zip((self.exact, self.group), wanted, strict=True):
            if want == (inst.dbid in held):
                changes.append(None)
                continue
            if want:
                held.add(inst.dbid)
            else:
                held.discard(inst.dbid)
            changes.append(want)
        return changes[0], changes[1]

    def guarded(self, b: Binding) -> bool:
        """True when binding `b` carries a guard (its instance's, for its kind of key)."""
        return b.dbid in (self.exact if is_exact(b.key) else self.group)

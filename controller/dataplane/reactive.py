"""Reactive affinity: a new flow's first packet binds it to an instance, and the binding holds.

Boundary: the binding table and everything that changes it: a first packet to a D-SID takes
the ingress's decision and installs the binding's forward and reverse entries at the ingress
(a packet of a flow already bound gets the same instance again, never a new decision); a
forward entry that times out ends its binding; a client seen at a new switch takes its
bindings along (CATS R20); the flows of an instance that died move to a live one (the only
time affinity breaks). Which instance a new flow gets is `selection`'s answer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from controller.dataplane.affinity import (
    Binding,
    BindingTable,
    FlowKey,
    binding_flows,
    delivery,
    flow_key,
    key_of_forward,
    moved_nudge,
)
from controller.dataplane.guards import Guards, exception_key, guard_entry, is_exact, opens, unguard
from controller.dataplane.modes import service_ident
from controller.dataplane.nudges import Nudges
from controller.dataplane.overflow import DEFAULT_CAP, Overflow, capped
from controller.dataplane.reconciler import entry_key
from controller.dataplane.takeover import IDENTS_PER_S, settle, unstored
from controller.instances.operations import Operations
from controller.intents import (
    CookieKind,
    FlowMod,
    Intent,
    SwitchEntry,
    cookie,
    cookie_kind,
    delete_by_cookie,
    packet_out,
)
from controller.model import Instance, Service
from controller.network.packet import Packet
from controller.network.topology import Topology
from controller.selection.decisions import Decisions
from controller.writes import Writes

ENDING_REASONS = ("idle", "hard")  # flow-removed reasons that end a binding
# A packet of a flow whose entries were sent less than this long ago was already on its way
# to us before the switch's datapath caught up with them (Open vSwitch revalidates its cached
# datapath flows asynchronously; for TCP the SYN punt of `modes.syn_punt` avoids it, but not for
# other protocols or a resent SYN): it is delivered, not answered with the same entries again,
# which would only make the switch revalidate once more.
SETTLE_S = 1.0


class ReactiveFlows:
    """The binding table and the entries that enforce it."""

    def __init__(self, operations: Operations, topology: Topology, decisions: Decisions,
                 writes: Writes, counters: Counter[str],
                 cap: Callable[[], int] = lambda: DEFAULT_CAP) -> None:
        self.operations = operations
        self.catalogue = operations.catalogue
        self.topology = topology
        self.decisions = decisions
        self.writes = writes
        self.counters = counters
        self.bindings = BindingTable()
        self._sent: dict[int, float] = {}  # binding -> when its entries were last sent
        self.born = 1  # bindings numbered below this were made by an earlier process
        self._ended: set[int] = set()  # ... and have ended since (never adopt them again)
        self.guards = Guards()  # instances whose bindings have SYN guards (guards.py)
        self.new_by: Counter[tuple[str, int, str]] = Counter()  # (service, ingress, dbid)
        self.overflow = Overflow(cap, topology, decisions, self.catalogue, counters)
        self.nudges = Nudges()  # moved connections' clients, told when the switch caught up

    def restore(self, bindings: list[Binding], now: float | None = None) -> None:
        """Load persisted bindings of known services at start; with `now`, number new ones from
        then, so entries an earlier process left (stored or not) are never taken for ours."""
        for b in bindings:
            if b.key.service in self.catalogue.services:
                self.bindings.restore(b)
        if now is not None:
            self.bindings.number_from(int(now * IDENTS_PER_S))
        self.born = self.bindings.next_ident

    def take_over(self, stored: list[Binding], dpid: int, now: float) -> list[Binding]:
        """We now master switch `dpid` (a cluster): settle the bindings stored there with ours,
        store ours it lacks (takeover.py), number ours from `now` (docs/cluster.md)."""
        settled = settle(stored, self.bindings)
        for ident in settled.dropped:  # (stored records only: we hold none of them)
            self.writes.delete("binding", str(ident))
        for mine in settled.ended:
            self._drop(mine.ident)
        for mine, theirs in settled.moved:
            self.bindings.rebind(mine, theirs.dbid, theirs.moved_at)
        self.restore(settled.taken, now)
        again = unstored(self.bindings.at(dpid), stored)
        for b in again:
            self._write(b)
        self.counters["takeover_superseded"] += settled.superseded
        self.counters["takeover_stored_again"] += len(again)
        return settled.taken

    # --- first packets ------------------------------------------------------------------
    def demand(self, svc: Service, dpid: int, in_port: int, pkt: Packet, data: bytes,
               now: float, cookie_value: int = 0) -> list[Intent]:
        """Bind a new flow (or re-install an existing binding) and deliver its packet (sent by
        an instance's entry, `cookie_value`: a held group's SYN, rules.py `group_guards`)."""
        key = flow_key(svc, pkt)
        if key is None:
            return []
        self.counters["packet_in_dsid"] += 1
        binding = self.bindings.get(key)
        held = exact = None  # (a group key's only: the cookie is not read for a 5-tuple's)
        if not is_exact(key):
            held = (cookie_kind(cookie_value) or (None,))[0] == CookieKind.INSTANCE
            exact = exception_key(svc, pkt) if held or binding is not None else None
        if exact is not None:  # a group's: this connection's own?
            own = self.bindings.get(exact)
            if own is not None:
                binding, key = own, exact  # (an exception's packet: reinstalled below)
            elif opens(pkt) and (held or (binding is not None
                                          and binding.dbid in self.guards.group)):
                # a new connection of a client whose group's instance cannot take it: an
                # exception of its own, the group's open connections staying (guards.py)
                self.counters["new_connections_excepted"] += 1
                if capped(svc) and self.overflow.full(dpid, self.bindings.count_at(dpid)):
                    return self.overflow.serve(svc, dpid, in_port, pkt, data, now)
                return self._bind(svc, exact, dpid, in_port, data, now)
        if (binding is not None and is_exact(key) and binding.dbid in self.guards.exact
                and opens(pkt)):
            # a new connection reusing the flow of a binding to an instance that takes no new
            # flows: a fresh decision, not the old binding
            self.counters["new_connections_rebound"] += 1
            out = _delete_entries(binding, guarded=True)
            self._drop(binding.ident)
            return out + self._bind(svc, key, dpid, in_port, data, now)
        if binding is None:
            if capped(svc) and self.overflow.full(dpid, self.bindings.count_at(dpid)):
                return self.overflow.serve(svc, dpid, in_port, pkt, data, now)
            return self._bind(svc, key, dpid, in_port, data, now,
                              self.overflow.resumed(dpid, svc, pkt))
        if binding.ingress == dpid and now - self._sent.get(binding.ident, -1e9) < SETTLE_S:
            self.counters["packet_in_settling"] += 1
            return self._install(svc, binding, in_port, data, entries=False)
        self.counters["reinstalls"] += 1
        if binding.ingress != dpid:
            self.bindings.move(binding, dpid)
            self._write(binding)
        self._sent[binding.ident] = now
        return self._install(svc, binding, in_port, data)

    def _bind(self, svc: Service, key: FlowKey, dpid: int, in_port: int, data: bytes,
              now: float, resumed: str | None = None) -> list[Intent]:
        """Take the ingress's decision for a new flow and bind it (or bind it to `resumed`, the
        instance a live stateless connection was sent to: dataplane/overflow.py). At a
        D-Forwarder the decision of its D-Router applies; the binding is installed there."""
        decider = self.decisions.decider(dpid)
        self.decisions.demand_at(decider, svc, self.catalogue, now)
        dbid = resumed or self.decisions.pick(svc, decider, self.catalogue, now, key)
        if dbid is None or dbid not in self.topology.hosts:
            self.counters["dropped_no_instance"] += 1
            return []
        self.decisions.placed(svc, dbid, now)
        binding = self.bindings.add(key, dbid, dpid, now)
        self.counters["new_flows"] += 1
        self.new_by[(svc.name, dpid, dbid)] += 1
        self._write(binding)
        self._sent[binding.ident] = now
        return self._install(svc, binding, in_port, data)

    def recomputed(self, svc: Service, insts: list[Instance], went_down: list[str],
                   now: float) -> list[Intent]:
        """A service's decisions were recomputed: SYN guards, the flows of instances that just
        went down (`move`), and the overflow entries follow."""
        out = self.guard(insts) + [i for d in went_down for i in self.move(d, now)]
        return out + self.overflow.service(svc)

    def _relax(self, *dpids: int) -> list[Intent]:
        """Bindings ended at these ingresses: overflow ends where few enough are left."""
        return [i for d in dpids for i in self.overflow.relax(d, self.bindings.count_at(d))]

    def _install(self, svc: Service, binding: Binding, in_port: int, data: bytes,
                 entries: bool = True) -> list[Intent]:
        """The binding's entries (unless `entries` is False), then the packet itself
        rewritten and sent on its way."""
        host = self.topology.hosts.get(binding.dbid)
        port = self.topology.out_port(binding.ingress, binding.dbid)
        if host is None or port is None:
            self.counters["dropped_unreachable"] += 1
            return []
        out: list[Intent] = [packet_out(binding.ingress, data, delivery(host.mac, binding.dbid,
                                                                         port), in_port)]
        if not entries:
            return out
        self.counters["flows_installed"] += 2
        return [*self._entries(binding, svc, host.mac), *out]

    def _entries(self, b: Binding, svc: Service, mac: str) -> list[Intent]:
        """A binding's entries, with its SYN guard if it carries one (not only at the audit)."""
        guard = guard_entry(b, svc, mac) if self.guards.guarded(b) else None
        return [*binding_flows(b, svc, mac), *((guard,) if guard is not None else ())]

    # --- bindings ending or moving ------------------------------------------------------
    def flow_removed(self, dpid: int, cookie_value: int, reason: str) -> list[Intent]:
        """A switch removed one of our entries: a forward affinity entry that timed out ends
        its binding (deletions are our own doing and already accounted for)."""
        split = cookie_kind(cookie_value)
        if split is None or split[0] != CookieKind.AFFINITY_FWD or reason not in ENDING_REASONS:
            return []
        ident = split[1]
        reverse = delete_by_cookie(dpid, cookie(CookieKind.AFFINITY_REV, ident))
        binding = self.bindings.by_ident(ident)
        if binding is None or binding.ingress != dpid:
            return [reverse]
        self._drop(ident)
        self.counters["bindings_expired"] += 1
        return [reverse, *self._relax(dpid)]

    def follow_client(self, ip: str, dpid: int, now: float) -> list[Intent]:
        """A client seen at a new switch (it moved): its bindings move there before any reply
        can reach it unrewritten, and keep their instance (CATS R20)."""
        intents: list[Intent] = []
        for b in self.bindings.of_client(ip):
            if b.ingress == dpid:
                continue
            svc = self.catalogue.services.get(b.key.service)
            host = self.topology.hosts.get(b.dbid)
            if svc is None or host is None:
                continue
            intents += _delete_entries(b, self.guards.guarded(b))
            self.bindings.move(b, dpid)
            self._write(b)
            self._sent[b.ident] = now
            intents += self._entries(b, svc, host.mac)
            self.counters["client_moves"] += 1
        return intents + self._relax(*sorted(self.overflow.on))

    def move(self, dbid: str, now: float) -> list[Intent]:
        """Rebind every flow bound to a dead instance to a live one (the only time affinity
        breaks), a TCP client told it ended once the switch caught up (`nudges`); a flow with
        nowhere to go loses its binding and entries."""
        intents: list[Intent] = []
        for b in self.bindings.of_instance(dbid):
            svc = self.catalogue.services[b.key.service]
            intents += [delete_by_cookie(b.ingress, cookie(k, b.ident)) for k in (
                (CookieKind.AFFINITY_REV, CookieKind.SYN_GUARD) if self.guards.guarded(b)
                else (CookieKind.AFFINITY_REV,))]
            target = self.decisions.pick(svc, b.ingress, self.catalogue, now, b.key)
            host = None if target is None else self.topology.hosts.get(target)
            if target is None or host is None:
                intents.append(delete_by_cookie(b.ingress,
                                                cookie(CookieKind.AFFINITY_FWD, b.ident)))
                self._drop(b.ident)
                self.counters["bindings_dropped"] += 1
                intents += self._relax(b.ingress)
                continue
            self.bindings.rebind(b, target, now)
            self.decisions.placed(svc, target, now)
            self._write(b)
            self._sent[b.ident] = now
            intents += self._entries(b, svc, host.mac)
            self.nudges.later(moved_nudge(b.key, self.topology.hosts.get(b.key.src)), now)
            self.counters["affinity_moves"] += 1
        return intents

    def remove_service(self, svc: Service) -> list[Intent]:
        """A service is deleted (or moves to another D-SID): its D-SID entry at every switch
        and every binding of it, with its entries."""
        idents = [cookie(k, service_ident(svc)) for k in (CookieKind.SERVICE, CookieKind.DSID_ARP)]
        intents: list[Intent] = [delete_by_cookie(d, i) for d in sorted(self.topology.ports)
                                 for i in idents] + self.overflow.removed(svc)
        for b in [b for b in self.bindings.all() if b.key.service == svc.name]:
            self._drop(b.ident)
            intents += _delete_entries(b, self.guards.guarded(b))
        return intents + self._relax(*sorted(self.overflow.on))

    def forget_switch(self, dpid: int) -> None:
        """A switch (re)connected: what it holds is unknown, so the next packet of any flow
        bound there re-installs its entries at once."""
        self.overflow.forget_switch(dpid)
        self._sent = {i: t for i, t in self._sent.items()
                      if (b := self.bindings.by_ident(i)) is not None and b.ingress != dpid}

    # --- what a switch holds (dataplane/audit.py reads it back) --------------------------
    def installed_at(self, dpid: int) -> dict[int, tuple[FlowMod, FlowMod] | None]:
        """The bindings installed at `dpid`: identifier -> its (reverse, forward) entries, in
        the order they go in (no reply may overtake its rewrite), or None while its instance
        is not located (the entries cannot be built; what the switch has of them is kept)."""
        out: dict[int, tuple[FlowMod, FlowMod] | None] = {}
        for b in self.bindings.at(dpid):
            svc, host = self.catalogue.services.get(b.key.service), self.topology.hosts.get(b.dbid)
            pair = None if svc is None or host is None else binding_flows(b, svc, host.mac)
            out[b.ident] = None if pair is None else (pair[1], pair[0])
        return out

    def guard(self, insts: list[Instance]) -> list[Intent]:
        """Bindings to instances that take no new flows get SYN guards, or lose them when the
        instance takes new flows again (which, and what a guarded SYN gets: guards.py)."""
        out: list[Intent] = []
        for inst in insts:
            exact, group = self.guards.update(inst, self.decisions.ejected)
            if exact is None and group is None:
                continue
            host = self.topology.hosts.get(inst.dbid)
            svc = self.catalogue.services.get(inst.service)
            if host is None or svc is None:
                continue
            for b in self.bindings.of_instance(inst.dbid):
                on = exact if is_exact(b.key) else group
                fm = None if on is None else guard_entry(b, svc, host.mac)
                if fm is not None:
                    out.append(fm if on else unguard(fm))
        return out

    def guard_of(self, b: Binding) -> FlowMod | None:
        """The SYN guard of a binding whose instance is guarded (else None)."""
        svc = self.catalogue.services.get(b.key.service)
        host = self.topology.hosts.get(b.dbid)
        if not self.guards.guarded(b) or svc is None or host is None:
            return None
        return guard_entry(b, svc, host.mac)

    def guards_at(self, dpid: int) -> list[FlowMod]:
        """The SYN guards installed at a switch."""
        return [fm for b in self.bindings.at(dpid) if (fm := self.guard_of(b)) is not None]

    def sent_since(self, ident: int, since: float) -> bool:
        """True when the binding's entries were sent at or after `since`."""
        return self._sent.get(ident, -1e18) >= since

    def adopt(self, dpid: int, forward: SwitchEntry, now: float) -> Binding | None:
        """A forward entry an earlier process installed and did not store: rebuild its
        binding from the entry (cookie, match, rewrite); None if it is not one."""
        split = cookie_kind(forward.cookie)
        if split is None or split[0] != CookieKind.AFFINITY_FWD:
            return None
        ident = split[1]
        fields = dict(forward.match)
        svc = self.catalogue.service_for_dsid(str(fields.get("ipv4_dst")))
        dbid = forward.value("ipv4_dst")
        if (ident >= self.born or ident in self._ended or svc is None
                or not isinstance(dbid, str) or self.bindings.by_ident(ident) is not None):
            return None
        key = key_of_forward(svc, fields)
        if key is None or self.bindings.get(key) is not None:
            return None
        binding = Binding(ident, key, dbid, dpid, now - forward.duration_s)
        mac = forward.value("eth_dst")
        if entry_key(binding_flows(binding, svc, str(mac))[0]) != (
                dpid, forward.table, forward.priority, forward.match):
            return None
        self.bindings.restore(binding)
        self.counters["bindings_adopted"] += 1
        self._write(binding)
        return binding

    def retire(self, binding: Binding) -> list[Intent]:
        """A binding whose forward entry is gone from a switch that kept the rest of our
        entries: it idled out while nobody was listening. It ends, with its reverse entry."""
        self._drop(binding.ident)
        self.counters["bindings_retired"] += 1
        return (_delete_entries(binding, self.guards.guarded(binding))
                + self._relax(binding.ingress))

    def _drop(self, ident: int) -> None:
        """A binding ended: forget it, and delete its record."""
        self._end(ident)
        self.writes.delete("binding", str(ident))

    def _end(self, ident: int) -> None:
        """Forget a binding that ended."""
        self.bindings.remove(ident)
        self._sent.pop(ident, None)
        if ident < self.born:
            self._ended.add(ident)

    # --- views --------------------------------------------------------------------------
    def bound(self, dbid: str) -> int:
        """How many bindings hold this instance."""
        return self.bindings.count_of(dbid)

    def view(self) -> list[dict[str, Any]]:
        """The bindings the controller made, as rows of `/bindings`."""
        return [{**b.to_dict(), "source": "controller"} for b in self.bindings.all()]

    def _write(self, binding: Binding) -> None:
        """Queue the binding's record for the store."""
        self.writes.put("binding", str(binding.ident), binding.to_dict())


def _delete_entries(b: Binding, guarded: bool = False) -> list[Intent]:
    """Delete a binding's forward and reverse entries (and its SYN guard) at its ingress."""
    kinds = (CookieKind.AFFINITY_FWD, CookieKind.AFFINITY_REV,
             *((CookieKind.SYN_GUARD,) if guarded else ()))
    return [delete_by_cookie(b.ingress, cookie(k, b.ident)) for k in kinds]

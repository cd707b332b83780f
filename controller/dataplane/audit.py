"""Reconciliation: a switch's entries read back, compared with what it should hold, repaired.

Boundary: pure. The shell reads every entry carrying our cookie from a switch when it connects
and every `reconcile_interval_s` (flow statistics) and hands them over as `SwitchEntry` values,
with the flow-mods it sent to that switch while the read was under way (their entries are
judged at the next read). The audit runs in bounded steps (`Audit.table_steps`), between which
the shell lets other work run. This module says what the difference means:
- an entry that should be there and is not is added, in an order in which no packet can get
  ahead of what it needs: bindings' reverse entries, then their forward entries, then routes,
  services and the learn/bucket entries, and the pipeline's fixed entries (which let packets
  through table 0 at all) last;
- an entry with our cookie that should not be there is deleted, strictly and by its cookie;
  other applications' entries are never read, and entries the switch learned itself (`learn`,
  pins) are the switch's own;
- a switch holding none of our pipeline was emptied (restarted, `del-flows`): everything goes
  back, bindings too, and the entries it had learned itself as last read (dataplane/relearn.py);
- a switch that kept the pipeline but not a binding's forward entry let it idle out while we
  were not listening (its flow-removed message was lost): the binding ends, with its reverse;
- a forward entry of a binding we do not know, numbered by an earlier process (made just before
  a crash, not stored yet), is adopted as a binding;
- host routes to hosts not located yet are kept (after a restart, hosts are found again only as
  they send), and each such address is probed out of the edge port its route leaves by
  (network/unplaced.py); entries installed at connect seed the programmer (bucket maps,
  labels).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator
from typing import Any

from controller.dataplane.modes import mode_of
from controller.dataplane.programmer import Programmer
from controller.dataplane.reactive import ReactiveFlows
from controller.dataplane.reconciler import Key, entry_key
from controller.dataplane.relearn import relearned
from controller.instances.catalogue import Catalogue
from controller.intents import (
    COOKIE_MASK_ALL,
    CookieKind,
    FlowMod,
    Intent,
    SwitchEntry,
    action_signature,
    cookie_kind,
)
from controller.network.forwarding import base_flows
from controller.network.network import Network

SWITCH_OWNED = (CookieKind.LEARNED_FWD, CookieKind.LEARNED_REV, CookieKind.PIN)
AFFINITY = (CookieKind.AFFINITY_FWD, CookieKind.AFFINITY_REV)
PROGRAMMED = (CookieKind.SERVICE, CookieKind.INSTANCE, CookieKind.DECISION, CookieKind.LABEL,
              CookieKind.FAILOVER)
COMPARED = (CookieKind.HOST, *AFFINITY)  # entries whose rewrite and port are checked too
SIGNATURES_KEPT = 32_768  # actions whose signature is remembered (a host's routes share theirs)
Signature = tuple[tuple[str, int | str], ...]
AUDIT_SLICE = 500  # entries read, or wanted, compared a step (5,158 at once held the loop
# 26 ms of CPU, 60-85 ms on a loaded machine)


class Audit:
    """Turns what a switch holds into the flow-mods that make it hold what it should."""

    def __init__(self, catalogue: Catalogue, network: Network, flows: ReactiveFlows,
                 programmer: Programmer, counters: Counter[str]) -> None:
        self.catalogue = catalogue
        self.network = network
        self.forwarding = network.forwarding
        self.flows = flows
        self.programmer = programmer
        self.counters = counters
        # further entries a switch should hold (passive health's reset copies: controller/health.py)
        self.extra: Callable[[int], list[FlowMod]] = lambda dpid: []
        # ... and those of instances not located again yet, kept as host routes are (by label)
        self.unlocated: Callable[[int], bool] = lambda label: False
        # id(actions) -> (those actions, their signature): the wanted entries are mostly the
        # same objects from one audit to the next (host routes: 5,000 a switch)
        self._signatures: dict[int, tuple[tuple[Any, ...], Signature]] = {}

    def table_steps(self, dpid: int, entries: list[SwitchEntry], sent: Iterable[FlowMod],
                    requested_at: float, now: float,
                    recompute: Callable[[str, float], list[Intent]],
                    size: int | None = None) -> Iterator[list[Intent]]:
        """Reconcile switch `dpid` with what it was read to hold (`entries`; `sent`: what we
        sent it while reading), `size` (AUDIT_SLICE) entries a step: each step but the last
        yields nothing; the last yields the flow-mods, then what `recompute` gives for each
        service to program there. Between two steps the caller may run other work: the entries
        read are sorted first, then one step takes what we hold (bindings adopted and retired,
        the wanted entries), and the compare runs against that; a flow-mod sent meanwhile is
        newer than the audit's view of its entry (the shell leaves the audit's out:
        apps/apploops.py)."""
        size = size or AUDIT_SLICE
        self.counters["reconcile_runs"] += 1
        busy_keys, busy_idents = set(), set()
        for fm in sent:
            busy_keys.add(entry_key(fm))
            split = cookie_kind(fm.cookie)
            if split is not None and split[0] in AFFINITY:
                busy_idents.add(split[1])
        ours: list[tuple[CookieKind, int, SwitchEntry]] = []
        have: dict[Key, tuple[CookieKind, SwitchEntry]] = {}
        for start in range(0, len(entries), size):
            if start:
                yield []
            for e in entries[start:start + size]:
                split = cookie_kind(e.cookie)
                if split is None or split[0] in SWITCH_OWNED:
                    continue
                key = (dpid, e.table, e.priority, e.match)
                if key in busy_keys or split[1] in busy_idents:
                    continue
                ours.append((split[0], split[1], e))
                have[key] = (split[0], e)
        yield []
        # what we hold, taken in one step: the compare below runs against this view
        emptied = not any(kind == CookieKind.INFRA for kind, _, _ in ours)
        learned = self.programmer.learned.get(dpid, [])  # its latest table-2 read
        relearn = relearned(dpid, learned, self.catalogue, self.programmer.dbid_of) \
            if emptied else []
        programs: set[str] = set()
        if self.programmer.unread(dpid):  # it (re)connected: its later reads start afresh
            self.programmer.learned.pop(dpid, None)
            programs = self.programmer.adopt(
                dpid, [e for kind, _, e in ours if kind in PROGRAMMED],
                list(self.catalogue.services.values()), self._owner, now)
        intents = self._bindings(dpid, ours, emptied, busy_idents, requested_at, now)
        installed = self.flows.installed_at(dpid)  # after adoption and retirement
        wanted, placeholders = self._wanted(dpid, installed)
        for key in placeholders:  # adopted, then gone from the switch: program it again
            if key not in have and key not in busy_keys:
                scope = placeholders[key]
                self.programmer.reconciler.drop(dpid, scope, key)
                programs.add(scope.removeprefix("labels:"))
        added: list[FlowMod] = []
        keep = set(placeholders)
        for start in range(0, len(wanted), size):
            yield []
            for fm in wanted[start:start + size]:
                key = entry_key(fm)
                keep.add(key)
                if self._missing(fm, key, have, busy_keys):
                    added.append(fm)
        removed: list[Intent] = []
        unplaced: list[tuple[str, int]] = []  # routes to addresses not located: (ip, port)
        hosts = self.forwarding.topology.hosts
        for start in range(0, len(ours), size):
            yield []
            for kind, ident, e in ours[start:start + size]:
                if kind == CookieKind.HOST:  # kept (module docstring); probed if not wanted
                    if (dpid, e.table, e.priority, e.match) not in keep and (
                            found := _unplaced(e, hosts)) is not None:
                        unplaced.append(found)
                elif self._stale(dpid, kind, ident, e, keep, installed):
                    removed.append(FlowMod(dpid, e.table, e.priority, e.match,
                                           command="delete_strict", cookie=e.cookie,
                                           cookie_mask=COOKIE_MASK_ALL))
        asks = self.network.routes_unplaced(dpid, unplaced, now) if unplaced else []
        if any((cookie_kind(fm.cookie) or (None,))[0] == CookieKind.FAILOVER for fm in added):
            # an entry naming a failover group: the groups go first (add-or-modify)
            intents += self.programmer.groups.held(dpid)
        self.counters["reconcile_added"] += len(added) + len(relearn)
        self.counters["reconcile_removed"] += len(removed)
        yield intents + relearn + removed + added + [
            i for name in sorted(programs) for i in recompute(name, now)] + asks

    def _bindings(self, dpid: int, ours: list[tuple[CookieKind, int, SwitchEntry]],
                  emptied: bool, busy: set[int], requested_at: float,
                  now: float) -> list[Intent]:
        """Adopt unknown bindings found in the switch; retire known ones that idled out."""
        forward = {ident: e for kind, ident, e in ours if kind == CookieKind.AFFINITY_FWD}
        for ident, e in forward.items():
            if self.flows.bindings.by_ident(ident) is None:
                self.flows.adopt(dpid, e, now)
        out: list[Intent] = []
        if emptied:
            return out
        for binding in self.flows.bindings.at(dpid):
            ident = binding.ident
            if (ident in forward or ident in busy
                    or self.flows.sent_since(ident, requested_at)):
                continue
            out += self.flows.retire(binding)
        return out

    def _wanted(self, dpid: int, installed: dict[int, tuple[FlowMod, FlowMod] | None]
                ) -> tuple[list[FlowMod], dict[Key, str]]:
        """What the switch should hold, in the order it goes in; and the entries adopted from
        it whose content we do not know (key -> programmer scope)."""
        reverse: list[FlowMod] = []
        forward: list[FlowMod] = []
        for pair in installed.values():
            if pair is not None:
                reverse.append(pair[0])
                forward.append(pair[1])
        rest = (self.flows.guards_at(dpid) + self.flows.overflow.at(dpid)
                + self.forwarding.installed_routes(dpid) + self.extra(dpid))
        for svc in self.catalogue.services.values():  # (a mode's punts may be deletions)
            rest += [fm for fm in mode_of(svc).punts(dpid, svc) if fm.command == "add"]
        placeholders: dict[Key, str] = {}
        for key, (scope, fm) in self.programmer.reconciler.held(dpid).items():
            if fm.command == "adopted":
                placeholders[key] = scope
            else:
                rest.append(fm)
        return reverse + forward + rest + base_flows(dpid), placeholders

    def _missing(self, fm: FlowMod, key: Key, have: dict[Key, tuple[CookieKind, SwitchEntry]],
                 busy: set[Key]) -> bool:
        """True when the switch lacks `fm` (its `key`), or holds it with another rewrite or
        port."""
        if key in busy:
            return False
        found = have.get(key)
        if found is None:
            return True
        kind, e = found
        return kind in COMPARED and e.sets != self._signature(fm)

    def _signature(self, fm: FlowMod) -> Signature:
        """`action_signature(fm)`, remembered for the very actions tuple it was made of."""
        held = self._signatures.get(id(fm.actions))
        if held is not None and held[0] is fm.actions:
            return held[1]
        if len(self._signatures) >= SIGNATURES_KEPT:
            self._signatures.clear()
        sig = action_signature(fm)
        self._signatures[id(fm.actions)] = (fm.actions, sig)
        return sig

    def _stale(self, dpid: int, kind: CookieKind, ident: int, e: SwitchEntry, keep: set[Key],
               installed: dict[int, tuple[FlowMod, FlowMod] | None]) -> bool:
        """True when an entry of ours found in the switch should not be there (host routes
        are kept: module docstring)."""
        if kind == CookieKind.HEALTH and self.unlocated(ident):
            return False  # (the same for its instance's reset copies)
        if kind in AFFINITY:
            return ident not in installed
        return (dpid, e.table, e.priority, e.match) not in keep

    def _owner(self, dbid: str) -> str | None:
        """The service an instance belongs to."""
        inst = self.catalogue.instances.get(dbid)
        return None if inst is None else inst.service


def _unplaced(e: SwitchEntry, hosts: Container[str]) -> tuple[str, int] | None:
    """(address, port) of a host route read back whose address is not located, else None."""
    ip = next((v for k, v in e.match if k == "ipv4_dst"), None)
    port = e.value("output")
    if isinstance(ip, str) and ip not in hosts and isinstance(port, int):
        return ip, port
    return None


def joined(steps: Iterable[list[Intent]]) -> list[Intent]:
    """Every step's intents, in order: the whole repair at once (`Audit.table_steps`)."""
    return [i for step in steps for i in step]

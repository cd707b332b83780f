"""Keeps every switch's `learn`/`bucket`/overlay entries in step with decisions and locations.

Boundary: pure. The core calls `program()` after it recomputed a service's decisions (and
after topology changes); this module turns each ingress's decision shares into a bucket map
(moving as few buckets as possible), starts and ends the pinning phase of moving buckets in
`bucket` mode, allocates instance labels, and hands the desired entries to the reconciler.
It also keeps what the switches report of their learned entries, for `/bindings`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controller.dataplane.buckets import remap
from controller.dataplane.conntrack import conntrack_entries
from controller.dataplane.failover import Backup, FailoverGroups, backups, entries_at, groups_at
from controller.dataplane.guards import GROUP_GUARDED_STATES
from controller.dataplane.labels import Labels
from controller.dataplane.modes import mode_of, service_ident
from controller.dataplane.nudges import Nudges
from controller.dataplane.reconciler import Reconciler
from controller.dataplane.relearn import REHOME_MAX, Learned, rehomed, told
from controller.dataplane.rules import (
    PRIO_BUCKET,
    SYN_DELAY_S,
    Program,
    Target,
    label_routes,
    service_entries,
)
from controller.intents import (
    TABLE_AFFINITY,
    CookieKind,
    CtFlush,
    FlowMod,
    Intent,
    SwitchEntry,
    cookie,
    cookie_kind,
)
from controller.model import Instance, Service
from controller.network.topology import Topology
from controller.selection.decisions import seen_state
from controller.selection.engine import Engine

PIN_MARGIN_S = 1.0
HOLD_MAX_S = 30.0  # an adopted bucket map waits at most this long for its instances to be found
MOVABLE_STATES = ("active", "unknown", "draining")  # a moving bucket's flows are pinned to
#                                                     these; a dead instance's move at once


@dataclass(slots=True)
class Move:
    """A bucket being moved: its flows are pinned to `old` until `until`; new TCP connections
    go to `new` from `syn_at` (`syn_on` once they do)."""

    old: str
    new: str
    until: float
    syn_at: float
    syn_on: bool = False


@dataclass(slots=True)
class Found:
    """What a switch was found holding for a service at connect: the label of each bucket of
    its decision table, every label its entries name, and when."""

    buckets: list[int | None]
    labels: set[int]
    since: float


class Programmer:
    """Bucket maps, pins in progress, labels, and the reconciler for learn/bucket services."""

    def __init__(self, topology: Topology, engine: Engine,
                 decider_of: Callable[[int], int], group_prefix: int, nudges: Nudges) -> None:
        self.topology = topology
        self.nudges = nudges  # moved TCP connections' clients, told they ended (`lost`)
        self.engine = engine
        self.decider_of = decider_of  # switch -> the switch whose decision applies there
        self.group_prefix = group_prefix  # [dataplane] group_id_prefix (dataplane/failover.py)
        self.reconciler = Reconciler()
        self.groups = FailoverGroups()  # fast-failover groups of `failover` services
        self.labels = Labels()
        self._maps: dict[tuple[int, str], list[str | None]] = {}
        self._moves: dict[tuple[int, str], dict[int, Move]] = {}
        self.learned: dict[int, list[Learned]] = {}
        self.moves_started = 0
        self.learned_moves = 0  # `learn` flows moved with their instance's loss (`lost`)
        self.ejected: set[str] = set()  # passive health's: their buckets' SYNs move at once
        self._unread: set[int] = set()  # switches whose table is being read: not programmed yet
        # (switch, service) -> (instances its adopted entries name, since when): kept as found
        # until its decision and those instances are known (a restart must not move flows)
        self._held: dict[tuple[int, str], Found] = {}
        # (switch, failover scope) -> when its entries were adopted: kept as found until the
        # service's instances are located again (at most HOLD_MAX_S), as bucket maps are
        self._held_failover: dict[tuple[int, str], float] = {}

    def label(self, dbid: str) -> int:
        """The instance's label (reg0 value, MPLS label, cookie identifier)."""
        return self.labels.of(dbid)

    def dbid_of(self, label: int) -> str | None:
        """The instance a label stands for."""
        return self.labels.dbid_of(label)

    def program(self, svc: Service, insts: list[Instance], now: float,
                fallback: Callable[[int, Service], FlowMod]) -> list[Intent]:
        """Entries of `svc` at every switch; `fallback(dpid, svc)` is the entry for a switch
        without a decision (the first packet goes to the controller, as in `reactive`)."""
        out: list[Intent] = []
        targets = self._targets(insts)
        states = {i.dbid: i.state for i in insts}
        mode = mode_of(svc)
        found = backups(svc, insts, self.topology, self.label, self.ejected)
        guarded = tuple(self.label(i.dbid) for i in insts if i.dbid in self.topology.hosts
                        and seen_state(i, self.ejected) in GROUP_GUARDED_STATES)
        for dpid in sorted(self.topology.ports):
            if dpid in self._unread or self._holding(dpid, svc.name, states, now):
                continue
            if not mode.switch_decides:
                desired: list[FlowMod] = []
            else:
                buckets = self._buckets(svc, dpid, states, now)
                moving = self._moves.get((dpid, svc.name), {})
                for m in moving.values():
                    m.syn_on = now >= m.syn_at
                entries = conntrack_entries if mode.tracks else service_entries
                desired = [fallback(dpid, svc)] if buckets is None else entries(Program(
                    svc, dpid, targets, buckets,
                    tuple((b, self.label(m.old), self.label(m.new), m.syn_on) for b, m in
                          sorted(moving.items())), guarded))
            out += self.reconciler.apply(dpid, svc.name, desired)
            out += self.reconciler.apply(dpid, f"labels:{svc.name}",
                                         self._label_routes(svc, dpid, targets))
            out += self._failover(svc, dpid, found, insts, now)
        return out

    def _failover(self, svc: Service, dpid: int, found: list[Backup],
                  insts: list[Instance] | None = None, now: float = 0.0) -> list[Intent]:
        """The failover groups and entries of `svc` at `dpid` (dataplane/failover.py); those
        adopted at connect are kept until every instance that may be named is located again."""
        scope = f"failover:{svc.name}"
        since = self._held_failover.get((dpid, scope))
        if since is not None and insts is not None:
            if now - since < HOLD_MAX_S and any(i.dbid not in self.topology.hosts and
                                                i.state in MOVABLE_STATES for i in insts):
                return []
            del self._held_failover[(dpid, scope)]
        first, last = self.groups.apply(dpid, scope, groups_at(dpid, found, self.group_prefix))
        entries = entries_at(svc, dpid, found, self.group_prefix)
        return first + self.reconciler.apply(dpid, scope, entries) + last

    def _holding(self, dpid: int, name: str, states: dict[str, str], now: float) -> bool:
        """True while a switch keeps the entries it was found with for a service: until a
        decision applies there and every instance those entries name is known again (a D-MA
        re-registers an instance the store had not kept yet) and located, or gone. Then its
        bucket map is where the decision's moves start from."""
        found = self._held.get((dpid, name))
        if found is None:
            return False
        dbids = [self.dbid_of(label) for label in found.labels]
        decided = (self.decider_of(dpid), name) in self.engine.decisions
        if now - found.since < HOLD_MAX_S and (not decided or any(
                d is None or (d not in self.topology.hosts and states.get(d) in MOVABLE_STATES)
                for d in dbids)):
            return True
        del self._held[(dpid, name)]
        if found.buckets:
            self._maps[(dpid, name)] = [None if label is None else self.dbid_of(label)
                                        for label in found.buckets]
        return False

    def unread(self, dpid: int) -> bool:
        """True while the switch's table is being read at connect."""
        return dpid in self._unread

    def expect_table(self, dpid: int) -> None:
        """The switch's table is being read: program it once `adopt` has what it holds."""
        self._unread.add(dpid)

    def adopt(self, dpid: int, entries: list[SwitchEntry], services: list[Service],
              owner: Callable[[str], str | None], now: float) -> set[str]:
        """What a switch holds of learn/bucket/overlay services (read back at connect) counts
        as installed: its bucket maps are where moves start from and are kept until they can
        be decided (`_holding`). Return the services to program there now."""
        by_ident = {service_ident(svc): svc for svc in services if mode_of(svc).programmed(svc)}
        found: dict[str, Found] = {}
        for e in entries:
            split = cookie_kind(e.cookie)
            if split is None:
                continue
            kind, ident = split
            if kind == CookieKind.LABEL:
                dbid = self.dbid_of(ident)
                name = None if dbid is None else owner(dbid)
                svc = None if name is None else next(
                    (s for s in by_ident.values() if s.name == name), None)
                scope = f"labels:{name}"
            elif kind == CookieKind.FAILOVER:  # kept until the service is programmed again
                svc = by_ident.get(ident >> 16)
                if svc is not None:
                    self.reconciler.adopt(dpid, f"failover:{svc.name}", FlowMod(  # its
                        dpid, e.table, e.priority, e.match, command="adopted",  # cookie
                        cookie=e.cookie))  # names its groups (dataplane/groupaudit.py)
                    self._held_failover[(dpid, f"failover:{svc.name}")] = now
                continue
            elif kind in (CookieKind.SERVICE, CookieKind.INSTANCE, CookieKind.DECISION):
                svc = by_ident.get(ident if kind == CookieKind.SERVICE else ident >> 16)
                if svc is not None and not mode_of(svc).switch_decides:
                    continue  # a reactive service's punts: the pipeline's, not programmed
                scope = "" if svc is None else svc.name
            else:
                continue
            if svc is None:
                continue  # not ours to keep: the audit deletes it
            self.reconciler.adopt(dpid, scope, FlowMod(dpid, e.table, e.priority, e.match,
                                                       command="adopted"))
            f = found.setdefault(svc.name, Found([None] * svc.buckets, set(), now))
            label = e.value("reg0")
            if kind == CookieKind.INSTANCE:
                f.labels.add(ident & 0xFFFF)
            elif kind == CookieKind.DECISION and e.priority == PRIO_BUCKET and isinstance(
                    label, int) and (ident & 0xFFFF) < len(f.buckets):
                f.buckets[ident & 0xFFFF] = label
                f.labels.add(label)
        for name, f in found.items():
            if any(label is not None for label in f.buckets) or f.labels:
                self._held[(dpid, name)] = f
        self._unread.discard(dpid)
        return {svc.name for svc in services if mode_of(svc).programmed(svc)}

    def _targets(self, insts: list[Instance]) -> tuple[Target, ...]:
        """The located instances as rule targets."""
        hosts = self.topology.hosts
        return tuple(Target(i.dbid, self.label(i.dbid), hosts[i.dbid].mac) for i in insts
                     if i.dbid in hosts)

    def _label_routes(self, svc: Service, dpid: int,
                      targets: tuple[Target, ...]) -> list[FlowMod]:
        """Overlay: label routes at `dpid` towards every located instance."""
        if not svc.overlay:
            return []
        routes = []
        for t in targets:
            port = self.topology.out_port(dpid, t.dbid)
            host = self.topology.hosts.get(t.dbid)
            if port is not None and host is not None:
                routes.append((t, port, host.dpid == dpid))
        return label_routes(dpid, routes)

    def _buckets(self, svc: Service, dpid: int, states: dict[str, str],
                 now: float) -> tuple[int | None, ...] | None:
        """The bucket map (labels) at `dpid` from its decision; starts pins for moved buckets
        in `bucket` mode. None when there is no decision for this switch."""
        decision = self.engine.decisions.get((self.decider_of(dpid), svc.name))
        if decision is None:
            return None
        key = (dpid, svc.name)
        old = self._maps.get(key, [None] * svc.buckets)
        if len(old) != svc.buckets:
            old = [None] * svc.buckets
        new = remap(old, decision.shares)
        moves = self._moves.setdefault(key, {})
        if mode_of(svc).pins_moves:
            for b, (was, now_to) in enumerate(zip(old, new, strict=True)):
                if was is None or was == now_to or now_to is None:
                    continue
                if b in moves and moves[b].old == now_to:
                    del moves[b]  # moving back to where its pinned flows are: done
                elif b in moves:  # already moving: keep the old instance and the deadline
                    moves[b].new = now_to
                elif states.get(was) in MOVABLE_STATES:
                    moves[b] = Move(was, now_to, now + svc.affinity.idle_timeout + PIN_MARGIN_S,
                                    now + (0.0 if was in self.ejected else SYN_DELAY_S))
                    self.moves_started += 1
        for b in [b for b, m in moves.items() if states.get(m.old) not in MOVABLE_STATES]:
            del moves[b]  # its old instance died: nothing left to keep
        self._maps[key] = new
        return tuple(None if d is None else self.label(d) for d in new)

    def expire(self, now: float) -> set[str]:
        """End the pinning phases whose time is up and start sending new TCP connections of
        moving buckets to their new instance when it is time; return the services to
        re-program."""
        done = set()
        for (_, name), moves in self._moves.items():
            for b in [b for b, m in moves.items() if now >= m.until]:
                del moves[b]
                done.add(name)
            if any(not m.syn_on and now >= m.syn_at for m in moves.values()):
                done.add(name)
        return done

    def moving_from(self, dbid: str) -> bool:
        """True while a bucket moving away from `dbid` still pins the flows it sees to it."""
        return any(m.old == dbid for moves in self._moves.values() for m in moves.values())

    def release(self, dbid: str) -> set[str]:
        """End every move away from `dbid` now (its drain deadline passed); return the
        services to program again (dataplane/drains.py)."""
        done = set()
        for (_, name), moves in self._moves.items():
            for b in [b for b, m in moves.items() if m.old == dbid]:
                del moves[b]
                done.add(name)
        return done

    def lost(self, dbid: str, svc: Service | None, now: float) -> list[Intent]:
        """An instance died or left: drop the flows the switches learned for it, and (its
        service `svc` on `conntrack`) the connections their trackers hold for it; they are
        decided again from the buckets, which no longer point to it (`learn`: those the latest
        read shows get their new entries at once, relearn.rehomed, and a moved TCP client is
        told, as a `reactive` one). A `reactive` service's instance has nothing learned."""
        label = self.labels.get(dbid)
        if label is None or (svc is not None and not mode_of(svc).switch_decides):
            return []
        out: list[Intent] = []
        first = self.learned_moves
        for dpid, read in self.learned.items():
            if svc is None or not mode_of(svc).learns:
                self.learned[dpid] = [e for e in read if e.label != label]
                continue
            entries, self.learned[dpid], moved = rehomed(dpid, read, svc, label, self._maps.get(
                (dpid, svc.name)), self.label, REHOME_MAX - (self.learned_moves - first))
            self.nudges.later(told(svc, moved, self.topology.hosts), now)
            out.extend(entries)
            self.learned_moves += len(moved)
        for dpid in sorted(self.topology.ports):
            for kind in (CookieKind.LEARNED_FWD, CookieKind.LEARNED_REV, CookieKind.PIN):
                out.append(FlowMod(dpid, TABLE_AFFINITY, 0, (), command="delete",
                                   cookie=cookie(kind, label), cookie_mask=(1 << 64) - 1))
            if svc is not None and mode_of(svc).tracks and not svc.overlay:  # overlay:
                # the reply source is the D-SID; table 4 re-decides (dataplane/conntrack.py)
                out.append(CtFlush(dpid, svc.ct_zone, svc.ip_proto or 6, dbid, svc.port or 0))
        return out

    def remove(self, svc: Service, dbids: list[str]) -> list[Intent]:
        """A service is gone: its entries everywhere, and what the switches learned for it."""
        out: list[Intent] = []
        for dpid in sorted(self.topology.ports):
            out += self.reconciler.apply(dpid, svc.name, [])
            out += self.reconciler.apply(dpid, f"labels:{svc.name}", [])
            out += self._failover(svc, dpid, [])
        for key in [k for k in self._maps if k[1] == svc.name]:
            del self._maps[key]
            self._moves.pop(key, None)
        for dbid in dbids:
            out += self.lost(dbid, svc, 0.0)  # (its bucket maps gone: nothing is moved)
        return out

    def forget_switch(self, dpid: int) -> None:
        """A switch (re)connected: send it everything again (or, if its table is read,
        what it lacks: `expect_table`, `adopt`)."""
        self.reconciler.forget_switch(dpid)
        self.groups.forget_switch(dpid)  # (what it learned is kept for its first audit)
        self._unread.discard(dpid)
        for key in [k for k in self._held if k[0] == dpid]:
            del self._held[key]
        for fkey in [k for k in self._held_failover if k[0] == dpid]:
            del self._held_failover[fkey]

    def report_learned(self, dpid: int, rows: list[tuple[int, dict[str, Any], int, float]]
                       ) -> None:
        """Flow statistics of table 2 (cookie, match fields, packets, duration)."""
        kept = []
        for ck, fields, packets, duration in rows:
            split = cookie_kind(ck)
            if split is None or split[0] not in (CookieKind.LEARNED_FWD, CookieKind.PIN):
                continue
            kind = "learned" if split[0] == CookieKind.LEARNED_FWD else "pin"
            kept.append(Learned(dpid, kind, split[1], fields, packets, duration))
        self.learned[dpid] = kept

    def bindings_view(self, dsid_to_service: Callable[[str], str | None]) -> list[dict[str, Any]]:
        """Learned entries and pins as rows of `/bindings`."""
        rows = []
        for dpid, entries in sorted(self.learned.items()):
            for e in entries:
                service = dsid_to_service(str(e.fields.get("ipv4_dst", "")))
                if service is None:
                    continue
                sport = e.fields.get("tcp_src", e.fields.get("udp_src"))
                dport = e.fields.get("tcp_dst", e.fields.get("udp_dst"))
                rows.append({"id": None, "service": service, "source": "switch",
                             "kind": e.kind, "ingress": dpid, "dbid": self.dbid_of(e.label),
                             "flow": {"src": e.fields.get("ipv4_src"),
                                      "dsid": e.fields.get("ipv4_dst"),
                                      "proto": e.fields.get("ip_proto"), "sport": sport,
                                      "dport": dport},
                             "packets": e.packets, "duration_s": e.duration_s})
        return rows

    def switches_to_poll(self) -> list[int]:
        """Switches holding learn/bucket entries (their table 2 is read back)."""
        return sorted({d for d in self.topology.ports if self.reconciler.scopes(d)})

"""The network as the controller sees it: switches, links, host attachment points, paths.

Links come from LLDP (`link_seen`) and leave on port-down, switch-leave or timeout; hosts are
learned where their packets enter the network at a port that is not a link. Paths are shortest
paths over an undirected graph whose edge weight is the link's cost in ms, one tree per
destination switch, cached. The graph changes edge by edge (a link's cost is updated in place)
and a change drops only the trees it can affect: a dearer or removed edge the trees that use it,
a cheaper or new edge the trees where it gives a way at most as long as the known one. Among
paths of equal cost the one through the lowest switch numbers is taken, so a tree does not
depend on the order in which links were learned.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controller.network.paths import (
    Deferred,
    Tree,
    dijkstra,
    repair_cheaper,
    repair_dearer,
    shortcut,
)

REPAIR_MAX = 4  # edge changes at once up to which cached trees are repaired, not recomputed
RELOCATIONS = 256  # locked addresses' moves kept for the log between two of its reads
Relocation = tuple[str, tuple[int, int] | None, tuple[int, int] | None, str]


@dataclass(frozen=True, slots=True)
class HostLoc:
    """Where an IPv4 address was seen: its MAC and the switch port it is attached to."""

    ip: str
    mac: str
    dpid: int
    port: int


@dataclass(slots=True)
class _Link:
    """One direction of a link, as evidenced by an LLDP frame."""

    src: tuple[int, int]
    dst: tuple[int, int]
    last_seen: float


@dataclass
class Topology:
    """Switches, links and hosts, with cached shortest paths."""

    hop_ms: float = 1.0
    ports: dict[int, set[int]] = field(default_factory=dict)
    hosts: dict[str, HostLoc] = field(default_factory=dict)
    link_cost_ms: dict[frozenset[int], float] = field(default_factory=dict)
    _links: dict[tuple[int, int], _Link] = field(default_factory=dict)
    _adj: dict[int, dict[int, float]] = field(default_factory=dict)  # switch -> next -> cost
    _ports_of: dict[tuple[int, int], dict[int, int]] = field(default_factory=dict)  # (lo, hi)
    trees: dict[int, Tree] = field(default_factory=dict)  # cached, towards each switch
    deferred: Deferred = field(default_factory=Deferred)  # `set_costs(..., defer=True)`'s
    _free: set[tuple[int, int]] = field(default_factory=set)  # edges that cost nothing
    _link_ports: set[tuple[int, int]] = field(default_factory=set)
    _near: dict[int, dict[int, int]] = field(default_factory=dict)  # `ports_at`, cached
    _near_for: int = -1  # the ports version `_near` is for
    version: int = 0
    switches_version: int = 0  # counted up whenever a switch comes or goes
    ports_version: int = 0  # counted up whenever an edge comes, goes or changes its ports
    relinked: int = 0  # counted up whenever an edge that stays changes its ports
    # a locked address (a registered instance's D-BID) is not moved by packets from another
    # port unless let move once (its agent re-registered): see instances/liveness.py
    locked: Callable[[str], bool] = lambda ip: False
    _may_move: set[str] = field(default_factory=set)
    moves_refused: int = 0
    # where locked addresses were found, moved or lost, for the shell to log: (address, its
    # (switch, port) before or None, after or None, why); at most RELOCATIONS kept
    relocations: deque[Relocation] = field(default_factory=lambda: deque(maxlen=RELOCATIONS))

    # --- switches and ports -------------------------------------------------------------
    def switch_up(self, dpid: int, ports: set[int]) -> None:
        """Record a switch and its usable ports."""
        self.switches_version += dpid not in self.ports
        self.ports[dpid] = set(ports)
        self._adj.setdefault(dpid, {})
        self.trees.pop(dpid, None)
        self.version += 1

    def switch_down(self, dpid: int) -> list[HostLoc]:
        """Forget a switch, its links and its hosts; return the hosts that were lost."""
        self.repair_some()
        self.switches_version += self.ports.pop(dpid, None) is not None
        for key in [k for k, link in self._links.items() if dpid in (k[0], link.dst[0])]:
            del self._links[key]
        lost = [h for h in self.hosts.values() if h.dpid == dpid]
        for h in lost:
            del self.hosts[h.ip]
            self._relocated(h, None, "its switch is gone")
        self._rebuild()
        for other in self._adj.pop(dpid, {}):
            self._adj[other].pop(dpid, None)
        self.trees.pop(dpid, None)
        return lost

    def port_up(self, dpid: int, port: int) -> None:
        """Mark a port usable."""
        self.switches_version += dpid not in self.ports
        self.ports.setdefault(dpid, set()).add(port)

    def port_down(self, dpid: int, port: int) -> tuple[bool, list[HostLoc]]:
        """Mark a port down; return (a link was lost, hosts lost at that port)."""
        self.ports.get(dpid, set()).discard(port)
        dead = [k for k, link in self._links.items() if (dpid, port) in (k, link.dst)]
        for key in dead:
            del self._links[key]
        lost = [h for h in self.hosts.values() if (h.dpid, h.port) == (dpid, port)]
        for h in lost:
            del self.hosts[h.ip]
            self._relocated(h, None, "its port went down")
        if dead:
            self._rebuild()
        return bool(dead), lost

    # --- links --------------------------------------------------------------------------
    def link_seen(self, src: tuple[int, int], dst: tuple[int, int], now: float) -> bool:
        """Record LLDP evidence of a link src -> dst; return True when the link is new."""
        if src[0] not in self.ports or dst[0] not in self.ports or src[0] == dst[0]:
            return False
        known = self._links.get(src)
        if known is not None and known.dst == dst:
            known.last_seen = now
            return False
        self._links[src] = _Link(src, dst, now)
        for h in [h for h in self.hosts.values() if (h.dpid, h.port) in (src, dst)]:
            del self.hosts[h.ip]  # learned on what turned out to be a link port
            self._relocated(h, None, "learned at what turned out to be a link port")
        ports = {src[0]: src[1], dst[0]: dst[1]}
        key = (src[0], dst[0]) if src[0] < dst[0] else (dst[0], src[0])
        if known is not None or self._ports_of.get(key, ports) != ports:
            self._rebuild()  # a port now leads elsewhere, or a parallel link
        elif key not in self._ports_of:  # a new edge (else: the other direction of one)
            cost = self.link_cost_ms.get(frozenset(key), self.hop_ms)
            self._set_edge(src[0], dst[0], cost, ports)
        self._link_ports |= {src, dst}
        return True

    def expire_links(self, now: float, timeout: float, keep: set[int] | None = None) -> bool:
        """Drop link directions not seen for `timeout` seconds, except those of switches in
        `keep` (no LLDP can cross them now); return True if any went."""
        keep = keep or set()
        dead = [k for k, link in self._links.items() if now - link.last_seen > timeout
                and k[0] not in keep and link.dst[0] not in keep]
        for key in dead:
            del self._links[key]
        if dead:
            self._rebuild()
        return bool(dead)

    def touch_links(self, dpid: int, now: float) -> None:
        """Count the links of a switch as seen now (its control channel is back)."""
        for key, link in self._links.items():
            if dpid in (key[0], link.dst[0]):
                link.last_seen = max(link.last_seen, now)

    def is_link_port(self, dpid: int, port: int) -> bool:
        """True when (dpid, port) is one end of a known link."""
        return (dpid, port) in self._link_ports

    def edge_ports(self, dpid: int) -> list[int]:
        """Usable ports of a switch that are not link ends (where hosts may be)."""
        return sorted(p for p in self.ports.get(dpid, ()) if not self.is_link_port(dpid, p))

    def edge_ports_of(self, a: int, b: int) -> dict[int, int]:
        """The port at each end of the edge between switches `a` and `b`."""
        return self._ports_of[(a, b) if a < b else (b, a)]

    def ports_at(self, dpid: int) -> dict[int, int]:
        """Neighbour switch -> the port of `dpid` that leads to it (kept until an edge comes,
        goes or changes its ports: a route sync reads one per route)."""
        if self._near_for != self.ports_version:
            self._near.clear()
            self._near_for = self.ports_version
        near = self._near.get(dpid)
        if near is None:
            near = self._near[dpid] = {b: self.edge_ports_of(dpid, b)[dpid]
                                       for b in self._adj.get(dpid, ())}
        return near

    def links(self) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """Known link directions as ((src dpid, port), (dst dpid, port))."""
        return sorted((link.src, link.dst) for link in self._links.values())

    def links_at(self, dpid: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """Known link directions with an end at switch `dpid` (as `links`, both ways)."""
        return sorted((link.src, link.dst) for link in self._links.values()
                      if link.src[0] == dpid or link.dst[0] == dpid)

    def known_ways(self, directions: set[tuple[tuple[int, int], tuple[int, int]]]
                   ) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """Both known directions of each link of `directions` (as `links_at`: none of a link
        no longer known)."""
        out = set()
        for src, dst in directions:
            for a, b in ((src, dst), (dst, src)):
                link = self._links.get(a)
                if link is not None and link.dst == b:
                    out.add((a, b))
        return sorted(out)

    def set_costs(self, costs: dict[frozenset[int], float], defer: bool = False) -> None:
        """Replace every link's cost (ms); only the edges whose cost changed change (the
        graph is otherwise in step with the links already). `defer`: the last edge's tree
        repairs are queued in `deferred` (run them with `repair_some`); until then those
        trees are the paths before it."""
        old, self.link_cost_ms = self.link_cost_ms, dict(costs)
        moved = []
        for key in old.keys() | costs.keys():
            if old.get(key) != costs.get(key) and len(key) == 2:
                a, b = sorted(key)
                if (a, b) in self._ports_of:
                    moved.append((a, b))
        for k, (a, b) in enumerate(sorted(moved)):
            self._set_edge(a, b, costs.get(frozenset((a, b)), self.hop_ms),
                           self._ports_of[(a, b)], len(moved) <= REPAIR_MAX,
                           defer and k == len(moved) - 1)

    def repair_some(self, limit: int | None = None) -> bool:
        """Carry out up to `limit` of the deferred tree repairs (all: None); True while some
        are left."""
        return self.deferred.run(self.trees, limit)

    # --- hosts --------------------------------------------------------------------------
    def learn_host(self, ip: str, mac: str, dpid: int, port: int) -> bool:
        """Record where `ip` lives; return True if that is new or moved."""
        if (dpid, port) in self._link_ports or dpid not in self.ports:  # (is_link_port)
            return False
        old = self.hosts.get(ip)
        if (old is not None and old.port == port and old.dpid == dpid and old.mac == mac
                and old.ip == ip):  # (as old == HostLoc(...), without making one: every
            #                            packet-in from a known host asks)
            self._may_move.discard(ip)  # seen where it was: the one move is used up
            return False
        loc = HostLoc(ip, mac, dpid, port)
        if (old is not None and (old.dpid, old.port) != (dpid, port) and self.locked(ip)
                and ip not in self._may_move):
            self.moves_refused += 1  # forged ARP or spoofed source: the instance stays put
            return False
        self._relocated(old, loc, "first seen" if old is None else "seen at another port"
                        if ip not in self._may_move else "registered again, seen elsewhere")
        self._may_move.discard(ip)
        self.hosts[ip] = loc
        return True

    def let_move(self, ip: str) -> None:
        """Let a locked address be learned at a new place once (its agent re-registered)."""
        self._may_move.add(ip)

    def _relocated(self, old: HostLoc | None, new: HostLoc | None, why: str) -> None:
        """Note a locked address's new place (None: lost) for the log."""
        loc = new or old
        if loc is not None and self.locked(loc.ip):
            self.relocations.append((loc.ip, None if old is None else (old.dpid, old.port),
                                     None if new is None else (new.dpid, new.port), why))

    # --- paths --------------------------------------------------------------------------
    def forget_paths(self) -> None:
        """Drop every cached shortest-path tree (each is recomputed when next asked for)."""
        self.trees.clear()
        self.deferred.clear()
        self.version += 1

    def _rebuild(self) -> None:
        """Bring the graph in step with the link directions and costs, edge by edge: only the
        shortest-path trees an edge's change can affect are repaired (a few changes) or
        dropped (many)."""
        wanted: dict[tuple[int, int], tuple[float, dict[int, int]]] = {}
        for link in self._links.values():
            a, b = link.src[0], link.dst[0]
            key = (a, b) if a < b else (b, a)
            wanted[key] = (self.link_cost_ms.get(frozenset(key), self.hop_ms),
                           {a: link.src[1], b: link.dst[1]})
        gone = [k for k in self._ports_of if k not in wanted]
        moved = [k for k, (cost, _) in wanted.items() if self._adj.get(k[0], {}).get(k[1]) != cost]
        repair = len(gone) + len(moved) <= REPAIR_MAX
        for key in gone:
            self._remove_edge(*key, repair)
        for (a, b), (cost, ports) in wanted.items():
            self._set_edge(a, b, cost, ports, repair)
        self._link_ports = {link.src for link in self._links.values()}
        self._link_ports |= {link.dst for link in self._links.values()}

    def _set_edge(self, a: int, b: int, cost: float, ports: dict[int, int],
                  repair: bool = True, defer: bool = False) -> None:
        """Add the edge a-b or change its cost; repair (`defer`: queue) or drop the trees."""
        self.repair_some()  # (a queued repair is made against the graph as it is now)
        key = (a, b) if a < b else (b, a)
        was = self._ports_of.get(key)
        if was != ports:
            self._ports_of[key] = ports
            self.ports_version += 1
            self.relinked += was is not None
        old = self._adj.setdefault(a, {}).get(b)
        if old == cost:
            return
        self._adj[a][b] = cost
        self._adj.setdefault(b, {})[a] = cost
        self.version += 1
        self._free.discard((a, b) if a < b else (b, a))
        if cost <= 0:
            self._free.add((a, b) if a < b else (b, a))
        if old is not None and cost > old:  # dearer: matters only where the edge is used
            self._fix(lambda t: t.uses(a, b),
                      lambda t: repair_dearer(self._adj, t, a, b), repair, defer)
        else:  # new or cheaper: matters only where it gives a shorter (or equal) way
            self._fix(lambda t: shortcut(t, a, b, cost),
                      lambda t: repair_cheaper(self._adj, t, a, b), repair, defer)

    def _remove_edge(self, a: int, b: int, repair: bool = True) -> None:
        """Remove the edge a-b; repair or drop the trees that used it."""
        self.repair_some()
        del self._ports_of[(a, b) if a < b else (b, a)]
        self.ports_version += 1
        self._free.discard((a, b) if a < b else (b, a))
        self._adj[a].pop(b, None)
        self._adj[b].pop(a, None)
        self.version += 1
        self._fix(lambda t: t.uses(a, b), lambda t: repair_dearer(self._adj, t, a, b), repair)

    def _fix(self, affected: Callable[[Tree], bool], repaired: Callable[[Tree], None],
             repair: bool, defer: bool = False) -> None:
        """Repair (`defer`: queue) the cached trees for which `affected` holds, or forget them
        (many changes at once, or an edge that costs nothing: a repair's settling differs)."""
        repair = repair and not self._free
        for dst in [d for d, tree in self.trees.items() if affected(tree)]:
            if repair and defer:
                self.deferred.add(self.trees[dst], repaired)
            elif repair:
                repaired(self.trees[dst])
            else:
                del self.trees[dst]

    def tree(self, dst: int) -> Tree:
        """The shortest-path tree towards `dst` (cached until a change can affect it)."""
        cached = self.trees.get(dst)
        if cached is None:
            cached = self.trees[dst] = dijkstra(self._adj, dst)
        return cached

    def cost_ms(self, src: int, dst: int) -> float | None:
        """Path cost in ms from switch `src` to switch `dst`; None when unreachable."""
        dist = self.tree(dst).dist.get(src)
        return None if dist is None else float(dist)

    def path(self, src: int, dst: int) -> list[int] | None:
        """Switches on the shortest path from `src` to `dst`, inclusive; None if unreachable."""
        tree = self.tree(dst)
        if src not in tree.dist:
            return None
        hops = [src]
        while hops[-1] != dst:
            hops.append(tree.parent[hops[-1]])
        return hops

    def path_links(self, src: int, dst: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """The (port, port) pairs crossed on the shortest path from `src` to `dst`."""
        hops = self.path(src, dst) or []
        out = []
        for a, b in itertools.pairwise(hops):
            ports = self._ports_of[(a, b) if a < b else (b, a)]
            out.append(((a, ports[a]), (b, ports[b])))
        return out

    def out_port(self, src: int, ip: str) -> int | None:
        """The port at switch `src` that leads towards host `ip`; None if unknown/unreachable."""
        host = self.hosts.get(ip)
        if host is None:
            return None
        if host.dpid == src:
            return host.port
        nxt = self.tree(host.dpid).parent.get(src)  # the first hop is all it takes
        if nxt is None:
            return None
        return self._ports_of[(src, nxt) if src < nxt else (nxt, src)][src]

    def to_dict(self) -> dict[str, Any]:
        """Return switches, links and hosts as JSON-ready values."""
        return {
            "switches": [{"dpid": d, "ports": sorted(p)} for d, p in sorted(self.ports.items())],
            "links": [{"src": {"dpid": s[0], "port": s[1]}, "dst": {"dpid": d[0], "port": d[1]},
                       "cost_ms": self.link_cost_ms.get(frozenset((s[0], d[0])), self.hop_ms)}
                      for s, d in self.links()],
            "hosts": [{"ip": h.ip, "mac": h.mac, "dpid": h.dpid, "port": h.port}
                      for h in sorted(self.hosts.values(), key=lambda h: h.ip)],
        }


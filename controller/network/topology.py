"""The network as the controller sees it: switches, links, host attachment points, paths.

Links come from LLDP (`link_seen`) and leave on port-down, switch-leave or timeout; hosts are
learned where their packets enter the network at a port that is not a link. Paths are shortest
paths over a networkx graph whose edge weight `cost` is the link's delay estimate in ms.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import networkx as nx


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
    _graph: nx.Graph[int] = field(default_factory=lambda: nx.Graph())
    _paths: dict[int, tuple[dict[int, float], dict[int, list[int]]]] = field(default_factory=dict)
    _link_ports: set[tuple[int, int]] = field(default_factory=set)
    version: int = 0

    # --- switches and ports -------------------------------------------------------------
    def switch_up(self, dpid: int, ports: set[int]) -> None:
        """Record a switch and its usable ports."""
        self.ports[dpid] = set(ports)
        self._graph.add_node(dpid)
        self._changed()

    def switch_down(self, dpid: int) -> list[HostLoc]:
        """Forget a switch, its links and its hosts; return the hosts that were lost."""
        self.ports.pop(dpid, None)
        for key in [k for k, link in self._links.items() if dpid in (k[0], link.dst[0])]:
            del self._links[key]
        lost = [h for h in self.hosts.values() if h.dpid == dpid]
        for h in lost:
            del self.hosts[h.ip]
        self._rebuild()
        return lost

    def port_up(self, dpid: int, port: int) -> None:
        """Mark a port usable."""
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
        self._rebuild()
        return True

    def expire_links(self, now: float, timeout: float) -> bool:
        """Drop link directions not seen for `timeout` seconds; return True if any went."""
        dead = [k for k, link in self._links.items() if now - link.last_seen > timeout]
        for key in dead:
            del self._links[key]
        if dead:
            self._rebuild()
        return bool(dead)

    def is_link_port(self, dpid: int, port: int) -> bool:
        """True when (dpid, port) is one end of a known link."""
        return (dpid, port) in self._link_ports

    def edge_ports(self, dpid: int) -> list[int]:
        """Usable ports of a switch that are not link ends (where hosts may be)."""
        return sorted(p for p in self.ports.get(dpid, ()) if not self.is_link_port(dpid, p))

    def links(self) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """Known link directions as ((src dpid, port), (dst dpid, port))."""
        return sorted((link.src, link.dst) for link in self._links.values())

    def set_costs(self, costs: dict[frozenset[int], float]) -> None:
        """Replace every link's cost (ms) and recompute paths."""
        self.link_cost_ms = dict(costs)
        self._rebuild()

    # --- hosts --------------------------------------------------------------------------
    def learn_host(self, ip: str, mac: str, dpid: int, port: int) -> bool:
        """Record where `ip` lives; return True if that is new or moved."""
        if self.is_link_port(dpid, port) or dpid not in self.ports:
            return False
        loc = HostLoc(ip, mac, dpid, port)
        if self.hosts.get(ip) == loc:
            return False
        self.hosts[ip] = loc
        return True

    # --- paths --------------------------------------------------------------------------
    def _changed(self) -> None:
        """Invalidate cached paths."""
        self._paths.clear()
        self.version += 1

    def _rebuild(self) -> None:
        """Rebuild the graph from switches and link directions."""
        graph: nx.Graph[int] = nx.Graph()
        graph.add_nodes_from(self.ports)
        for link in self._links.values():
            a, b = link.src[0], link.dst[0]
            cost = self.link_cost_ms.get(frozenset((a, b)), self.hop_ms)
            graph.add_edge(a, b, cost=cost, ports={a: link.src[1], b: link.dst[1]})
        self._graph = graph
        self._link_ports = {link.src for link in self._links.values()}
        self._link_ports |= {link.dst for link in self._links.values()}
        self._changed()

    def _from(self, dst: int) -> tuple[dict[int, float], dict[int, list[int]]]:
        """Distances and paths from every switch to `dst` (graph is undirected)."""
        cached = self._paths.get(dst)
        if cached is not None:
            return cached
        dist: dict[int, float] = {}
        paths: dict[int, list[int]] = {}
        if dst in self._graph:
            found = nx.single_source_dijkstra(self._graph, dst, weight="cost")
            dist, paths = found  # type: ignore[assignment]  # dicts when no target is given
        self._paths[dst] = (dist, paths)
        return dist, paths

    def cost_ms(self, src: int, dst: int) -> float | None:
        """Path cost in ms from switch `src` to switch `dst`; None when unreachable."""
        dist = self._from(dst)[0].get(src)
        return None if dist is None else float(dist)

    def path(self, src: int, dst: int) -> list[int] | None:
        """Switches on the shortest path from `src` to `dst`, inclusive; None if unreachable."""
        reverse = self._from(dst)[1].get(src)
        return None if reverse is None else list(reversed(reverse))

    def path_links(self, src: int, dst: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """The (port, port) pairs crossed on the shortest path from `src` to `dst`."""
        hops = self.path(src, dst) or []
        out = []
        for a, b in itertools.pairwise(hops):
            ports: dict[int, int] = self._graph.edges[a, b]["ports"]
            out.append(((a, ports[a]), (b, ports[b])))
        return out

    def out_port(self, src: int, ip: str) -> int | None:
        """The port at switch `src` that leads towards host `ip`; None if unknown/unreachable."""
        host = self.hosts.get(ip)
        if host is None:
            return None
        if host.dpid == src:
            return host.port
        path = self.path(src, host.dpid)
        if path is None or len(path) < 2:
            return None
        ports: dict[int, int] = self._graph.edges[path[0], path[1]]["ports"]
        return ports[src]

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

"""Internet Topology Zoo networks (GraphML) as networkx graphs and as Mininet topologies.

    GraphML file --load_zoo()--> switches s1..sN --with_hosts()--> + hosts h1.. --> GraphTopo

        s1 ---- s2            each edge: ports {u: p, v: q}, distance_km and delay_ms
        |  \\     |            (haversine at 2e8 m/s) when both ends have coordinates
        h1  s3 -- s4 -- h4

What `load_zoo` does with the awkward parts of the Zoo, and records in graph.graph["notes"]:
- parallel links (MultiGraph files) become one link with `parallel` = their count;
- self-loops are dropped;
- if there is more than one component, only the largest is kept;
- hyperedge nodes (a shared medium drawn as a node) are kept as switches named hyperedge#ID;
- nodes without Latitude/Longitude are kept, but their links get no `delay_ms`
  (or `missing_delay_ms` if given, with `delay_estimated` = True).
Switches are numbered s1..sN (dpid 1..N) in the order of the file's node ids.

With the repo's venv (a bare file name is looked up in $DYNCAST_ZOO_DIR, by default
../shared/topologyzoo beside the repository):
    sudo .venv/bin/python /usr/bin/mn --custom topologies/zoo.py --topo zoo,Abilene.graphml \
        --switch ovs,datapath=user,protocols=OpenFlow13 --controller remote,port=6653
"""

from __future__ import annotations

import math
import os
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import networkx as nx
from mininet.log import warn
from mininet.topo import Topo

from topologies.graph import add_graph

EARTH_RADIUS_KM = 6371.0
SIGNAL_SPEED_KM_PER_MS = 200.0  # 2e8 m/s, light in fibre
HOST_PREFIX_LEN = 16
HOST_BASE = IPv4Address("10.0.0.0")
# the project's shared/ folder sits beside the repository (also in CI's fresh clone)
DEFAULT_ZOO_DIR = str(Path(__file__).resolve().parents[2] / "shared" / "topologyzoo")


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two points given in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def propagation_delay_ms(distance_km: float) -> float:
    """One-way propagation delay over `distance_km` of fibre."""
    return distance_km / SIGNAL_SPEED_KM_PER_MS


def resolve_zoo_path(name: str | Path) -> Path:
    """A path as given if it exists, else the file of that name in the Zoo directory."""
    path = Path(name)
    if path.exists():
        return path
    zoo_dir = Path(os.environ.get("DYNCAST_ZOO_DIR", DEFAULT_ZOO_DIR))
    candidate = zoo_dir / path.name
    if not candidate.suffix:
        candidate = candidate.with_suffix(".graphml")
    if not candidate.exists():
        raise FileNotFoundError(f"no GraphML file {name!r} (looked in {zoo_dir})")
    return candidate


def _node_order(raw: nx.Graph) -> list[Any]:
    """The file's node ids, numerically sorted when they are numbers."""
    def key(n: Any) -> tuple[int, Any]:
        return (0, int(n)) if str(n).isdigit() else (1, str(n))
    return sorted(raw.nodes, key=key)


def _simple_graph(raw: nx.Graph, notes: list[str]) -> nx.Graph:
    """Collapse parallel links into one (counting them) and drop self-loops."""
    g = nx.Graph()
    g.add_nodes_from(raw.nodes(data=True))
    for u, v in raw.edges():
        if u == v:
            continue
        if g.has_edge(u, v):
            g[u][v]["parallel"] += 1
        else:
            g.add_edge(u, v, parallel=1)
    loops = nx.number_of_selfloops(raw)
    if loops:
        notes.append(f"dropped {loops} self-loop(s)")
    merged = sum(d["parallel"] - 1 for _, _, d in g.edges(data=True))
    if merged:
        notes.append(f"merged {merged} parallel link(s) into their twin (attribute 'parallel')")
    return g


def _largest_component(g: nx.Graph, notes: list[str]) -> nx.Graph:
    """Keep the largest connected component, noting what was dropped."""
    components = sorted(nx.connected_components(g), key=len, reverse=True)
    if len(components) <= 1:
        return g
    dropped = [g.nodes[n].get("label", n) for c in components[1:] for n in c]
    notes.append(f"kept the largest of {len(components)} components ({len(components[0])} "
                 f"nodes); dropped {len(dropped)} node(s): {', '.join(map(str, sorted(dropped)))}")
    return g.subgraph(components[0]).copy()


def load_zoo(path: str | Path, missing_delay_ms: float | None = None) -> nx.Graph:
    """Read a Topology Zoo GraphML file into a simple graph of switches s1..sN.

    Node attributes: role='switch', dpid, label, zoo_id, and lat/lon when known.
    Edge attributes: ports, parallel, and distance_km/delay_ms when both ends have coordinates.
    """
    path = resolve_zoo_path(path)
    raw = nx.read_graphml(path)
    notes: list[str] = []
    g = _largest_component(_simple_graph(raw, notes), notes)
    out = nx.Graph(name=raw.graph.get("label", path.stem), source=str(path), notes=notes)
    names: dict[Any, str] = {}
    no_coords = []
    for dpid, zoo_id in enumerate((n for n in _node_order(raw) if n in g), start=1):
        data = g.nodes[zoo_id]
        name = names[zoo_id] = f"s{dpid}"
        label = data.get("label")
        if data.get("hyperedge"):  # a shared medium drawn as a node; such nodes have no name
            label = f"hyperedge#{zoo_id}"
        attrs: dict[str, Any] = {"role": "switch", "dpid": dpid, "zoo_id": zoo_id,
                                 "label": label or f"#{zoo_id}"}
        if "Latitude" in data and "Longitude" in data:
            attrs["lat"], attrs["lon"] = float(data["Latitude"]), float(data["Longitude"])
        else:
            no_coords.append(attrs["label"])
        out.add_node(name, **attrs)
    if no_coords:
        how = ("no delay" if missing_delay_ms is None
               else f"an estimated delay of {missing_delay_ms} ms")
        notes.append(f"{len(no_coords)} node(s) without coordinates, their links get {how}: "
                     + ", ".join(sorted(map(str, no_coords))))
    for u, v, data in g.edges(data=True):
        out.add_edge(names[u], names[v], parallel=data["parallel"],
                     **_delay_attrs(out.nodes[names[u]], out.nodes[names[v]], missing_delay_ms))
    number_ports(out)
    for note in notes:
        warn(f"*** {path.name}: {note}\n")
    return out


def _delay_attrs(a: dict[str, Any], b: dict[str, Any],
                 missing_delay_ms: float | None) -> dict[str, Any]:
    """distance_km and delay_ms of a link between nodes `a` and `b`, if they can be known."""
    if "lat" in a and "lat" in b:
        km = haversine_km(a["lat"], a["lon"], b["lat"], b["lon"])
        return {"distance_km": km, "delay_ms": propagation_delay_ms(km)}
    if missing_delay_ms is not None:
        return {"delay_ms": float(missing_delay_ms), "delay_estimated": True}
    return {}


def controller_links(graph: nx.Graph) -> str:
    """The graph's propagation delays as the controller's `[[link]]` TOML tables.

    Appending this to a configuration makes the controller cost each link by its physical
    delay (derived from the nodes' coordinates) rather than by hop count.
    """
    out = []
    for u, v, data in sorted(graph.edges(data=True), key=lambda e: (str(e[0]), str(e[1]))):
        a, b = graph.nodes[u].get("dpid"), graph.nodes[v].get("dpid")
        if a is None or b is None or data.get("delay_ms") is None:
            continue
        out.append(f"[[link]]\na = {a}\nb = {b}\ndelay_ms = {data['delay_ms']:.3f}\n")
    return "\n".join(out)


def number_ports(graph: nx.Graph) -> None:
    """Give every edge `ports` {u: p, v: q}: switches count from 1 by neighbour, hosts use 0."""
    def order(n: str) -> tuple[int, int, str]:
        d = graph.nodes[n]
        return (0 if "dpid" in d else 1, d.get("dpid", 0), n)
    for node in sorted(graph.nodes, key=order):
        switch = "dpid" in graph.nodes[node]
        for i, peer in enumerate(sorted(graph.neighbors(node), key=order), start=1):
            graph[node][peer].setdefault("ports", {})[node] = i if switch else 0


def with_hosts(graph: nx.Graph, hosts_per_switch: int = 1,
               switches: list[str] | None = None) -> nx.Graph:
    """A copy of `graph` with hosts attached to `switches` (default: every switch).

    The k-th host (k from 1) of switch sN is `hN` for k = 1 and `hNxk` after; hosts are numbered
    in order and get ip 10.0.0.0/16 + number and MAC 00:00:00 + number.
    """
    if hosts_per_switch < 0:
        raise ValueError(f"hosts_per_switch must be >= 0, got {hosts_per_switch}")
    out = graph.copy()
    chosen = sorted(switches if switches is not None else
                    [n for n, d in graph.nodes(data=True) if "dpid" in d],
                    key=lambda n: graph.nodes[n]["dpid"])
    if len(chosen) * hosts_per_switch >= 2 ** (32 - HOST_PREFIX_LEN) - 1:
        raise ValueError("too many hosts for 10.0.0.0/16")
    number = 0
    for switch in chosen:
        for k in range(1, hosts_per_switch + 1):
            number += 1
            name = f"h{switch[1:]}" + ("" if k == 1 else f"x{k}")
            ip = str(HOST_BASE + number)
            mac = "00:00:00:" + ":".join(f"{(number >> s) & 0xFF:02x}" for s in (16, 8, 0))
            out.add_node(name, role="host", ip=ip, ips=[ip], mac=mac, switch=switch)
            out.add_edge(name, switch)
    for _, _, data in out.edges(data=True):
        data.pop("ports", None)
    number_ports(out)
    return out


class GraphTopo(Topo):
    """Switches and links of a graph from `load_zoo`, with hosts from `with_hosts`."""

    def build(self, graph: nx.Graph, hosts_per_switch: int = 1,  # type: ignore[override]
              bw: float | None = None, delay: bool = False) -> None:
        """Add the graph's nodes and links; hosts are added unless the graph already has some.

        bw: every link's rate limit in Mbit/s (TCLink); delay: set each link's `delay_ms`
        (needs TCLink and the kernel's netem).
        """
        if not any(d.get("role") == "host" for _, d in graph.nodes(data=True)):
            graph = with_hosts(graph, int(hosts_per_switch))
        self.graph = graph
        add_graph(self, graph, HOST_PREFIX_LEN, bw, delay)


def zoo_topo(filename: str, hosts_per_switch: int = 1, bw: float | None = None) -> GraphTopo:
    """`mn --topo zoo,FILE[,HOSTS_PER_SWITCH[,BW]]`: a Zoo file as a Mininet topology."""
    return GraphTopo(load_zoo(filename), hosts_per_switch=int(hosts_per_switch), bw=bw)


topos = {"zoo": zoo_topo}

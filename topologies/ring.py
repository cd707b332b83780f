"""A ring of four switches: two edges one hop from the client, and a detour around the ring.

                        c1  10.0.0.1
                        | 1
          +----- 11 -- s1 -- 10 -----+
          |           dpid 1         |
          10                         11
  e3 1-- s4 dpid 4             dpid 2 s2 --1 e2
  10.0.0.31                             10.0.0.21
          11                         10
          |           dpid 3         |
          +----- 10 -- s3 -- 11 -----+

Every switch sN has its host (if any) on port 1, the link to the next switch clockwise on port
10 and the link to the previous one on port 11. e2 and e3 each run one instance of svc1 (D-SID
10.0.100.1), each one hop from c1's switch s1; when s1-s2 (or s1-s4) fails, the other way
round the ring still reaches it. `size` switches make a larger ring (e3 then sits at the last
one, still next to s1). Hosts are in 10.0.0.0/16; edge hosts carry `mgmt` N like Figure 2's
(a management link 10.254.N.0/24 to the root namespace for their D-MA).

`ring_graph()` is the description; `RingTopo` builds Mininet from it, and tests compute their
expectations (ports, paths) from the same graph. With the repo's venv:
    sudo .venv/bin/python /usr/bin/mn --custom topologies/ring.py --topo ring \
        --switch ovs,datapath=user,protocols=OpenFlow13 --controller remote,port=6653
"""

from __future__ import annotations

import networkx as nx
from mininet.topo import Topo

from topologies.graph import add_graph

RING_PREFIX_LEN = 16
RING_SERVICES = {"svc1": "10.0.100.1"}  # name -> D-SID
RING_SERVICE_PORT = 8000
HOST_PORT = 1  # a switch's port towards its host
NEXT_PORT = 10  # towards the next switch clockwise (s1 -> s2 -> ... -> s1)
PREV_PORT = 11  # towards the previous switch

# Not named SWITCHES/HOSTS: `mn --custom` copies a module's globals over its own of that name.
# (role, switch index or None for the last switch, MAC, address, D-BIDs per service, mgmt N)
RingHostRow = tuple[str, int | None, str, str, dict[str, str], int | None]
RING_HOSTS: dict[str, RingHostRow] = {
    "c1": ("client", 1, "00:00:00:00:00:01", "10.0.0.1", {}, None),
    "e2": ("edge", 2, "00:00:00:00:00:21", "10.0.0.21", {"svc1": "10.0.0.21"}, 2),
    "e3": ("edge", None, "00:00:00:00:00:31", "10.0.0.31", {"svc1": "10.0.0.31"}, 3),
}


def ring_graph(size: int = 4) -> nx.Graph:
    """The ring as data: switches s1..s<size> (dpid N) in a cycle; hosts carry role, ip, ips,
    mac, dbids, switch and mgmt; edges carry `ports` ({node: port})."""
    if not 3 <= size <= 250:
        raise ValueError(f"size must be in [3, 250], got {size}")
    g = nx.Graph(name="ring", prefixlen=RING_PREFIX_LEN, services=dict(RING_SERVICES),
                 service_port=RING_SERVICE_PORT)
    for n in range(1, size + 1):
        g.add_node(f"s{n}", role="switch", dpid=n)
    for n in range(1, size + 1):
        nxt = n % size + 1
        g.add_edge(f"s{n}", f"s{nxt}", ports={f"s{n}": NEXT_PORT, f"s{nxt}": PREV_PORT})
    for name, (role, index, mac, ip, dbids, mgmt) in RING_HOSTS.items():
        switch = f"s{size if index is None else index}"
        g.add_node(name, role=role, ip=ip, ips=[ip], mac=mac, dbids=dict(dbids),
                   switch=switch, mgmt=mgmt)
        g.add_edge(name, switch, ports={name: 0, switch: HOST_PORT})
    return g


def port_towards(graph: nx.Graph, switch: str, neighbour: str) -> int:
    """The port of `switch` on its link to `neighbour`."""
    return int(graph[switch][neighbour]["ports"][switch])


class RingTopo(Topo):
    """A ring of switches s1..s<size>; client c1 at s1, edge hosts e2 at s2 and e3 at the last."""

    def build(self, size: int = 4, bw: float | None = None) -> None:  # type: ignore[override]
        """Add the switches, hosts and links of `ring_graph(size)`.

        bw: every link's rate limit in Mbit/s (needs TCLink), None for none.
        """
        add_graph(self, ring_graph(int(size)), RING_PREFIX_LEN, bw)


topos = {"ring": RingTopo}

"""Build a Mininet topology from a networkx description (the one place that does it).

Nodes with a `dpid` become switches; nodes with `ip` and `mac` become hosts; edges carry
`ports` ({node: port number}) and optionally `delay_ms` and `bw` (Mbit/s, this link's rate limit
whatever the default).
"""

from __future__ import annotations

from typing import Any

import networkx as nx
from mininet.topo import Topo


def add_graph(topo: Topo, graph: nx.Graph, prefix_len: int, bw: float | None = None,
              delay: bool = False) -> None:
    """Add the graph's switches, hosts and links to `topo`.

    bw: every link's rate limit in Mbit/s (needs TCLink), unless the edge has its own `bw`;
    delay: give each link its `delay_ms` (needs TCLink and the kernel's netem).
    """
    for name, data in graph.nodes(data=True):
        if "dpid" in data:
            topo.addSwitch(name, dpid=f"{data['dpid']:016x}")
        else:
            topo.addHost(name, ip=f"{data['ip']}/{prefix_len}", mac=data["mac"])
    for u, v, data in graph.edges(data=True):
        rate = data.get("bw", bw)
        opts: dict[str, Any] = {} if rate is None else {"bw": float(rate)}
        if delay and "delay_ms" in data:
            opts["delay"] = f"{data['delay_ms']:.3f}ms"
        topo.addLink(u, v, port1=data["ports"][u], port2=data["ports"][v], **opts)

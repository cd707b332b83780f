"""Figure 2 of draft-li-dyncast-architecture-00 (deployment example): three D-Routers, one switch.

                          c1  10.0.0.1
                          | 1
                          r1  dpid 1
                          | 10
                          | 1
  10.0.0.2  c2 --1 r2 10--2 x0 3--10 r3 1-- e3  10.0.0.31, 10.0.0.32
           dpid 2  | 2   dpid 4      dpid 3
                   |
                   e2  10.0.0.21, 10.0.0.22

r1, r2, r3 are the D-Routers (the draft has none at edge 3; here r3 is its access switch, which
the controller programs like the others), x0 the infrastructure switch. D-Router ports: the
first host is on port 1, a second one on port 2, the uplink to x0 on port 10; x0 reaches rN on
its port N.
Hosts are in 10.0.0.0/16. e2 and e3 each run one instance of svc1 (D-SID 10.0.100.1) and of
svc2 (D-SID 10.0.100.2); the second address of each edge host is added by `configure(net)` after
the network started (in the `mn` CLI: `e2 ip addr add 10.0.0.22/16 dev e2-eth0`, same for e3).
Extra clients c3, c4, ... (10.0.1.3, 10.0.1.4, ...) alternate between r1 and r2 from port 11 on.
With `third_site`, edge host e4 (10.0.0.41, a third svc1 instance, management net 4) sits on r1
port 2: the site the life-cycle tests keep inactive until the controller reactivates it.

`figure2_graph()` is the description; `Figure2Topo` builds Mininet from it, and tests compute
their expectations (paths, ports, addresses) from the same graph. With the repo's venv:
    sudo .venv/bin/python /usr/bin/mn --custom topologies/figure2.py --topo figure2 \
        --switch ovs,datapath=user,protocols=OpenFlow13 --controller remote,port=6653
"""

from __future__ import annotations

from typing import Any

import networkx as nx
from mininet.topo import Topo

from topologies.graph import add_graph

PREFIX_LEN = 16
SERVICES = {"svc1": "10.0.100.1", "svc2": "10.0.100.2"}  # name -> D-SID
SERVICE_PORT = 8000
UPLINK_PORT = 10  # D-Router port towards x0
EXTRA_CLIENT_PORT = 11  # first D-Router port used by extra clients

# Not named SWITCHES/HOSTS: `mn --custom` copies a module's globals over its own of that name.
# name -> (role, dpid) for switches
FIG2_SWITCHES = {"r1": ("d-router", 1), "r2": ("d-router", 2), "r3": ("d-router", 3),
                 "x0": ("switch", 4)}
# (role, switch, switch port, MAC, addresses, D-BIDs per service, management net N)
HostRow = tuple[str, str, int, str, tuple[str, ...], dict[str, str], int | None]
FIG2_HOSTS: dict[str, HostRow] = {
    "c1": ("client", "r1", 1, "00:00:00:00:00:01", ("10.0.0.1",), {}, None),
    "c2": ("client", "r2", 1, "00:00:00:00:00:02", ("10.0.0.2",), {}, None),
    "e2": ("edge", "r2", 2, "00:00:00:00:00:21", ("10.0.0.21", "10.0.0.22"),
           {"svc1": "10.0.0.21", "svc2": "10.0.0.22"}, 2),
    "e3": ("edge", "r3", 1, "00:00:00:00:00:31", ("10.0.0.31", "10.0.0.32"),
           {"svc1": "10.0.0.31", "svc2": "10.0.0.32"}, 3),
}


def _extra_clients(count: int) -> dict[str, HostRow]:
    """Clients c3.. alternating between r1 and r2, from port 11 on each."""
    extra = {}
    for i in range(count):
        k = i + 3
        switch = "r1" if i % 2 == 0 else "r2"
        extra[f"c{k}"] = ("client", switch, EXTRA_CLIENT_PORT + i // 2,
                          f"00:00:00:00:01:{k:02x}", (f"10.0.1.{k}",), {}, None)
    return extra


THIRD_SITE: dict[str, HostRow] = {
    "e4": ("edge", "r1", 2, "00:00:00:00:00:41", ("10.0.0.41",), {"svc1": "10.0.0.41"}, 4),
}


def figure2_graph(extra_clients: int = 0, third_site: bool = False) -> nx.Graph:
    """Figure 2 as data: nodes carry role/dpid or ip/ips/mac/dbids/mgmt; edges carry `ports`."""
    if not 0 <= extra_clients <= 250:
        raise ValueError(f"extra_clients must be in [0, 250], got {extra_clients}")
    g = nx.Graph(name="figure2", prefixlen=PREFIX_LEN, services=dict(SERVICES),
                 service_port=SERVICE_PORT)
    for name, (role, dpid) in FIG2_SWITCHES.items():
        g.add_node(name, role=role, dpid=dpid)
    for n, router in enumerate(("r1", "r2", "r3"), start=1):
        g.add_edge(router, "x0", ports={router: UPLINK_PORT, "x0": n})
    for name, (role, switch, port, mac, ips, dbids, mgmt) in {
            **FIG2_HOSTS, **(THIRD_SITE if third_site else {}),
            **_extra_clients(extra_clients)}.items():
        g.add_node(name, role=role, ip=ips[0], ips=list(ips), mac=mac, dbids=dict(dbids),
                   switch=switch, mgmt=mgmt)
        g.add_edge(name, switch, ports={name: 0, switch: port})
    return g


def hosts_of(graph: nx.Graph, role: str | None = None) -> list[str]:
    """Host names (nodes with an `ip`), optionally only those with the given role, sorted."""
    return sorted(n for n, d in graph.nodes(data=True)
                  if "ip" in d and (role is None or d["role"] == role))


class Figure2Topo(Topo):
    """Figure 2: r1, r2, r3 around x0; clients c1, c2 (and extras), edge hosts e2, e3."""

    def build(self, bw: float | None = None, extra_clients: int = 0,  # type: ignore[override]
              third_site: bool = False) -> None:
        """Add the switches, hosts and links of `figure2_graph(extra_clients, third_site)`.

        bw: every link's rate limit in Mbit/s (needs TCLink), None for none.
        """
        add_graph(self, figure2_graph(int(extra_clients), bool(third_site)), PREFIX_LEN, bw)


def configure(net: Any, graph: nx.Graph | None = None, overlay: bool = False) -> None:
    """Add each host's secondary addresses (10.0.0.22 on e2, 10.0.0.32 on e3) after start.

    overlay: also give every edge host the D-SIDs of its services on its loopback (the
    instances answer on the D-SID itself, as in the draft's overlay sub-mode), with
    arp_announce=2 so that its ARP requests name its own address, not a D-SID.
    """
    graph = figure2_graph() if graph is None else graph
    for name in hosts_of(graph):
        if name not in net:
            continue
        host = net[name]
        cmds = [f"ip addr add {ip}/{PREFIX_LEN} dev {host.defaultIntf()}"
                for ip in graph.nodes[name]["ips"][1:]]
        if overlay and graph.nodes[name]["dbids"]:
            cmds += [f"ip addr add {graph.graph['services'][svc]}/32 dev lo"
                     for svc in sorted(graph.nodes[name]["dbids"])]
            cmds += ["sysctl -qw net.ipv4.conf.all.arp_announce=2",
                     "sysctl -qw net.ipv4.conf.all.arp_ignore=1"]
        for cmd in cmds:
            out = host.cmd(cmd + " 2>&1")
            if out.strip() and "File exists" not in out:
                raise RuntimeError(f"{name}: {cmd}: {out.strip()}")


topos = {"figure2": Figure2Topo}

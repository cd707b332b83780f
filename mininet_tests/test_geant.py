"""GEANT 2012 (Topology Zoo: 40 switches, 61 links), a mesh none of the other tests use.

svc1 (`bucket`) runs at hosts on three switches far apart, clients at six others. The switches
serve the clients' flows alone, so after a controller restart nothing the clients send reaches
the controller: it must ask for them (controller/network/unplaced.py), or their routes stay as
the previous process left them. Then a transit switch on a client's way to an instance loses
all its links: held connections keep their instance with no long silence, and new connections
from every client are answered. Before the fix, in the same sequence, replies to clients went
into the dead links (held connections silent up to 28 s, new ones timing out).
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import networkx as nx
import pytest

from mininet_tests.harness import Lab
from mininet_tests.processes import wait_until
from mininet_tests.restarts import HeldConnections, damage
from mininet_tests.test_fig2 import client
from topologies.zoo import GraphTopo, load_zoo, with_hosts

DSID = "10.0.100.1"
CONFIG = """
[controller]
store_url = "sqlite:///dyncast.db"

[[service]]
name = "svc1"
dsid = "10.0.100.1"
protocol = "tcp"
port = 8000
dataplane = "bucket"
affinity = { key = "5-tuple", idle_timeout = 30, hard_timeout = 0 }
"""
PLACED_S = 15.0  # the clients placed after the restart (their ports settle 1.5 s after it)
STALL_S = 5.0  # a held connection silent longer than this counts as broken (a reroute
# here takes 0.2-2 s on a loaded machine: TCP retransmits 1-3 s later; the fault it guards
# against left them silent 7-28 s)


def geant() -> tuple[nx.Graph, list[str], list[str]]:
    """GEANT with a host at each switch: three edge hosts (svc1's instances, D-BID = the host's
    address) on switches far apart, and six client hosts spread over the rest."""
    g = with_hosts(load_zoo("Geant2012.graphml"))
    g.graph.update(services={"svc1": DSID}, prefixlen=16)
    core = switches(g)
    hops = dict(nx.all_pairs_shortest_path_length(core))
    nodes = sorted(core, key=lambda n: g.nodes[n]["dpid"])
    edges = [max(nodes, key=lambda s: sum(hops[s].values()))]
    while len(edges) < 3:
        edges.append(max((s for s in nodes if s not in edges),
                         key=lambda s: min(hops[s][e] for e in edges)))
    host_of = {d["switch"]: n for n, d in g.nodes(data=True) if d.get("role") == "host"}
    for _, d in g.nodes(data=True):
        if d.get("role") == "host":
            d["role"] = "client"
    for mgmt, s in enumerate(edges, start=2):
        h = host_of[s]
        g.nodes[h].update(role="edge", dbids={"svc1": g.nodes[h]["ip"]}, mgmt=mgmt)
    clients = [s for s in nodes if s not in edges][::6][:6]
    return g, [host_of[s] for s in edges], [host_of[s] for s in clients]


def switches(g: nx.Graph) -> nx.Graph:
    """The switch-to-switch part of the graph."""
    return g.subgraph([n for n, d in g.nodes(data=True) if "dpid" in d])


def transit(g: nx.Graph, src: str, dst: str, keep: list[str]) -> str:
    """A switch inside the shortest path from host `src` to host `dst` whose loss leaves the
    switches of `keep` (hosts) connected."""
    core = switches(g)
    at = [g.nodes[h]["switch"] for h in keep]
    for s in nx.shortest_path(core, g.nodes[src]["switch"], g.nodes[dst]["switch"])[1:-1]:
        rest = core.subgraph([n for n in core if n != s])
        if s not in at and all(nx.has_path(rest, at[0], x) for x in at[1:]):
            return s
    raise AssertionError(f"no transit switch between {src} and {dst}")


def placed(lab: Lab) -> set[str]:
    """The addresses the controller has located."""
    return {h["ip"] for h in lab.rest("GET", "/topology")[1]["hosts"]}


def undecided(lab: Lab, ingresses: set[int]) -> list[int]:
    """The ingresses (dpids) whose decision for svc1 gives no instance a share yet."""
    rows = {r["ingress"]: r["candidates"] for r in lab.rest("GET", "/decisions/svc1")[1]}
    return sorted(d for d in ingresses if not any(c["share"] > 0 for c in rows.get(d, [])))


@pytest.mark.heavy  # a 40-switch network (CI's time budget: one framework)
def test_after_a_restart_a_transit_switch_lost_breaks_no_flow_and_no_client_is_unreachable(
        lab: Lab, tmp_path: Path) -> None:
    """Held connections from two clients; the controller SIGKILLed and started again; a
    transit switch loses all its links: every held connection keeps its instance, none silent
    longer than STALL_S, and every client's new connections are answered."""
    graph, edges, clients = geant()
    lab.graph = graph
    config = tmp_path / "geant.toml"
    config.write_text(CONFIG)
    controller = lab.start_controller(config)
    lab.build_net(GraphTopo(graph), controller.ofp_port)
    lab.wait_topology(timeout=60)
    lab.fast_reconnect()
    for h in edges:
        lab.add_mgmt_link(h, graph.nodes[h]["mgmt"])
        lab.start_edge(h, capacity=60)  # (a held connection holds a worker)
    dbids = {graph.nodes[h]["ip"] for h in edges}

    def located() -> set[str]:
        return {i["dbid"] for i in lab.rest("GET", "/instances")[1]
                if i["state"] == "active" and i.get("location")}
    wait_until(lambda: located() == dbids, 30, lambda: f"located: {located()}")
    ingresses = {graph.nodes[graph.nodes[h]["switch"]]["dpid"] for h in clients}
    wait_until(lambda: not undecided(lab, ingresses), 20,
               lambda: f"no instance has a share at {undecided(lab, ingresses)}")
    for h in clients:
        seen = client(lab, h, DSID, requests=6, concurrency=2)
        assert seen["errors"] == 0 and set(seen["peers"]) == {DSID}, (h, seen)
    held = [HeldConnections(lab, h, DSID, count=10) for h in clients[:2]]
    restart_at = time.time()
    lab.stop_controller(signal.SIGKILL)
    lab.restart_controller()
    lab.wait_connected(timeout=30)
    wait_until(lambda: located() == dbids, 30, lambda: f"located: {located()}")
    # nothing a client sends reaches the controller (the switches serve their flows): each
    # is placed by its answer to the probe of its route
    want = {graph.nodes[h]["ip"] for h in clients}
    wait_until(lambda: want <= placed(lab), PLACED_S,
               lambda: f"clients not placed: {sorted(want - placed(lab))}")
    lost = transit(graph, clients[0], edges[0], clients + edges)
    down_at = time.time()
    for peer in switches(graph).neighbors(lost):
        lab.net.configLinkStatus(lost, peer, "down")
    failed = {}
    for h in clients:
        seen = client(lab, h, DSID, requests=6, concurrency=2)
        if seen["errors"]:
            failed[h] = seen
    reports = [c.stop() for c in held]
    hurt = [damage(r, STALL_S) for r in reports]
    (lab.artifacts / "geant.json").write_text(json.dumps(
        {"lost": lost, "failed": failed, "held": hurt, "restart_at": restart_at,
         "down_at": down_at, "gaps": [sorted((c["max_gap_s"], c["max_gap_end"])
                                            for c in r["connections"])[-3:] for r in reports],
         "stats": lab.rest("GET", "/stats")[1]}, indent=1) + "\n")
    assert not failed, f"after {lost} went: {failed}"
    assert all(d["broken"] == 0 and d["moved"] == 0 for d in hurt), hurt

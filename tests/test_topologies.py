"""Topology descriptions: Figure 2 as in the contract, and Topology Zoo files as graphs."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest

from topologies.figure2 import figure2_graph, hosts_of
from topologies.zoo import (
    DEFAULT_ZOO_DIR,
    haversine_km,
    load_zoo,
    propagation_delay_ms,
    with_hosts,
)

ZOO = Path(DEFAULT_ZOO_DIR)
needs_zoo = pytest.mark.skipif(not (ZOO / "Abilene.graphml").exists(),
                               reason=f"Topology Zoo files not found in {ZOO}")


def test_figure2_has_the_contract_shape() -> None:
    """Three D-Routers around x0 (dpids 1..4); c1, c2, e2, e3 where the contract puts them."""
    g = figure2_graph()
    assert {n: d["dpid"] for n, d in g.nodes(data=True) if "dpid" in d} == {
        "r1": 1, "r2": 2, "r3": 3, "x0": 4}
    assert sorted(g.neighbors("x0")) == ["r1", "r2", "r3"]
    assert {h: g.nodes[h]["switch"] for h in hosts_of(g)} == {
        "c1": "r1", "c2": "r2", "e2": "r2", "e3": "r3"}
    assert g.nodes["e2"]["ips"] == ["10.0.0.21", "10.0.0.22"]
    assert g.nodes["e3"]["dbids"] == {"svc1": "10.0.0.31", "svc2": "10.0.0.32"}
    assert (g.nodes["e2"]["mgmt"], g.nodes["e3"]["mgmt"]) == (2, 3)
    assert g.graph["services"] == {"svc1": "10.0.100.1", "svc2": "10.0.100.2"}
    assert len({d["mac"] for _, d in g.nodes(data=True) if "mac" in d}) == 4


def test_figure2_ports_match_the_unit_test_fixture() -> None:
    """Host ports 1/2 and uplink port 10 on the D-Routers; x0 reaches rN on port N."""
    g = figure2_graph()
    assert g["c1"]["r1"]["ports"] == {"c1": 0, "r1": 1}
    assert g["e2"]["r2"]["ports"] == {"e2": 0, "r2": 2}
    assert g["r3"]["x0"]["ports"] == {"r3": 10, "x0": 3}
    assert nx.shortest_path(g, "c1", "e3") == ["c1", "r1", "x0", "r3", "e3"]


def test_figure2_extra_clients_get_distinct_ports_and_addresses() -> None:
    """Extra clients alternate between r1 and r2 without reusing a port, address or MAC."""
    g = figure2_graph(extra_clients=5)
    clients = hosts_of(g, "client")
    assert len(clients) == 7
    for attr in ("ip", "mac"):
        assert len({g.nodes[c][attr] for c in clients}) == 7
    for switch in ("r1", "r2", "r3", "x0"):
        ports = [g[switch][peer]["ports"][switch] for peer in g.neighbors(switch)]
        assert len(ports) == len(set(ports))


def test_haversine_and_delay() -> None:
    """A quarter of a meridian is ~10,000 km, i.e. ~50 ms of fibre."""
    km = haversine_km(0.0, 0.0, 90.0, 0.0)
    assert km == pytest.approx(10007.5, rel=1e-3)
    assert propagation_delay_ms(km) == pytest.approx(50.04, rel=1e-3)


@needs_zoo
def test_abilene_loads_with_plausible_delays() -> None:
    """Abilene: 11 switches s1..s11 (dpids 1..11), 14 links, each 0.1..20 ms of fibre."""
    g = load_zoo("Abilene.graphml")
    assert (g.number_of_nodes(), g.number_of_edges()) == (11, 14)
    assert sorted(d["dpid"] for _, d in g.nodes(data=True)) == list(range(1, 12))
    assert set(g.nodes) == {f"s{i}" for i in range(1, 12)}
    delays = [d["delay_ms"] for _, _, d in g.edges(data=True)]
    assert all(0.1 < ms < 20 for ms in delays), delays
    assert g.graph["notes"] == []


@needs_zoo
def test_nodes_without_coordinates_are_kept_and_noted() -> None:
    """Geant2012 keeps its 3 nodes without coordinates; their links have no delay."""
    g = load_zoo(ZOO / "Geant2012.graphml")
    assert g.number_of_nodes() == 40
    undelayed = [(u, v) for u, v, d in g.edges(data=True) if "delay_ms" not in d]
    assert undelayed and all("lat" not in g.nodes[u] or "lat" not in g.nodes[v]
                             for u, v in undelayed)
    assert any("without coordinates" in note for note in g.graph["notes"])
    estimated = load_zoo(ZOO / "Geant2012.graphml", missing_delay_ms=5.0)
    assert all("delay_ms" in d for _, _, d in estimated.edges(data=True))


@needs_zoo
def test_parallel_links_are_merged() -> None:
    """Cogentco's parallel links become one link each, with their count kept."""
    g = load_zoo("Cogentco")
    assert isinstance(g, nx.Graph) and not g.is_multigraph()
    assert max(d["parallel"] for _, _, d in g.edges(data=True)) >= 2


GRAPHML = """<?xml version="1.0" encoding="utf-8"?>
<graphml xmlns="http://graphml.graphdrawing.org/xmlns">
  <key attr.name="Latitude" attr.type="double" for="node" id="lat"/>
  <key attr.name="Longitude" attr.type="double" for="node" id="lon"/>
  <key attr.name="label" attr.type="string" for="node" id="label"/>
  <graph edgedefault="undirected">
    <node id="0"><data key="label">A</data><data key="lat">0</data><data key="lon">0</data></node>
    <node id="1"><data key="label">B</data><data key="lat">0</data><data key="lon">1</data></node>
    <node id="2"><data key="label">C</data></node>
    <node id="3"><data key="label">D</data><data key="lat">5</data><data key="lon">5</data></node>
    <node id="4"><data key="label">E</data><data key="lat">6</data><data key="lon">6</data></node>
    <edge source="0" target="1"/><edge source="1" target="2"/><edge source="2" target="2"/>
    <edge source="3" target="4"/>
  </graph>
</graphml>
"""


def test_largest_component_is_kept_and_said(tmp_path: Path) -> None:
    """Of two components only the larger stays; the dropped nodes and the self-loop are noted."""
    path = tmp_path / "two.graphml"
    path.write_text(GRAPHML)
    g = load_zoo(path)
    assert [g.nodes[n]["label"] for n in sorted(g.nodes)] == ["A", "B", "C"]
    assert sorted(g.edges) == [("s1", "s2"), ("s2", "s3")]
    assert g["s1"]["s2"]["delay_ms"] == pytest.approx(111.19 / 200, rel=1e-3)
    assert "delay_ms" not in g["s2"]["s3"]
    notes = " ".join(g.graph["notes"])
    assert "dropped 2 node(s): D, E" in notes and "self-loop" in notes


def test_hosts_are_added_with_unique_addresses_and_ports(tmp_path: Path) -> None:
    """with_hosts puts k hosts on each switch, after the switch-to-switch ports."""
    path = tmp_path / "two.graphml"
    path.write_text(GRAPHML)
    g = with_hosts(load_zoo(path), hosts_per_switch=2)
    hosts = [n for n, d in g.nodes(data=True) if d.get("role") == "host"]
    assert sorted(hosts) == ["h1", "h1x2", "h2", "h2x2", "h3", "h3x2"]
    assert len({g.nodes[h]["ip"] for h in hosts}) == 6
    assert g["s2"]["s1"]["ports"] == {"s1": 1, "s2": 1}
    assert g["s2"]["h2"]["ports"] == {"s2": 3, "h2": 0}
    assert g["s2"]["h2x2"]["ports"]["s2"] == 4


def test_zoo_delays_become_controller_link_config() -> None:
    """Abilene's propagation delays load into the controller's config as [[link]] tables."""
    import tomllib

    from controller.config import config_from_dict
    from topologies.zoo import controller_links, load_zoo

    graph = load_zoo("Abilene.graphml")
    cfg = config_from_dict(tomllib.loads(controller_links(graph)))
    assert len(cfg.links) == graph.number_of_edges() == 14
    assert all(0.1 < lk.delay_ms < 30 for lk in cfg.links if lk.delay_ms is not None)


def test_ring_has_two_edges_next_to_the_client_and_a_detour() -> None:
    """s1..s4 in a cycle; e2 and e3 one hop from c1's switch, each also reachable the long way."""
    from topologies.ring import port_towards, ring_graph

    g = ring_graph()
    assert {n: d["dpid"] for n, d in g.nodes(data=True) if "dpid" in d} == {
        "s1": 1, "s2": 2, "s3": 3, "s4": 4}
    assert {h: g.nodes[h]["switch"] for h in hosts_of(g)} == {"c1": "s1", "e2": "s2", "e3": "s4"}
    assert nx.shortest_path(g, "c1", "e2") == ["c1", "s1", "s2", "e2"]
    assert nx.shortest_path(g, "c1", "e3") == ["c1", "s1", "s4", "e3"]
    without = g.copy()
    without.remove_edge("s1", "s2")
    assert nx.shortest_path(without, "c1", "e2") == ["c1", "s1", "s4", "s3", "s2", "e2"]
    assert (port_towards(g, "s1", "s2"), port_towards(g, "s2", "s1")) == (10, 11)
    assert (port_towards(g, "s1", "s4"), port_towards(g, "s4", "s1")) == (11, 10)
    assert g.nodes["e2"]["dbids"] == {"svc1": "10.0.0.21"} and g.nodes["e2"]["mgmt"] == 2
    assert g.nodes["e3"]["dbids"] == {"svc1": "10.0.0.31"} and g.nodes["e3"]["mgmt"] == 3
    assert g.graph["services"] == {"svc1": "10.0.100.1"}
    for switch in ("s1", "s2", "s3", "s4"):
        ports = [g[switch][peer]["ports"][switch] for peer in g.neighbors(switch)]
        assert len(ports) == len(set(ports))

"""Network-aware steering and failure handling on the ring (topologies/ring.py).

c1 sits at s1; svc1's instances are at e2 (s2) and e3 (s4), each one hop away, with the long
way round the ring as the alternative path. Every assertion is about what a client observed
(which instance answered, whether a held connection streamed to its end), what the controller
reports (instance states, bindings, link load, counters) or what a switch holds.
"""

from __future__ import annotations

import os
import signal
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from controller.intents import CookieKind
from mininet_tests.flowdump import dump_flows
from mininet_tests.harness import Lab
from mininet_tests.processes import wait_until
from mininet_tests.test_fig2 import (
    INSTANCE_OF,
    SVC1,
    affinity_entries,
    assert_held_to_the_end,
    client,
    set_load,
    start_hold,
    wait_shares,
)
from topologies.figure2 import hosts_of
from topologies.ring import port_towards

S1, S2 = 1, 2  # dpids of the client's switch and e2's
E2, E3 = "10.0.0.21", "10.0.0.31"  # svc1's instances (D-BIDs)
EDGES = {"edges": True}
HOLD_S = 20.0  # a held connection's length: longer than any step it has to outlive
HERE = Path(__file__).parent
_RING = tomllib.loads((HERE / "ring.toml").read_text())["controller"]
STALE_AFTER_S = float(_RING["stale_after_s"])
PROBE_TIMEOUT_S = float(_RING.get("probe_timeout_s", 3.0))  # the README's default


# ---- what clients saw --------------------------------------------------------------------

def kill(lab: Lab, host: str, name: str) -> None:
    """SIGKILL one process the lab started in `host` (by its pid) and reap it."""
    proc = next(p for p in lab.procs if p.host == host and p.name == name)
    os.kill(proc.popen.pid, signal.SIGKILL)
    proc.popen.wait(timeout=5)


# ---- what the controller and the switches say ---------------------------------------------

def states(lab: Lab) -> dict[str, str]:
    """Every instance's state: D-BID -> active / unknown / down / inactive."""
    return {i["dbid"]: i["state"] for i in lab.rest("GET", "/instances")[1]}


def bound(lab: Lab) -> dict[int, str]:
    """svc1's bindings: binding id -> D-BID."""
    return {b["id"]: b["dbid"] for b in lab.rest("GET", "/bindings/svc1")[1]}


def counter(lab: Lab, name: str) -> int:
    """One /stats counter (0 if it has not been counted yet)."""
    return int(lab.rest("GET", "/stats")[1].get(name, 0))


def links(lab: Lab, a: int, b: int) -> list[dict[str, Any]]:
    """The controller's link directions between switches `a` and `b` (dpids), either way."""
    return [lk for lk in lab.rest("GET", "/topology")[1]["links"]
            if {lk["src"]["dpid"], lk["dst"]["dpid"]} == {a, b}]


def utilisation(lab: Lab, src: int, dst: int) -> float:
    """The utilisation the controller reports for the link direction `src` -> `dst` (0 if none)."""
    found = [lk for lk in links(lab, src, dst) if lk["src"]["dpid"] == src]
    return float(found[0]["utilisation"] or 0.0) if found else 0.0


def rewritten_to(bridge: str) -> list[str]:
    """The D-BIDs that the forward affinity entries in `bridge` rewrite the D-SID to."""
    return [a.split(":", 1)[1].split("->")[0]
            for f in affinity_entries(bridge, CookieKind.AFFINITY_FWD)
            for a in f["actions"] if a.endswith("->ip_dst")]


def route_ports(bridge: str, ip: str) -> list[str]:
    """Output ports of `bridge`'s host routes to `ip` (forward table)."""
    return [a.split(":", 1)[1] for f in dump_flows(bridge)
            if (f["cookie"] >> 48) & 0xFF == CookieKind.HOST and f["match"].get("nw_dst") == ip
            for a in f["actions"] if a.startswith("output:")]


def edge_of(lab: Lab, dbid: str) -> str:
    """The edge host that runs the instance at `dbid`."""
    return next(h for h in hosts_of(lab.graph, "edge")
                if dbid in lab.graph.nodes[h]["dbids"].values())


def other(dbid: str) -> str:
    """svc1's other instance."""
    return E3 if dbid == E2 else E2


def bind_both(lab: Lab) -> dict[int, str]:
    """Make four short svc1 flows from c1 that land on both instances; return the bindings."""
    wait_shares(lab, "svc1", S1, {E2, E3})
    seen = client(lab, "c1", SVC1, requests=4)
    assert seen["errors"] == 0 and set(seen["served"]) == {"svc1@e2", "svc1@e3"}, seen
    before = bound(lab)
    assert sorted(before.values()) == [E2, E2, E3, E3], before
    return before


def assert_moved(lab: Lab, before: dict[int, str], dead: str, moves_before: int) -> None:
    """Every binding that pointed at `dead` now points at the other instance or is gone; the
    moves are counted and the ingress no longer rewrites to `dead`."""
    wait_until(lambda: dead not in bound(lab).values(), 5,
               lambda: f"bindings still at {dead}: {bound(lab)}")
    after = bound(lab)
    victims = [i for i, d in before.items() if d == dead]
    assert all(after.get(i) in (other(dead), None) for i in victims), (before, after)
    moved = sum(1 for i in victims if after.get(i) == other(dead))
    assert counter(lab, "affinity_moves") - moves_before >= moved, lab.rest("GET", "/stats")[1]
    assert dead not in rewritten_to("s1"), rewritten_to("s1")


def assert_new_flows_go_to(lab: Lab, dbid: str) -> None:
    """s1's decision follows at its next periodic recompute (within seconds); then six new
    connections from c1 are all served by the instance at `dbid`."""
    wait_shares(lab, "svc1", S1, {dbid}, timeout=5)
    seen = client(lab, "c1", SVC1, requests=6)
    assert seen["errors"] == 0 and {INSTANCE_OF[i] for i in seen["served"]} == {dbid}, seen
    assert seen["peers"] == {SVC1: 6}, seen


# ---- the tests ----------------------------------------------------------------------------

@pytest.mark.heavy  # core logic, framework-independent (CI's time budget: one framework runs it)
@pytest.mark.parametrize("ring", [{"bw": 10}], indirect=True)
def test_congested_link_steers_new_flows_away_and_held_ones_stay(ring: Lab) -> None:
    """With s1->s2 saturated, new flows from s1 go to the instance behind the free link, while
    connections opened before the congestion keep their instances."""
    for host in hosts_of(ring.graph, "edge"):
        ring.start_edge(host, capacity=16)  # so that one held session barely moves a cost
    wait_shares(ring, "svc1", S1, {E2, E3})
    holds = [start_hold(ring, HOLD_S, name=f"hold{i}") for i in (1, 2)]
    wait_shares(ring, "svc1", S1, {E2, E3})  # before the load, both get new flows
    ring.popen("e2", ["iperf3", "-s", "-B", E2, "-1", "--forceflush"], "iperf3-server",
               ready=r"Server listening")
    iperf = ring.popen("c1", ["iperf3", "-c", E2, "-t", "20", "-b", "20M", "--forceflush"],
                       "iperf3", ready=r"connected to")
    wait_until(lambda: utilisation(ring, S1, S2) > 0.5, 15,
               lambda: f"s1->s2 not reported busy: {links(ring, S1, S2)}")
    wait_shares(ring, "svc1", S1, {E3}, timeout=15)
    assert all(p.popen.poll() is None for p, _ in holds), "held connections ended too early"
    assert_new_flows_go_to(ring, E3)
    assert rewritten_to("s1").count(E3) >= 6, rewritten_to("s1")
    busy = utilisation(ring, S1, S2)
    assert busy > 0.5 and iperf.popen.poll() is None, (busy, iperf.log()[-500:])
    ring.stop_process(iperf)
    for proc, first in holds:
        assert_held_to_the_end(proc, first, HOLD_S)
    assert counter(ring, "affinity_moves") == 0


@pytest.mark.heavy  # core logic, framework-independent (CI's time budget: one framework runs it)
@pytest.mark.parametrize("ring", [EDGES], indirect=True)
def test_link_failure_reroutes_and_held_connection_keeps_its_instance(ring: Lab) -> None:
    """When s1-s2 fails, routes take the other way round the ring: a connection held to e2
    streams on from e2 to its end, the link leaves /topology and c1 reaches e2 again."""
    set_load(ring, E3, 10.0)
    wait_shares(ring, "svc1", S1, {E2})
    holder, first = start_hold(ring, HOLD_S)
    assert INSTANCE_OF[first] == E2, first
    assert route_ports("s1", E2) == [str(port_towards(ring.graph, "s1", "s2"))]
    ring.net.configLinkStatus("s1", "s2", "down")
    wait_until(lambda: links(ring, S1, S2) == [], 10,
               lambda: f"s1-s2 still in /topology: {links(ring, S1, S2)}")
    wait_until(lambda: ring.ping("c1", E2) is not None, 10, "c1 cannot ping e2 after s1-s2 fell")
    detour = str(port_towards(ring.graph, "s1", "s4"))
    assert route_ports("s1", E2) == [detour], route_ports("s1", E2)
    assert list(bound(ring).values()) == [E2] and rewritten_to("s1") == [E2]
    assert_held_to_the_end(holder, first, HOLD_S)
    assert counter(ring, "affinity_moves") == 0


@pytest.mark.parametrize("ring", [EDGES], indirect=True)
def test_dead_instance_goes_down_and_its_bindings_move(ring: Lab) -> None:
    """When an instance and its D-MA die, it is `down` within stale_after_s + probe_timeout_s;
    its bindings move to the live instance (counted) and new flows go there."""
    before = bind_both(ring)
    moves_before = counter(ring, "affinity_moves")
    kill(ring, "e3", f"service-{E3}")
    kill(ring, "e3", "dma")
    limit = STALE_AFTER_S + PROBE_TIMEOUT_S + 5
    wait_until(lambda: states(ring).get(E3) == "down", limit,
               lambda: f"{E3} not down: {states(ring)}")
    assert states(ring).get(E2) == "active", states(ring)
    assert_moved(ring, before, E3, moves_before)
    assert_new_flows_go_to(ring, E2)


@pytest.mark.heavy  # core logic, framework-independent (CI's time budget: one framework runs it)
@pytest.mark.parametrize("ring", [pytest.param(EDGES, id="reactive"), pytest.param(
    {**EDGES, "config": HERE / "ring_conntrack.toml"}, id="conntrack")], indirect=True)
def test_silent_dma_makes_instance_unknown_and_its_flows_stay(ring: Lab) -> None:
    """With only its D-MA dead, an instance that still answers is `unknown`, never `down`: its
    held connection streams to the end from it and new flows go to the other instance. With
    `conntrack` too, whose tracker dropped the answers to the liveness probes (the instance
    went `down` and the held connection stalled: tests/test_probe_answers.py)."""
    wait_shares(ring, "svc1", S1, {E2, E3})
    holder, first = start_hold(ring, HOLD_S)
    silent = INSTANCE_OF[first]
    kill(ring, edge_of(ring, silent), "dma")
    wait_until(lambda: states(ring).get(silent) == "unknown", STALE_AFTER_S + 5,
               lambda: f"{silent} not unknown: {states(ring)}")
    unknown_at = time.monotonic()
    assert_new_flows_go_to(ring, other(silent))
    seen: set[str | None] = set()

    def held_ended() -> bool:
        seen.add(states(ring).get(silent))
        return holder.popen.poll() is not None
    wait_until(held_ended, HOLD_S + 10, "the held connection did not end", interval=0.5)
    assert seen == {"unknown"}, seen
    assert time.monotonic() - unknown_at > PROBE_TIMEOUT_S + 2, "watched too briefly"
    assert_held_to_the_end(holder, first, HOLD_S)
    if ring.rest("GET", "/services/svc1")[1].get("dataplane", "reactive") == "reactive":
        assert list(bound(ring).values()).count(silent) == 1, bound(ring)  # the held flow's
    assert counter(ring, "affinity_moves") == 0
    assert counter(ring, "liveness_answers") > 0


@pytest.mark.parametrize("ring", [EDGES], indirect=True)
def test_port_down_at_instance_makes_it_down_at_once_and_moves_its_bindings(ring: Lab) -> None:
    """When e2's access link goes down, its instance is `down` well before stale_after_s, its
    bindings move to e3 (counted) and new flows go to e3."""
    before = bind_both(ring)
    moves_before = counter(ring, "affinity_moves")
    ring.net.configLinkStatus("s2", "e2", "down")
    wait_until(lambda: states(ring).get(E2) == "down", STALE_AFTER_S * 2 / 3,
               lambda: f"{E2} not down promptly: {states(ring)}")
    assert_moved(ring, before, E2, moves_before)
    assert_new_flows_go_to(ring, E3)

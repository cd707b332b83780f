"""The strongest baselines as selection policies: p2c, consistent-hash, least-inflight."""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.config import ControllerConfig, SelectionConfig
from controller.core import Core
from controller.intents import VIRTUAL_MAC
from controller.model import SELECTION_POLICIES, Weights, service_from_dict
from controller.selection.engine import CandidateInput, Engine, decide
from controller.selection.hashing import maglev_table
from tests.fakeoftable import FakeNetwork
from tests.helpers import (
    HOSTS,
    LINKS,
    PORTS,
    SVC1,
    SVC2,
    figure2_core,
    flow_mods,
    report,
    tcp_frame,
)

E21, E31 = "10.0.0.21", "10.0.0.31"


def _rows(compute: dict[str, float]) -> list[CandidateInput]:
    return [CandidateInput(d, "active", 1.0, c) for d, c in compute.items()]


def _core(policy: str) -> Core:
    cfg = ControllerConfig(services=(dataclasses.replace(SVC1, policy=policy), SVC2),
                           selection=SelectionConfig(spread=0.3, sharpness=4.0,
                                                     hysteresis=0.15))
    return figure2_core(cfg)


def _new_flow(core: Core, sport: int, now: float, client: str = "c1") -> str:
    """Where a new TCP flow of svc1 from `client` is sent (the forward entry's rewrite)."""
    ip, mac, dpid, port = HOSTS[client]
    frame = tcp_frame(mac, VIRTUAL_MAC, ip, "10.0.100.1", sport, 8000)
    return str(flow_mods(core.packet_in(dpid, port, frame, now))[0].actions[1].value)


# ---- p2c ----------------------------------------------------------------------------------

def test_p2c_shares_are_the_chance_of_winning_a_random_pair() -> None:
    """Three instances: the cheapest wins both its pairs (2/3), the middle one one (1/3), the
    dearest none; an exact tie splits the pair."""
    d = decide(1, "svc", Weights(), _rows({"a": 1.0, "b": 2.0, "c": 3.0}), 0.3, 4.0, 0.0,
               policy="p2c")
    assert d.shares == {"a": 2 / 3, "b": 1 / 3}
    assert [c.cost for c in d.candidates] == [1.0, 2.0, 3.0]  # the compute cost alone
    tied = decide(1, "svc", Weights(), _rows({"a": 1.0, "b": 1.0, "c": 3.0}), 0.3, 4.0, 0.0,
                  policy="p2c")
    assert tied.shares == {"a": 0.5, "b": 0.5}


def test_p2c_compares_the_loads_at_the_pick_and_follows_them() -> None:
    """Each pick asks the loads as they are then: an instance that took flows looks busier.
    Starting at 0, 5 and 10 with each flow adding 1, the most loaded gets nothing until the
    others catch up, and the picks come out in order of the starting loads."""
    engine = Engine(spread=0.3, sharpness=4.0, hysteresis=0.15, seed=7)
    load = {"a": 0.0, "b": 5.0, "c": 10.0}
    engine.update(1, "svc", Weights(), _rows(load), 0.0, policy="p2c")
    picks = []
    for _ in range(15):
        dbid = engine.pick(1, "svc", load=load.__getitem__)
        assert dbid is not None
        picks.append(dbid)
        load[dbid] += 1.0
    assert "c" not in picks[:5]
    counts = Counter(picks)
    assert counts["a"] > counts["b"] > counts["c"]
    assert max(load.values()) - min(load.values()) <= 2.0


def test_p2c_sends_a_burst_toward_the_less_loaded_and_spills_as_it_fills() -> None:
    """e31 reports both workers busy and one waiting; e21 is idle. A burst of new flows from
    c1 between two reports goes to e21 first (with two instances every pair is the two) and,
    once the flows placed on it make it the busier, to e31 as well: the loads are read at each
    pick, not at the last decision."""
    core = _core("p2c")
    report(core, E21, 1.0, sessions=0, capacity=2)
    report(core, E31, 1.0, sessions=2, capacity=2, queue=1)
    picks = [_new_flow(core, 40000 + i, 1.001) for i in range(8)]
    assert picks[:3] == [E21, E21, E21]
    assert E31 in picks[3:]
    assert abs(picks.count(E21) - picks.count(E31) - 1) <= 2  # e31 started one ahead


# ---- consistent-hash ----------------------------------------------------------------------

def test_consistent_hash_keeps_a_key_on_its_instance_across_recomputes() -> None:
    """Costs move (a new decision each time): a flow key keeps its instance; another engine
    (a restarted controller) maps it the same way; the keys spread about evenly."""
    engine, other = (Engine(0.3, 4.0, 0.15, seed=s) for s in (1, 2))
    rows = _rows({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0})
    engine.update(1, "svc", Weights(), rows, 0.0, policy="consistent-hash")
    keys = [("10.0.0.1", 40000 + i, 8000) for i in range(2000)]
    before = [engine.pick(1, "svc", k) for k in keys]
    scaled = [r._replace(compute_ms=r.compute_ms * 5) for r in reversed(rows)]
    assert engine.update(1, "svc", Weights(), scaled, 1.0, policy="consistent-hash")
    assert [engine.pick(1, "svc", k) for k in keys[::-1]] == before[::-1]  # not the turn
    other.update(1, "svc", Weights(), scaled, 0.0, policy="consistent-hash")
    assert [other.pick(1, "svc", k) for k in keys[1:]] == before[1:]
    counts = Counter(before)
    assert set(counts) == {"a", "b", "c", "d"} and min(counts.values()) > 400
    assert engine.decisions[(1, "svc")].shares == dict.fromkeys("abcd", 0.25)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(n=st.integers(min_value=2, max_value=12), gone=st.integers(min_value=0, max_value=11),
       salt=st.text(min_size=1, max_size=6))
def test_consistent_hash_moves_about_one_nth_of_the_keys_when_an_instance_leaves(
        n: int, gone: int, salt: str) -> None:
    """An instance leaves: its keys move, and few others (Maglev's disruption is small, not
    nil: a few per cent at worst); it rejoins: every key is back where it was."""
    dbids = sorted(f"{salt}-{i}" for i in range(n))
    left = dbids[gone % n]
    engine = Engine(0.3, 4.0, 0.15)
    engine.update(1, "svc", Weights(), _rows(dict.fromkeys(dbids, 1.0)), 0.0,
                  policy="consistent-hash")
    keys = [f"key-{i}" for i in range(3000)]
    before = {k: engine.pick(1, "svc", k) for k in keys}
    rest = [d for d in dbids if d != left]
    engine.update(1, "svc", Weights(), _rows(dict.fromkeys(rest, 1.0)), 1.0,
                  policy="consistent-hash")
    after = {k: engine.pick(1, "svc", k) for k in keys}
    assert all(after[k] != left for k in keys)
    moved = sum(before[k] != after[k] for k in keys) / len(keys)
    others_moved = sum(before[k] != left and before[k] != after[k] for k in keys) / len(keys)
    assert moved <= 1 / n + 0.08
    assert others_moved <= 0.08
    # it comes back: the table is a function of the set, so every key is back where it was
    engine.update(1, "svc", Weights(), _rows(dict.fromkeys(dbids, 1.0)), 2.0,
                  policy="consistent-hash")
    assert {k: engine.pick(1, "svc", k) for k in keys} == before


def test_maglev_table_gives_each_instance_its_slots() -> None:
    """Every slot is filled; each instance holds 1/n of them, to one slot."""
    table = maglev_table(("a", "b", "c"))
    assert len(table) == 4099
    counts = Counter(table)
    assert max(counts.values()) - min(counts.values()) <= 1 and set(counts) == {"a", "b", "c"}
    assert maglev_table(()) == ()


def test_consistent_hash_sends_a_flow_key_to_the_same_instance_through_the_core() -> None:
    """Two controllers (a restart) bind the same 5-tuple to the same instance, whatever the
    instances report and in whatever order the flows come; source ports spread over both."""
    cores = [_core("consistent-hash") for _ in range(2)]
    for core, busy in zip(cores, (E21, E31), strict=True):
        report(core, E21, 1.0, sessions=9 if busy == E21 else 0, capacity=2)
        report(core, E31, 1.0, sessions=9 if busy == E31 else 0, capacity=2)
    ports = list(range(40000, 40040))
    picks = [[_new_flow(core, p, 1.5) for p in order] for core, order in
             zip(cores, (ports, ports[::-1]), strict=True)]
    assert picks[0] == picks[1][::-1]  # in the other order: the key picks, not the turn
    assert {E21, E31} == set(picks[0])


# ---- least-inflight -----------------------------------------------------------------------

def test_least_inflight_balances_the_placed_flows_and_reads_no_report() -> None:
    """e31 reports itself swamped, e21 idle: least-inflight does not read reports, so a burst
    of new flows alternates between them; once the base delay (10 ms) has passed, the flows
    are done and the count starts again."""
    core = _core("least-inflight")
    report(core, E21, 1.0, sessions=0, capacity=2)
    report(core, E31, 1.0, sessions=2, capacity=2, queue=5)
    picks = [_new_flow(core, 40000 + i, 1.001) for i in range(10)]
    assert Counter(picks) == {E21: 5, E31: 5}
    assert all(a != b for a, b in itertools.pairwise(picks))
    # a later burst from the other ingress sees the first one's flows while they are in flight
    more = [_new_flow(core, 41000 + i, 1.002, client="c2") for i in range(4)]
    assert Counter(more) == {E21: 2, E31: 2}
    decision = core.decisions.engine.decisions[(1, "svc1")].to_dict()
    assert decision["policy"] == "least-inflight"


def test_least_inflight_sends_flows_to_the_instance_with_fewer_in_flight() -> None:
    """A burst from c2 alternates; on another controller, three flows already placed on e21
    (the core's own count): c1's next new flows go to e31 until it has as many in flight."""
    core = _core("least-inflight")
    seed = [_new_flow(core, 40000 + i, 2.0, client="c2") for i in range(6)]
    assert Counter(seed) == {E21: 3, E31: 3}
    core2 = _core("least-inflight")
    svc1 = core2.catalogue.services["svc1"]
    for i in range(3):
        core2.decisions.placed(svc1, E21, 2.0 + i * 0.001)
    assert [_new_flow(core2, 42000 + i, 2.004) for i in range(3)] == [E31] * 3
    assert Counter(_new_flow(core2, 43000 + i, 2.005) for i in range(4)) == {E21: 2, E31: 2}


def test_flows_in_flight_are_kept_only_for_least_inflight_and_only_while_in_flight() -> None:
    """The in-flight count holds nothing for the other policies, and for `least-inflight` only
    the flows placed within the service's base delay: memory stays bounded however many flows
    a controller places."""
    for policy, most in (("dyncast", 0), ("p2c", 0), ("least-inflight", 2)):
        core = _core(policy)
        svc1 = core.catalogue.services["svc1"]
        step = svc1.base_delay_ms / 1000.0
        for i in range(500):
            core.decisions.placed(svc1, E21, 10.0 + i * step)
        held = len(core.decisions.inflight._times.get(E21, ()))
        assert held <= most and (held > 0) == (most > 0), (policy, held)


def test_the_baselines_are_accepted_as_a_service_policy() -> None:
    """Each new policy parses, round-trips, and is what the decision says it used."""
    for policy in ("p2c", "least-inflight", "consistent-hash"):
        svc = service_from_dict({"name": "s", "dsid": "10.0.100.9", "protocol": "tcp",
                                 "port": 80, "policy": policy})
        assert svc.policy == policy and svc.to_dict()["policy"] == policy


def test_the_openapi_document_lists_exactly_the_policies_the_model_accepts() -> None:
    """A client reading docs/openapi.yaml is offered every policy and no other."""
    spec = yaml.safe_load((Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml")
                          .read_text())
    schemas = spec["components"]["schemas"]
    enums = [s["properties"]["policy"]["enum"] for s in schemas.values()
             if "enum" in s.get("properties", {}).get("policy", {})]
    assert enums and all(tuple(e) == SELECTION_POLICIES for e in enums)


def _deliver(core: Core, net: FakeNetwork, sport: int, now: float) -> str:
    """Send c1's packet of the TCP flow from `sport` through the switches' tables; a packet-in
    goes to the core, its intents into the tables, and the packet is sent again. The instance
    the packet reached."""
    ip, mac, dpid, port = HOSTS["c1"]
    fields = {"eth_type": 0x800, "ip_proto": 6, "eth_src": mac, "eth_dst": VIRTUAL_MAC,
              "ipv4_src": ip, "ipv4_dst": SVC1.dsid, "tcp_src": sport, "tcp_dst": 8000}
    res = net.send(dpid, port, fields, now)
    if res.to_controller:
        frame = tcp_frame(mac, VIRTUAL_MAC, ip, SVC1.dsid, sport, 8000)
        net.apply(core.packet_in(dpid, port, frame, now), now)
        res = net.send(dpid, port, fields, now)
        assert not res.to_controller
    return str(res.only()["ipv4_dst"])


def _hashed_network(busy: str) -> tuple[Core, FakeNetwork]:
    core, net = _core("consistent-hash"), FakeNetwork(LINKS)
    for dpid in PORTS:
        net.apply(core.switch_connected(dpid))
    net.apply(core.forwarding.sync_routes())
    for dbid in (E21, E31):
        report(core, dbid, 1.0, sessions=9 if dbid == busy else 0, capacity=2)
    return core, net


def test_consistent_hash_in_the_flow_tables_survives_a_restart_and_a_leave() -> None:
    """In the fake flow tables: each flow's packets reach the instance its key hashes to, the
    same under a restarted controller whatever the loads; when e21 is withdrawn its flows move
    to e31 and the flows already on e31 stay bound there (no packet-in)."""
    core, net = _hashed_network(busy=E21)
    first = {s: _deliver(core, net, s, 2.0) for s in range(40000, 40030)}
    assert set(first.values()) == {E21, E31}
    again, net2 = _hashed_network(busy=E31)
    # in the other order: the key picks, not the turn
    assert {s: _deliver(again, net2, s, 2.0) for s in reversed(first)} == first
    net.apply(core.withdraw(E21, 3.0), 3.0)
    for sport, dbid in first.items():
        res = net.send(HOSTS["c1"][2], HOSTS["c1"][3], {
            "eth_type": 0x800, "ip_proto": 6, "eth_src": HOSTS["c1"][1],
            "eth_dst": VIRTUAL_MAC, "ipv4_src": HOSTS["c1"][0], "ipv4_dst": SVC1.dsid,
            "tcp_src": sport, "tcp_dst": 8000}, 3.1)
        assert not res.to_controller and res.only()["ipv4_dst"] == E31, (sport, dbid)

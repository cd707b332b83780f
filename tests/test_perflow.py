"""`[controller.selection] pick = "per-flow"`: the dyncast policy sends each new flow to the
decision's cheapest candidate re-priced at the pick (controller/selection/perflow.py); the
default serves the decision's shares (docs/results/steering.md, "Choosing per flow")."""

from __future__ import annotations

from collections import Counter

from controller.config import ControllerConfig, SelectionConfig
from controller.core import Core
from controller.intents import VIRTUAL_MAC
from controller.model import Weights
from controller.selection import perflow
from controller.selection.engine import Candidate, Decision
from tests.helpers import HOSTS, SVC1, SVC2, figure2_core, flow_mods, report, tcp_frame

E21, E31 = "10.0.0.21", "10.0.0.31"


def _burst(pick: str, hysteresis: float = 0.15, n: int = 10) -> list[str]:
    """svc1's two instances report at t = 1, both idle with two workers (e21 at the base
    delay, 10 ms; e31 reporting 20 ms); then `n` new flows from c1 arrive at t = 1.01, before
    the next report. Returns the instance of each flow, where the switch is told to send it."""
    core: Core = figure2_core(ControllerConfig(services=(SVC1, SVC2), selection=SelectionConfig(
        spread=0.3, sharpness=4.0, hysteresis=hysteresis, pick=pick)))
    report(core, E21, 1.0, sessions=0, capacity=2)
    report(core, E31, 1.0, sessions=0, capacity=2, delay=20.0)
    ip, mac, dpid, port = HOSTS["c1"]
    out = []
    for k in range(n):
        frame = tcp_frame(mac, VIRTUAL_MAC, ip, "10.0.100.1", 30000 + k, 8000)
        out.append(str(flow_mods(core.packet_in(dpid, port, frame, 1.01))[0].actions[1].value))
    return out


def test_a_burst_between_two_reports_spreads_as_the_repriced_costs_say() -> None:
    """Both instances are two hops from c1 (equal network cost). With k flows placed since
    the report, two workers, the default estimate prices e21 at 10 * (1 + max(0, k - 1) / 2):
    10, 10, 15, 20, 25, 30 ms; e31 at max(that, its reported 20 ms): 20 until its fourth flow,
    then 25. The decision gives e21 the only share (e31 is 1.8x its cost, past the 0.3 spread),
    so the two cheapest usable are the candidates. Each flow goes to the cheaper as of its
    pick, a tie to the one with the share: e21 takes four (its fourth at 20 = e31's 20), then
    e31 four (20 < e21's 25), then e21 (25 = 25) and e31 (25 < 30)."""
    assert _burst("per-flow") == [E21] * 4 + [E31] * 4 + [E21, E31]


def test_the_default_serves_the_decisions_shares() -> None:
    """Same burst with the default pick and a hysteresis no placement exceeds (10): the
    decision in force is never taken again between the reports, and its one share takes every
    flow (per flow, e31 would have taken five of the ten)."""
    assert Counter(_burst("shares", hysteresis=10.0)) == Counter({E21: 10})
    assert Counter(_burst("per-flow", hysteresis=10.0)) == Counter({E21: 5, E31: 5})


def _candidate(dbid: str, network_ms: float, cost: float | None, share: float) -> Candidate:
    return Candidate(dbid, "active", network_ms, 0.0, cost, share, "selected")


def test_the_candidates_are_those_with_a_share_and_the_joint_cost_decides() -> None:
    """With two shares, a cheaper instance without one is not chosen; the network cost
    counts with its weight; a gone instance (no cost now) is skipped; ties go to the larger
    share."""
    d = Decision(1, "svc", (_candidate("a", 5.0, 15.0, 0.6), _candidate("b", 1.0, 16.0, 0.4),
                            _candidate("c", 1.0, 12.0, 0.0)), 0.0)
    now = {"a": 10.0, "b": 15.0, "c": 1.0}
    assert [c.dbid for c in perflow.candidates(d)] == ["a", "b"]
    assert perflow.pick(d, Weights(1.0, 1.0), now.get) == "a"  # 15 < 16
    assert perflow.pick(d, Weights(3.0, 1.0), now.get) == "b"  # 25 > 18
    assert perflow.pick(d, Weights(1.0, 1.0), {"b": 15.0}.get) == "b"
    assert perflow.pick(d, Weights(1.0, 1.0), {"a": 11.0, "b": 15.0}.get) == "a"  # 16 = 16
    assert perflow.pick(d, Weights(1.0, 1.0), {}.get) is None

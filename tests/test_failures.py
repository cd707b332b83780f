"""Network awareness and failures in the core: congestion, budgets, liveness, moves."""

from __future__ import annotations

import dataclasses

from controller.instances.liveness import LIVENESS_PORT
from controller.intents import VIRTUAL_MAC, CookieKind, cookie_kind
from controller.model import Weights
from controller.network.packet import TCP_ACK, TCP_RST, TCP_SYN, parse
from controller.selection.engine import CandidateInput, decide
from controller.views import instance_view, stats_view, topology_view
from tests.helpers import FAILURES_CFG as CFG
from tests.helpers import (
    HOSTS,
    all_fresh,
    bind_flow,
    figure2_core,
    flow_mods,
    packet_outs,
    report,
    see_links,
    tcp_frame,
)


def _syn_ack(core, dbid: str, flags: int, now: float) -> None:
    host = next(h for h in HOSTS.values() if h[0] == dbid)
    frame = tcp_frame(host[1], VIRTUAL_MAC, dbid, "10.0.100.1", 8000, LIVENESS_PORT)
    frame = frame[:14 + 20 + 13] + bytes([flags]) + frame[14 + 20 + 14:]
    core.packet_in(host[2], host[3], frame, now)


def test_budget_avoids_instances_that_would_miss_it() -> None:
    """With a 20 ms budget, an instance predicted at 25 ms gets no flows while one meets it,
    even though its weighted cost alone would have shared."""
    inputs = [CandidateInput("near-busy", "active", 1.0, 24.0),
              CandidateInput("far-idle", "active", 9.0, 10.0)]
    d = decide(1, "svc", Weights(network=1.0, compute=0.5), inputs, 1.0, 1.0, 0.0, 20.0)
    assert d.shares == {"far-idle": 1.0}
    preds = {c.dbid: c.predicted_ms for c in d.candidates}
    assert preds == {"near-busy": 25.0, "far-idle": 19.0}
    none_meet = [CandidateInput("a", "active", 1.0, 30.0), CandidateInput("b", "active", 1.0, 40.0)]
    assert decide(1, "svc", Weights(), none_meet, 0.0, 4.0, 0.0, 20.0).primary == "a"


def test_congested_link_moves_new_flows_to_the_other_instance() -> None:
    """Saturating r3's uplink makes e3 dear from r1; new flows go to e2, old ones stay."""
    core = figure2_core(CFG)
    all_fresh(core, 1.0)
    old = [bind_flow(core, 40000 + i, 1.0) for i in range(4)]
    assert set(old) == {"10.0.0.21", "10.0.0.31"}
    core.port_stats(4, [(3, 0, 0)], 1.0)
    core.port_stats(4, [(3, 1_200_000, 0)], 2.0)  # 9.6 Mbit/s of 10 towards r3
    view = {(lk["src"]["dpid"], lk["dst"]["dpid"]): lk for lk in topology_view(core)["links"]}
    assert view[(4, 3)]["utilisation"] == 0.96 and view[(4, 3)]["cost_ms"] > 100
    assert core.intake.pending() == ["svc1", "svc2"]  # recomputed when next flushed: a first
    assert {bind_flow(core, 41000 + i, 2.0) for i in range(4)} == {"10.0.0.21"}  # packet does
    assert core.engine.decisions[(1, "svc1")].shares == {"10.0.0.21": 1.0}
    assert [b.dbid for b in core.bindings.all()[:4]] == old


def test_link_failure_reroutes_without_rebinding() -> None:
    """Losing a link recomputes routes; bindings keep their instance."""
    core = figure2_core(CFG)
    all_fresh(core, 1.0)
    before = {b.ident: b.dbid for b in core.bindings.all()}
    intents = core.port_changed(3, 10, up=False, now=2.0)  # r3's uplink
    assert core.topology.path(1, 3) is None
    assert any(getattr(i, "command", "") == "delete_strict" for i in intents)  # routes to e3 go
    assert {b.ident: b.dbid for b in core.bindings.all()} == before


def test_port_down_at_an_instance_moves_its_flows() -> None:
    """When an instance's attachment port goes down it is `down`, and its bindings move."""
    core = figure2_core(CFG)
    all_fresh(core, 1.0)
    dbids = [bind_flow(core, 42000 + i, 1.0) for i in range(6)]
    on_e3 = dbids.count("10.0.0.31")
    intents = core.port_changed(3, 1, up=False, now=2.0)  # e3's port on r3
    assert instance_view(core, core.catalogue.instances["10.0.0.31"], 2.0)["state"] == "down"
    assert {b.dbid for b in core.bindings.all()} == {"10.0.0.21"}
    assert stats_view(core)["affinity_moves"] == on_e3
    kinds = [cookie_kind(f.cookie)[0] for f in flow_mods(intents) if f.command == "add"]
    assert kinds.count(CookieKind.AFFINITY_FWD) == on_e3


def test_silent_dma_with_live_instance_is_unknown_and_keeps_flows() -> None:
    """Stale metrics but SYN-ACKs to the liveness probe: `unknown`, no new flows, flows stay."""
    core = figure2_core(CFG)
    all_fresh(core, 1.0)
    dbids = [bind_flow(core, 43000 + i, 1.0) for i in range(4)]
    for t in (2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0):
        for dbid in ("10.0.0.21", "10.0.0.22", "10.0.0.32"):
            report(core, dbid, t)
        see_links(core, t)
        probes = [p for p in packet_outs(core.tick(t))
                  if (pkt := parse(p.data)) and pkt.l4_src == LIVENESS_PORT]
        if t >= 5.0:
            assert [parse(p.data).ip_dst for p in probes] == ["10.0.0.31"]
            assert parse(probes[0].data).tcp_flags == TCP_SYN
            _syn_ack(core, "10.0.0.31", TCP_SYN | TCP_ACK, t + 0.01)
    state = instance_view(core, core.catalogue.instances["10.0.0.31"], 8.0)["state"]
    assert state == "unknown"
    assert [b.dbid for b in core.bindings.all()] == dbids
    assert core.engine.decisions[(1, "svc1")].shares == {"10.0.0.21": 1.0}


def test_dead_instance_is_down_after_probe_timeout_and_its_flows_move() -> None:
    """Stale metrics and only RSTs to the probe: `down` after probe_timeout_s; flows move."""
    core = figure2_core(CFG)
    all_fresh(core, 1.0)
    [bind_flow(core, 44000 + i, 1.0) for i in range(4)]
    for t in (2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0):
        for dbid in ("10.0.0.21", "10.0.0.22", "10.0.0.32"):
            report(core, dbid, t)
        see_links(core, t)
        core.tick(t)
        _syn_ack(core, "10.0.0.31", TCP_RST | TCP_ACK, t + 0.01)
    assert instance_view(core, core.catalogue.instances["10.0.0.31"], 8.0)["state"] == "down"
    assert {b.dbid for b in core.bindings.all()} == {"10.0.0.21"}
    assert stats_view(core)["affinity_moves"] == 2


def test_withdrawal_moves_bound_flows_and_nowhere_to_go_drops_them() -> None:
    """A withdrawn instance's flows move; when no instance is left they lose their binding."""
    core = figure2_core(CFG)
    all_fresh(core, 1.0)
    [bind_flow(core, 45000 + i, 1.0) for i in range(4)]
    core.withdraw("10.0.0.31", 2.0)
    assert {b.dbid for b in core.bindings.all()} == {"10.0.0.21"}
    intents = core.withdraw("10.0.0.21", 3.0)
    assert len(core.bindings) == 0 and stats_view(core)["bindings_dropped"] == 4
    assert sum(1 for f in flow_mods(intents) if f.command == "delete") == 8


def test_lldp_timestamps_give_link_delay() -> None:
    """A frame that took 12 ms with 2 ms control round trips measures a 10 ms link."""
    core = figure2_core(dataclasses.replace(CFG, use_measured_delay=True))
    for dpid in (1, 4):
        core.echo_rtt(dpid, 0.002)
    from controller.network.packet import build_lldp

    core.packet_in(4, 1, build_lldp(1, 10, "02:00:00:00:00:01", 100.0), 100.012)
    link = next(lk for lk in topology_view(core)["links"]
                if (lk["src"]["dpid"], lk["dst"]["dpid"]) == (1, 4))
    assert abs(link["delay_ms"] - 10.0) < 1e-6
    assert link["cost_ms"] == link["delay_ms"]  # idle link, measured delay in use


def test_level2_score_and_configured_scoring_drive_compute_cost() -> None:
    """A D-MA's level-2 score maps to base*10/score; raw metrics go through the configured
    normalisation when scoring is on, the default estimate when it is off."""
    import dataclasses

    from controller.model import Metrics
    from controller.selection.engine import compute_ms, estimate_compute_ms
    from controller.selection.scoring import ScoringConfig, compute_ms_from_score, level2

    on, off = ScoringConfig(enabled=True), ScoringConfig()
    assert compute_ms(Metrics(score=5.0), 20.0, off) == 40.0
    assert compute_ms(Metrics(score=10.0), 20.0, on) == 20.0
    idle = Metrics(cpu=0.0, sessions=0, queue=0, capacity=4)
    assert compute_ms(idle, 20.0, on) == compute_ms(idle, 20.0, off) == 20.0
    busy = Metrics(cpu=0.9, sessions=4, queue=4, capacity=4, processing_delay_ms=100.0)
    assert compute_ms(busy, 20.0, on) == compute_ms(busy, 20.0, off) == 100.0  # a floor
    raw = dataclasses.replace(busy, processing_delay_ms=None)
    assert compute_ms(raw, 20.0, off) == estimate_compute_ms(raw, 20.0)
    assert compute_ms(raw, 20.0, on) == compute_ms_from_score(level2(raw, 20.0, on), 20.0)
    assert compute_ms(raw, 20.0, on) != compute_ms(raw, 20.0, off)


def test_level2_report_through_the_api_moves_the_decision() -> None:
    """A score-only report is accepted and steers new flows; an out-of-range score is refused."""
    import json

    from controller.api import Api

    api = Api(figure2_core(CFG))
    for dbid, score in (("10.0.0.21", 2.0), ("10.0.0.31", 9.0)):
        reply = api.handle("POST", "/dyncast/v1/metrics",
                           json.dumps({"dbid": dbid, "score": score}).encode(), 1.0)
        assert reply.status == 200, reply.body
    assert api.core.engine.decisions[(1, "svc1")].shares == {"10.0.0.31": 1.0}
    bad = api.handle("POST", "/dyncast/v1/metrics", b'{"dbid": "10.0.0.21", "score": 11}', 1.0)
    assert bad.status == 400 and bad.body["field"] == "score"
    raw = api.handle("POST", "/dyncast/v1/metrics", b'{"dbid": "10.0.0.21", "queue": 1}', 1.0)
    assert raw.status == 400 and raw.body["field"] == "cpu"


def test_decision_shows_the_network_cost_components_along_the_path() -> None:
    """Each candidate's network cost splits into hops, delay, congestion and admin parts that
    add up to network_ms; configured link delay and admin cost show up where they apply."""
    from controller.config import LinkConfig

    cfg = dataclasses.replace(CFG, links=(LinkConfig(3, 4, delay_ms=4.0, admin_ms=2.5),))
    core = figure2_core(cfg)
    all_fresh(core, 1.0)
    core.port_stats(1, [(10, 0, 0)], 1.0)
    core.port_stats(1, [(10, 625_000, 0)], 2.0)  # r1's uplink half full
    core.flush(2.0)
    rows = {c.dbid: c.to_dict() for c in core.engine.decisions[(1, "svc1")].candidates}
    far = rows["10.0.0.31"]["network"]
    assert far == {"hops": 2.0, "delay_ms": 5.0, "congestion_ms": 10.0, "admin_ms": 2.5}
    assert rows["10.0.0.31"]["network_ms"] == sum(v for k, v in far.items() if k != "hops")
    near = rows["10.0.0.21"]["network"]
    assert near["congestion_ms"] == 10.0 and near["admin_ms"] == 0.0


def test_configured_ingresses_keep_decisions_and_others_decide_on_demand() -> None:
    """With `ingresses`, only those switches keep decisions; a demand at another switch gets a
    decision computed there and then, and that switch keeps one from then on."""
    core = figure2_core(dataclasses.replace(CFG, ingresses=(1,)))
    all_fresh(core, 1.0)
    assert {k[0] for k in core.engine.decisions} == {1}
    ip, mac, dpid, port = HOSTS["c2"]
    intents = core.packet_in(dpid, port, tcp_frame(mac, VIRTUAL_MAC, ip, "10.0.100.1", 51000,
                                                   8000), 2.0)
    assert flow_mods(intents)[0].actions[1].value in ("10.0.0.21", "10.0.0.31")
    report(core, "10.0.0.21", 3.0)
    assert (2, "svc1") in core.engine.decisions and (4, "svc1") not in core.engine.decisions


def test_measured_link_delay_moves_decisions_at_the_next_tick() -> None:
    """A link measured slower by LLDP is applied at the next tick (once, for every frame
    since), the only link the tick looks at: r3's uplink at 200 ms makes e3 dear from r1."""
    from controller.network.packet import build_lldp

    core = figure2_core(dataclasses.replace(CFG, use_measured_delay=True))
    for dpid in (1, 2, 3, 4):
        core.echo_rtt(dpid, 0.002)
    all_fresh(core, 1.0)
    before = core.engine.decisions[(1, "svc1")].shares
    assert set(before) == {"10.0.0.21", "10.0.0.31"}
    core.packet_in(4, 3, build_lldp(3, 10, "02:00:00:00:00:01", 1.0), 1.202)
    core.packet_in(3, 10, build_lldp(4, 3, "02:00:00:00:00:01", 1.0), 1.202)
    assert core.engine.decisions[(1, "svc1")].shares == before  # not yet: at the tick
    core.tick(1.5)
    assert core.engine.decisions[(1, "svc1")].shares == {"10.0.0.21": 1.0}
    assert {bind_flow(core, 42000 + i, 1.5) for i in range(4)} == {"10.0.0.21"}
    core.tick(2.0)  # nothing moved since: the decision stands
    assert core.engine.decisions[(1, "svc1")].shares == {"10.0.0.21": 1.0}

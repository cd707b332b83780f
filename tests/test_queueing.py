"""`[controller.selection] queueing`: the compute estimate prices the wait a steady stream of
placed flows makes (off by default: docs/results/steering.md, "A queueing-aware estimate")."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from controller.config import ControllerConfig, SelectionConfig
from controller.core import Core
from controller.intents import VIRTUAL_MAC
from controller.selection.queueing import MAX_RHO, WINDOW_S, Arrivals, queueing_ms, utilisation
from tests.helpers import HOSTS, SVC1, SVC2, figure2_core, flow_mods, report, tcp_frame


def test_one_worker_is_the_mm1_queue_and_more_workers_wait_less() -> None:
    """c = 1: the M/M/1 `hold / (1 - rho)` exactly; three workers at 0.6 and 0.9 (the
    figures docs/decisions.md and queueing.py quote); the cap; no load is the bare hold."""
    for rho in (0.1, 0.5, 0.9):
        assert queueing_ms(rho, 100.0, 1) == pytest.approx(100.0 / (1 - rho))
    p = math.sqrt(8.0) - 1.0  # c = 3: Sakasegawa's exponent
    assert queueing_ms(0.6, 100.0, 3) == pytest.approx(100.0 * (1 + 0.6 ** p / 1.2))
    assert queueing_ms(0.6, 100.0, 3) == pytest.approx(133, abs=1)
    assert queueing_ms(0.9, 100.0, 3) == pytest.approx(375, abs=1)
    assert queueing_ms(0.95, 100.0, 3) == pytest.approx(707, abs=1)
    assert queueing_ms(MAX_RHO, 100.0, 1) == pytest.approx(100.0 / (1 - MAX_RHO))
    assert queueing_ms(0.0, 100.0, 3) == 100.0
    assert queueing_ms(0.9, 100.0, 3) < queueing_ms(0.9, 100.0, 2) < queueing_ms(0.9, 100.0, 1)


def test_utilisation_is_the_placed_work_over_the_workers_time_capped() -> None:
    """Flows in the window times their holding time, over capacity times the window."""
    assert utilisation(12, 0.1, 3) == pytest.approx(12 * 0.1 / (3 * WINDOW_S))
    assert utilisation(10_000, 0.1, 3) == MAX_RHO
    assert utilisation(0, 0.1, 3) == utilisation(5, 0.0, 3) == utilisation(5, 0.1, 0) == 0.0


def test_arrivals_count_the_flows_of_the_last_window_only() -> None:
    a = Arrivals()
    times = [1.0 + WINDOW_S * f for f in (0.0, 0.25, 0.5, 0.9)]
    for t in times:
        a.add("x", t)
    a.add("y", times[2])
    assert (a.count("x", times[3]), a.count("y", times[3])) == (4, 1)
    assert a.count("x", 1.0 + WINDOW_S * 1.01) == 3  # the first has left the window
    assert a.count("y", 1.0 + WINDOW_S * 2) == 0 and a.count("nobody", 1.0) == 0
    a.forget("x")
    assert a.count("x", times[3]) == 0


def _core(queueing: bool = True) -> Core:
    cfg = ControllerConfig(services=(SVC1, SVC2), selection=SelectionConfig(
        spread=0.3, sharpness=4.0, hysteresis=0.15, queueing=queueing))
    return figure2_core(cfg)


def _stream(core: Core, gap_s: float, until: float) -> list[tuple[float, str]]:
    """New flows from c1 every `gap_s` from t = 1; both instances of svc1, two hops from c1,
    report one worker (capacity 1) idle every 0.5 s: e21 serves in the base delay (10 ms),
    e31 in 20 ms. Returns (time, instance) per flow."""
    ip, mac, dpid, port = HOSTS["c1"]
    picks: list[tuple[float, str]] = []
    t, n, next_report = 1.0, 0, 1.0
    while t < until:
        if t >= next_report:
            report(core, "10.0.0.21", next_report, sessions=0, capacity=1)
            report(core, "10.0.0.31", next_report, sessions=0, capacity=1, delay=20.0)
            next_report += 0.5
        frame = tcp_frame(mac, VIRTUAL_MAC, ip, "10.0.100.1", 30000 + n, 8000)
        picks.append((t, str(flow_mods(core.packet_in(dpid, port, frame, t))[0].actions[1].value)))
        t, n = t + gap_s, n + 1
    return picks


def test_a_steady_stream_spills_before_the_instance_that_looks_idle_saturates() -> None:
    """Every report and every placement's holding time say e21 is idle when the next flow
    comes (a flow every 11 ms, each served in 10 ms): priced from the snapshot it takes them
    all and runs at 0.91, 11 times its service time in an M/M/1 queue. The rate of flows
    placed on it raises its cost past e31's, which takes a share once the first window has
    filled; without the setting (the default) e21 takes them all. A slow stream
    (one flow every 50 ms, 0.2) stays on e21: the rate moves flows only near saturation."""
    fast = Counter(d for t, d in _stream(_core(), 0.011, 5.0) if t >= 1.0 + WINDOW_S)
    assert fast["10.0.0.31"] > 0.1 * fast.total()
    off = Counter(d for t, d in _stream(_core(queueing=False), 0.011, 5.0))
    assert off == Counter({"10.0.0.21": off.total()})  # the default: the snapshot alone
    assert fast["10.0.0.21"] * 0.010 / (5.0 - 1.0 - WINDOW_S) < 0.85  # e21's utilisation
    slow = Counter(d for _, d in _stream(_core(), 0.05, 4.0))
    assert slow == Counter({"10.0.0.21": slow.total()})

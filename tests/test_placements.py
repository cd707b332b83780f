"""Flows placed since an instance's last report count as its load: no herd between reports."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from controller.config import ControllerConfig, SelectionConfig
from controller.core import Core
from controller.intents import VIRTUAL_MAC
from controller.model import Metrics
from controller.selection.engine import estimate_compute_ms
from controller.selection.placements import Placements, aged, with_placed
from controller.selection.workers import Workers
from controller.views import instance_view
from tests.helpers import HOSTS, SVC1, SVC2, figure2_core, flow_mods, report, tcp_frame


def test_placed_requests_take_free_workers_then_wait() -> None:
    """Two free workers: the first two placements are sessions, the rest queue; each worker
    they start adds its share (1/3) to the CPU, which keeps the part the workers do not
    explain (0.3 - 1/3 < 0: none)."""
    m = Metrics(cpu=0.3, sessions=1, queue=0, capacity=3, processing_delay_ms=120.0)
    assert with_placed(m, 0) is m
    after = with_placed(m, 4)
    assert after is not None
    assert (after.sessions, after.queue, after.processing_delay_ms) == (3, 2, 120.0)
    assert after.cpu == pytest.approx(0.3 + 2 / 3)
    full = Metrics(cpu=1.0, sessions=3, queue=1, capacity=3)
    assert with_placed(full, 2) == dataclasses.replace(full, queue=3)
    # other work (0.9 - 1/2) stays when a placement fills the last worker: never cheaper
    busy_host = Metrics(cpu=0.9, sessions=1, capacity=2)
    fuller = with_placed(busy_host, 1)
    assert fuller is not None and fuller.cpu == pytest.approx(1.4)
    assert estimate_compute_ms(fuller, 100.0) > estimate_compute_ms(busy_host, 100.0)


def test_reports_without_raw_counts_are_left_as_they_are() -> None:
    """A level-2 score says nothing about workers; no report is no report."""
    scored = Metrics(score=7.0)
    assert with_placed(scored, 5) is scored
    assert with_placed(None, 5) is None


def test_a_report_ages_as_its_requests_finish_queue_first() -> None:
    """Each worker finishes one request per holding time: 3 workers, 0.1 s each, take three
    requests off the backlog every 0.1 s; one part-way through still counts. The CPU falls by
    each idle worker's share (1/3) and keeps what the workers did not explain (here 0)."""
    m = Metrics(cpu=1.0, sessions=3, queue=2, capacity=3, processing_delay_ms=100.0)
    assert aged(m, 0.0, 0.1) is m
    assert aged(m, 0.01, 0.1) is m  # 0.3 of a request done: all five still there
    after = aged(m, 0.05, 0.1)  # 1.5 done: 3.5 left, counted as 4
    assert after is not None
    assert (after.sessions, after.queue, after.cpu, after.processing_delay_ms) == (3, 1, 1.0, 100.0)
    two = aged(m, 0.1, 0.1)
    assert two == dataclasses.replace(m, sessions=2, queue=0, cpu=pytest.approx(2 / 3))
    assert aged(m, 5.0, 0.1) == dataclasses.replace(m, sessions=0, queue=0, cpu=0.0)
    other = aged(dataclasses.replace(m, cpu=0.9), 5.0, 0.1)  # never below 0
    assert other is not None and other.cpu == 0.0
    scored = Metrics(score=7.0)
    assert aged(scored, 5.0, 0.1) is scored and aged(None, 5.0, 0.1) is None


def test_a_busy_report_stops_counting_once_its_requests_are_done() -> None:
    """e21 reported both workers busy with requests of the service's 10 ms; a fifth of a
    second later they are done, so new flows go to it again without waiting for its next
    report. Counted as still busy (no placed-flow accounting), it would get nothing until
    then."""
    picks = {}
    for placed in (False, True):
        core = _core(placed)
        report(core, "10.0.0.21", 1.0, sessions=2, capacity=2)
        report(core, "10.0.0.31", 1.0, sessions=0, capacity=2)
        assert _new_flow(core, 40000, 1.0) == "10.0.0.31"
        picks[placed] = {_new_flow(core, 40100 + i, 1.2 + i * 0.001) for i in range(4)}
    assert picks == {False: {"10.0.0.31"}, True: {"10.0.0.21", "10.0.0.31"}}


def test_a_placement_counts_while_served_and_until_a_report_shows_it() -> None:
    """Placements count until a report arrives at least `grace_s` after them, and only while
    younger than the holding time (the instance's processing delay)."""
    p = Placements(grace_s=0.1)
    for t in (1.0, 1.05, 1.2):
        p.add("a", t)
    p.add("b", 1.0)
    assert (p.count("a", 1.2, hold_s=2.0), p.count("b", 1.2, hold_s=2.0)) == (3, 1)
    p.reported("a", 1.25)  # 1.2 is younger than the grace: the report may not show it
    assert (p.count("a", 1.25, hold_s=2.0), p.count("b", 1.25, hold_s=2.0)) == (1, 1)
    assert p.count("b", 1.35, hold_s=0.3) == 0  # served by now, report or not
    p.forget("a")
    assert p.count("a", 1.3, hold_s=2.0) == 0


def _core(placed: bool) -> Core:
    cfg = ControllerConfig(services=(SVC1, SVC2), selection=SelectionConfig(
        spread=0.3, sharpness=4.0, hysteresis=0.15, placed_flows=placed))
    core = figure2_core(cfg)
    # from c1's switch both instances are two hops away; e31 is busier (both workers busy, one
    # request waiting), so e21 is preferred (the requests take the service's 10 ms: new flows
    # come within a millisecond of the reports, while e31's requests are still being served)
    report(core, "10.0.0.21", 1.0, sessions=0, capacity=2)
    report(core, "10.0.0.31", 1.0, sessions=2, capacity=2, queue=1)
    return core


def _new_flow(core: Core, sport: int, now: float, client: str = "c1") -> str:
    ip, mac, dpid, port = HOSTS[client]
    frame = tcp_frame(mac, VIRTUAL_MAC, ip, "10.0.100.1", sport, 8000)
    return str(flow_mods(core.packet_in(dpid, port, frame, now))[0].actions[1].value)


def test_a_burst_between_reports_is_not_herded_onto_the_instance_that_looked_idle() -> None:
    """Without counting placements, every new flow between two reports goes to the instance
    that looked best at the last report; counted, it fills up and the burst spills over."""
    blind = _core(placed=False)
    assert {_new_flow(blind, 40000 + i, 1.001) for i in range(6)} == {"10.0.0.21"}
    core = _core(placed=True)
    picks = [_new_flow(core, 40000 + i, 1.001) for i in range(6)]
    assert picks[:2] == ["10.0.0.21", "10.0.0.21"] and "10.0.0.31" in picks[2:]
    assert core.counters["placement_redecisions"] >= 1
    inst = core.catalogue.instances["10.0.0.21"]
    assert instance_view(core, inst, 1.001)["placed_since_report"] == picks.count("10.0.0.21")
    # requests take the service's base delay (10 ms, no delay reported): then they are done
    assert instance_view(core, inst, 1.2)["placed_since_report"] == 0
    # a report taken after the burst ended shows an idle e21 again: it is preferred again
    report(core, "10.0.0.21", 1.5, sessions=0, capacity=2)
    report(core, "10.0.0.31", 1.5, sessions=2, capacity=2, queue=1)
    assert instance_view(core, inst, 1.5)["placed_since_report"] == 0
    assert _new_flow(core, 41000, 1.5) == "10.0.0.21"


def test_flows_placed_from_one_ingress_are_seen_by_the_next_pick_at_another() -> None:
    """c2's ingress has e21 beside it and decided when e21 was idle; once c1's ingress has
    placed three flows on e21 since its last report (its two workers busy, one waiting), c2's
    next new flows are shared with e31 (its ingress decides again before using the stale cost)
    without waiting for e21's next report. Not counted, they all go to e21."""
    picks = {}
    for placed in (False, True):
        core = _core(placed)
        on_e21 = 0
        while on_e21 < 3:
            on_e21 += _new_flow(core, 40000 + core.counters["new_flows"], 1.001) == "10.0.0.21"
        redecided = core.counters["placement_redecisions"]
        picks[placed] = {_new_flow(core, 50000 + i, 1.001, "c2") for i in range(4)}
        assert (core.counters["placement_redecisions"] > redecided) == placed
    assert picks == {False: {"10.0.0.21"}, True: {"10.0.0.21", "10.0.0.31"}}


def test_a_placement_counts_for_the_reported_processing_delay() -> None:
    """An instance that reports 200 ms per request holds a placed flow for 200 ms, not for the
    service's base delay (10 ms)."""
    core = _core(placed=True)
    for dbid in ("10.0.0.21", "10.0.0.31"):
        report(core, dbid, 1.0, sessions=0, capacity=2, delay=200.0)
    inst = core.catalogue.instances[_new_flow(core, 44000, 1.1)]
    assert instance_view(core, inst, 1.25)["placed_since_report"] == 1
    assert instance_view(core, inst, 1.35)["placed_since_report"] == 0


def test_placements_on_a_large_instance_do_not_recompute_every_new_flow() -> None:
    """A few flows on an instance with room for many barely move its cost: no recompute."""
    core = figure2_core()
    report(core, "10.0.0.21", 1.0, sessions=0, capacity=1000)
    report(core, "10.0.0.31", 1.0, sessions=0, capacity=1000)
    for i in range(50):
        _new_flow(core, 42000 + i, 1.1)
    assert core.counters["new_flows"] == 50
    assert core.counters["placement_redecisions"] == 0


def test_a_redecision_within_the_hysteresis_lets_the_pick_stand() -> None:
    """Far-away instances: placements move their compute cost a lot but their total cost
    little. The ingress decides again, keeps its decision, and the rotation is not disturbed:
    equal instances still alternate."""
    cfg = ControllerConfig(services=(SVC1, SVC2), selection=SelectionConfig(
        spread=0.3, sharpness=4.0, hysteresis=0.15, hop_ms=100.0))
    core = figure2_core(cfg)
    for dbid in ("10.0.0.21", "10.0.0.31"):  # one flow on one worker: compute +100 %,
        report(core, dbid, 1.0, sessions=0, capacity=1)  # in all +5 %
    picks = [_new_flow(core, 43000 + i, 1.1 + i * 0.001) for i in range(6)]
    assert core.counters["placement_redecisions"] >= 1
    assert all(a != b for a, b in itertools.pairwise(picks)), picks


def test_the_configured_grace_decides_which_placements_a_report_may_not_show() -> None:
    """`placed_grace_s` from the configuration file reaches the core: a placement 0.05 s
    before a report still counts with a 0.1 s grace, and not with the default 0.02 s."""
    from controller.config import config_from_dict

    counts = []
    for extra in ({}, {"placed_grace_s": 0.1}):
        cfg = config_from_dict({"controller": {"selection": {"spread": 0.3, "sharpness": 4.0,
                                                             **extra}}})
        core = figure2_core(dataclasses.replace(cfg, services=(SVC1, SVC2)))
        report(core, "10.0.0.21", 1.0, sessions=0, capacity=2, delay=500.0)  # held 0.5 s
        report(core, "10.0.0.31", 1.0, sessions=1, capacity=2, delay=500.0)
        assert _new_flow(core, 40000, 1.1) == "10.0.0.21"
        report(core, "10.0.0.21", 1.15, sessions=0, capacity=2, delay=500.0)
        inst = core.catalogue.instances["10.0.0.21"]
        counts.append(instance_view(core, inst, 1.16)["placed_since_report"])
    assert counts == [0, 1]


def _served(capacity: int, sessions: int, queue: int, hold: int, arrivals: list[int],
            at: int) -> tuple[int, int]:
    """An independent model of the instance, a millisecond at a time: `capacity` workers,
    the report's sessions ending one per `hold / capacity` ms (as ageing assumes), its queue
    and then each placement (arriving at `arrivals`, ms after the report, in order) taking a
    worker as one frees, each for `hold` ms. The requests still there at `at` ms, and how
    many of them are placements."""
    step = hold // capacity
    idle = min([0, *arrivals]) - 1  # an idle worker was idle before anything arrived
    busy = [step * (i + 1) for i in range(sessions)] + [idle] * (capacity - sessions)
    owner = ["report"] * sessions + [""] * (capacity - sessions)  # whose request each worker ends
    waiting = ["report"] * queue
    pending = sorted(arrivals)
    start = min([0, *pending])
    for t in range(start, at + 1):
        while pending and pending[0] <= t:
            pending.pop(0)
            waiting.append("placed")
        for w in range(capacity):
            if busy[w] <= t and waiting and (t >= 0 or waiting[0] == "placed"):
                busy[w], owner[w] = t + hold, waiting.pop(0)
    running = [owner[w] for w in range(capacity) if busy[w] > at]
    there = running + waiting + ["placed"] * len(pending)
    return len(there), there.count("placed")


@pytest.mark.parametrize("seed", range(300))
def test_placements_wait_behind_the_reported_queue_as_an_independent_model_says(seed: int) -> None:
    """The count of requests at an instance some time after its report (workers.py), its
    report's and the placements sharing the workers, equals a millisecond-by-millisecond
    model of the workers, for random reports, holding times and placements, before and after
    the report."""
    import random

    rng = random.Random(seed)
    capacity = rng.randint(1, 4)
    sessions = rng.randint(0, capacity)
    queue = rng.randint(0, 6) if sessions == capacity else 0
    hold = capacity * rng.randint(5, 60)  # ms, a multiple of the capacity: whole steps
    at = rng.randint(0, 4 * hold)
    arrivals = sorted(rng.randint(-20, at) for _ in range(rng.randint(1, 12)))
    m = Metrics(cpu=0.0, sessions=sessions, queue=queue, capacity=capacity)
    # a placement before the report found a worker the report shows idle (the others were busy
    # with the requests it shows): the model's workers start idle before it
    workers = Workers(m, 0.0, hold / 1000)
    for a in arrivals:
        workers.place(a / 1000)
    got = workers.count((at + 0.5) / 1000)  # half a millisecond on: no request ends then
    assert got == _served(capacity, sessions, queue, hold, arrivals, at), (
        capacity, sessions, queue, hold, at, arrivals)


def test_a_flow_placed_behind_a_full_instance_counts_until_it_is_served() -> None:
    """e21 reports both workers busy and two requests waiting, 100 ms each: its backlog ends
    0.2 s later. Two flows placed on it just after the report wait behind that backlog and are
    served 0.15-0.25 and 0.2-0.3 s after it. At 1.21, the backlog served, they are both still
    there: e21 costs 150 ms (both workers busy), and a recompute then keeps new flows on e31
    (110 ms, ten idle workers). Counted for one holding time from their placement, as if a
    worker had taken them at once, they would be gone by 1.21 and e21 would look idle (100
    ms): it would share new flows with e31 while its real queue was still full."""
    core = _core(placed=True)
    core.report("10.0.0.21", Metrics(cpu=1.0, sessions=2, queue=2, capacity=2,
                                     service_ms=100.0), 1.0)
    core.report("10.0.0.31", Metrics(cpu=0.0, sessions=0, queue=0, capacity=2,
                                     service_ms=110.0), 1.0)
    for _ in range(2):
        core.decisions.placed(SVC1, "10.0.0.21", 1.001)
    e21 = core.catalogue.instances["10.0.0.21"]
    seen = {t: (core.decisions.compute_ms(SVC1, e21, t),
                instance_view(core, e21, t)["placed_since_report"])
            for t in (1.21, 1.27, 1.31)}
    assert seen == {1.21: (pytest.approx(150.0), 2), 1.27: (pytest.approx(100.0), 1),
                    1.31: (pytest.approx(100.0), 0)}
    core.report("10.0.0.31", Metrics(cpu=0.0, sessions=0, queue=0, capacity=10,
                                     service_ms=110.0), 1.21)
    assert {_new_flow(core, 45000 + i, 1.21) for i in range(4)} == {"10.0.0.31"}


def test_placements_on_an_instance_that_stops_reporting_are_counted_up_to_a_bound() -> None:
    """New flows keep coming to an instance whose D-MA fell silent, far faster than its one
    worker serves them: its queue grows with each, but at most the last COUNTED placements
    are kept and counted, so memory stays bounded however long the reports stay away."""
    from controller.selection.workers import COUNTED

    workers = Workers(Metrics(cpu=0.0, sessions=0, queue=0, capacity=1), 0.0, 0.1)
    for i in range(3 * COUNTED):
        workers.place(i * 0.001)
    assert workers.count(3 * COUNTED * 0.001) == (COUNTED, COUNTED)
    assert workers.count(1e6) == (0, 0)


def test_a_report_of_millions_of_workers_is_modelled_within_the_bound() -> None:
    """A report may give a capacity of millions: the model keeps only the workers that free
    first (no more than it counts placements), so it is built in bounded memory, and a
    placement there still finds a free worker at once."""
    import tracemalloc

    from controller.selection.workers import COUNTED

    for sessions, queue in ((3, 0), (10_000_000, 5)):
        m = Metrics(cpu=0.5, sessions=sessions, queue=queue, capacity=10_000_000)
        tracemalloc.start()
        workers = Workers(m, 0.0, 0.1)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 64 * COUNTED  # bytes: a few per modelled worker, not per worker
        workers.place(0.0)
        assert workers.count(1e-9) == (sessions + queue + 1, 1)  # before any request ends

"""Metric intake: every report is recorded, each service recomputed once a burst, big batches in
slices, and nothing that uses a decision sees it before the reports it has not seen yet."""

from __future__ import annotations

import copy
import json
import math
import random
from typing import Any

from controller.api import DECISION_SLICE, Api, Reply
from controller.instances.intake import SLICE, slices
from controller.intents import VIRTUAL_MAC
from controller.model import Metrics
from tests.helpers import HOSTS, all_fresh, figure2_core, flow_mods, tcp_frame

SVC1 = ("10.0.0.21", "10.0.0.31")
ALL = ("10.0.0.21", "10.0.0.31", "10.0.0.22", "10.0.0.32")


def _raw(dbid: str, sessions: int, cpu: float = 0.1) -> dict[str, Any]:
    return {"dbid": dbid, "cpu": cpu, "sessions": sessions, "queue": 0, "capacity": 50}


def _drive(api: Api, body: object, clock: list[float]) -> tuple[Reply, list[list[Any]]]:
    """POST /metrics through `Api.steps`, as the shell does: between two steps the clock
    advances by 1 ms; returns the reply and, per step, the slices recorded during it."""
    recorded: list[list[Any]] = [[]]
    apply = api.core.intake.apply

    def spy(part: Any, now: float, *rest: Any) -> int:
        recorded[-1].append((list(part), now))
        return apply(part, now, *rest)

    api.core.intake.apply = spy  # type: ignore[method-assign]
    steps = api.steps("POST", "/dyncast/v1/metrics", json.dumps(body).encode(), clock[-1])
    step = next(steps)
    while not isinstance(step, Reply):
        clock.append(clock[-1] + 0.001)
        recorded.append([])
        step = steps.send(clock[-1])
    return step, recorded


def _snapshot(api: Api) -> tuple[Any, ...]:
    core = api.core
    return (copy.deepcopy(core.catalogue.instances), dict(core.engine.decisions),
            set(core.intake.dirty), core.counters["metric_reports"])


def test_slices_cover_every_item_in_order() -> None:
    """Slicing keeps every item, in order, in runs of at most the slice size."""
    items = list(range(2 * SLICE + 3))
    parts = slices(items)
    assert [len(p) for p in parts] == [SLICE, SLICE, 3]
    assert [x for p in parts for x in p] == items and slices([]) == []


def test_a_burst_of_reports_costs_one_recompute_per_service() -> None:
    """Forty reports for two services recompute nothing until the flush, which recomputes
    each service once (at every ingress); a second flush has nothing left to do."""
    core = figure2_core()
    ingresses = len(core.decisions.ingresses())
    before = core.engine.recomputed
    core.intake.apply([(ALL[k % 4], Metrics(0.1, k, 0, 50)) for k in range(40)], 1.0)
    assert core.engine.recomputed == before and core.intake.pending() == ["svc1", "svc2"]
    core.flush(1.0)
    assert core.engine.recomputed == before + 2 * ingresses
    assert core.flush(1.0) == [] and core.engine.recomputed == before + 2 * ingresses


def test_every_report_is_recorded_and_the_last_one_per_instance_wins() -> None:
    """A 2,345-report batch in random order: all are accepted and counted, and each instance
    holds the last report sent for it."""
    api = Api(figure2_core())
    rng = random.Random(15)
    batch = [_raw(rng.choice(ALL), rng.randrange(50)) for _ in range(2345)]
    reply, _ = _drive(api, {"reports": batch}, [1.0])
    assert reply.status == 200 and reply.body["accepted"] == len(batch)
    assert api.core.counters["metric_reports"] == len(batch)
    last = {r["dbid"]: r["sessions"] for r in batch}
    assert {d: api.core.catalogue.instances[d].metrics.sessions for d in ALL} == last


def test_a_large_batch_is_checked_then_recorded_in_bounded_slices() -> None:
    """A 2,345-report batch takes one step per slice to check, then one per slice to record
    (the last check and the first record share a step): nothing is recorded before every
    slice passed, no step records more than a slice, each at the time the shell went on at."""
    api = Api(figure2_core())
    batch = [_raw(ALL[k % 4], k % 50) for k in range(2345)]
    clock = [1.0]
    reply, recorded = _drive(api, {"reports": batch}, clock)
    n = math.ceil(len(batch) / SLICE)
    assert reply.status == 200 and len(recorded) == 2 * n - 1
    assert all(step == [] for step in recorded[:n - 1])  # checking: nothing recorded yet
    assert all(len(step) == 1 for step in recorded[n - 1:])  # one slice a step
    sizes = [len(part) for step in recorded[n - 1:] for part, _ in step]
    assert sizes == [SLICE] * (n - 1) + [len(batch) - SLICE * (n - 1)]
    assert [now for step in recorded[n - 1:] for _, now in step] == clock[n - 1:]
    assert api.core.intake.pending() == ["svc1", "svc2"]  # recomputed later, once


def test_a_bad_report_in_the_last_slice_rejects_the_whole_batch() -> None:
    """A bad value in the last of many slices: 400 naming it, and nothing recorded."""
    api = Api(figure2_core())
    batch = [_raw(ALL[k % 4], 1) for k in range(1000)]
    batch[-1]["cpu"] = 3.0
    before = _snapshot(api)
    reply, _ = _drive(api, {"reports": batch}, [1.0])
    assert reply.status == 400 and reply.body["field"] == "reports[999].cpu"
    batch[-1] = _raw("10.0.0.77", 1)
    reply, _ = _drive(api, {"reports": batch}, [1.0])
    assert reply.status == 404 and "10.0.0.77" in reply.body["error"]
    assert _snapshot(api) == before


def test_reports_for_an_instance_withdrawn_between_slices_are_dropped() -> None:
    """An instance withdrawn while its batch is being recorded: its later reports are dropped
    and counted, every other report is recorded."""
    api = Api(figure2_core())
    batch = [_raw(ALL[k % 4], 2) for k in range(3 * SLICE)]
    steps = api.steps("POST", "/dyncast/v1/metrics", json.dumps({"reports": batch}).encode(),
                      1.0)
    for _ in range(3):  # three steps of checking; the last records the first slice
        step = next(steps)
    api.core.withdraw("10.0.0.32", 1.0)
    while not isinstance(step, Reply):
        step = next(steps)
    gone = sum(1 for r in batch[SLICE:] if r["dbid"] == "10.0.0.32")
    assert step.body["accepted"] == len(batch) - gone
    assert api.core.counters["reports_dropped"] == gone


def test_a_batch_never_lands_on_an_instance_another_agent_registered_meanwhile() -> None:
    """The batch's agent ("dma") reports on 10.0.0.32; between two slices it is withdrawn
    and agent "dma-b" registers it again, inactive, and the operator asks it to reactivate:
    the batch's later reports on it are dropped (not recorded as dma-b's instance's, nor
    making it `active`), and the command stays for dma-b's next report, not handed to the
    batch's answer. (The gate admitted the batch for dma's instance: apps/security.py.)"""
    api = Api(figure2_core())
    x = "10.0.0.32"
    batch = [_raw(ALL[k % 4], 2) for k in range(3 * SLICE)]
    assert any(r["dbid"] == x for r in batch[2 * SLICE:])
    steps = api.steps("POST", "/dyncast/v1/metrics", json.dumps({"reports": batch}).encode(),
                      1.0)
    for _ in range(3):  # three steps of checking; the last records the first slice
        step = next(steps)
    core = api.core
    core.withdraw(x, 1.0)
    core.register("10.0.100.2", x, "dma-b", False, 1.0)
    core.operations.activate(x, "operator", 1.0)
    theirs = core.catalogue.instances[x]
    assert (theirs.state, theirs.metrics_at) == ("activating", None)
    while not isinstance(step, Reply):
        step = next(steps)
    assert (theirs.state, theirs.metrics_at, theirs.dma) == ("activating", None, "dma-b")
    assert step.body["commands"] == []
    gone = sum(1 for r in batch[SLICE:] if r["dbid"] == x)
    assert step.body["accepted"] == len(batch) - gone
    assert core.counters["reports_dropped"] == gone
    assert [c["dbid"] for c in core.states.take([x])] == [x]  # still dma-b's to take


def _syn(core: Any, sport: int, now: float) -> str:
    ip, mac, dpid, port = HOSTS["c1"]
    frame = tcp_frame(mac, VIRTUAL_MAC, ip, "10.0.100.1", sport, 8000)
    return str(flow_mods(core.packet_in(dpid, port, frame, now))[0].actions[1].value)


def test_a_first_packet_sees_the_reports_its_service_has_not_been_recomputed_for() -> None:
    """Reports recorded but not yet recomputed: a new flow of that service is placed as if
    each report had been recomputed at once (same instance, same decision)."""
    eager, lazy = figure2_core(), figure2_core()
    for core in (eager, lazy):
        for dbid in SVC1:
            core.report(dbid, Metrics(0.1, 0, 0, 50), 1.0)
    busy = [("10.0.0.21", Metrics(1.0, 50, 400, 50)), ("10.0.0.31", Metrics(0.1, 0, 0, 50))]
    for dbid, metrics in busy:
        eager.report(dbid, metrics, 2.0)
    lazy.intake.apply(busy, 2.0)
    assert lazy.intake.pending() == ["svc1"]
    assert _syn(lazy, 40000, 2.0) == _syn(eager, 40000, 2.0) == "10.0.0.31"
    assert lazy.engine.decisions == eager.engine.decisions and not lazy.intake.dirty


def test_get_decisions_and_tick_recompute_dirty_services_first() -> None:
    """GET /decisions shows decisions that have seen every recorded report, one service a
    step; a tick recomputes what is still dirty."""
    api = Api(figure2_core())
    all_fresh(api.core, 0.5)
    idle = api.core.engine.decisions[(2, "svc1")].shares  # at switch 2, next to .21 and .22
    assert idle["10.0.0.21"] > idle["10.0.0.31"]
    api.core.intake.apply([("10.0.0.21", Metrics(1.0, 50, 400, 50)),
                           ("10.0.0.22", Metrics(1.0, 50, 400, 50))], 1.0)
    steps = list(api.steps("GET", "/dyncast/v1/decisions", b"", 1.0))
    views = math.ceil(len(api.core.engine.decisions) / DECISION_SLICE)  # rows, a slice a step
    assert len(steps) == 2 + views - 1  # a step per dirty service, the first view with the last
    assert isinstance(steps[-1], Reply) and not api.core.intake.dirty
    shares = {(r["service"], c["dbid"]): c["share"] for r in steps[-1].body
              for c in r["candidates"] if r["ingress"] == 2}
    assert shares[("svc1", "10.0.0.21")] < shares[("svc1", "10.0.0.31")]
    assert shares[("svc2", "10.0.0.22")] < shares[("svc2", "10.0.0.32")]
    api.core.intake.apply([("10.0.0.31", Metrics(1.0, 50, 400, 50))], 2.0)
    api.core.tick(2.0)
    assert not api.core.intake.dirty


def test_a_burst_queues_one_store_write_per_instance() -> None:
    """Many reports for one instance leave one store write, its last; a write that failed
    goes back in front without replacing a newer one."""
    core = figure2_core()
    core.drain_writes()
    core.intake.apply([(ALL[k % 2], Metrics(0.1, k, 0, 50)) for k in range(30)], 1.0)
    writes = core.drain_writes()
    assert [(w.kind, w.key) for w in writes] == [("instance", ALL[0]), ("instance", ALL[1])]
    assert [w.value["metrics"]["sessions"] for w in writes if w.value] == [28, 29]
    core.intake.apply([(ALL[0], Metrics(0.1, 3, 0, 50))], 2.0)
    core.writes.requeue(writes)
    again = core.drain_writes()
    assert [(w.key, w.value["metrics"]["sessions"]) for w in again if w.value] == [
        (ALL[1], 29), (ALL[0], 3)]

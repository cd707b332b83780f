"""Instance life cycle in the core: reactivation of an inactive instance under load, scale-in
with drain and stop, the D-MA command channel, and the logged history."""

from __future__ import annotations

import dataclasses
import json

from controller.api import Api
from controller.config import ControllerConfig, SelectionConfig
from controller.core import Core
from controller.instances.health import HealthConfig
from controller.intents import CookieKind, cookie
from controller.model import ScalingPolicy
from controller.network.packet import ARP_REQUEST, BROADCAST, build_arp
from controller.views import stats_view
from tests.helpers import SVC1, SVC2, bind_flow, figure2_core, report, see_links

SPARE = "10.0.0.23"  # a third svc1 instance at r2, registered inactive
SCALING = ScalingPolicy(high=0.5, low=0.2, hold_s=2.0, cooldown_s=10.0,
                        activation_timeout_s=5.0, scale_in=True, min_active=2,
                        drain_deadline_s=20.0)
CFG = ControllerConfig(services=(dataclasses.replace(SVC1, scaling=SCALING), SVC2),
                       stale_after_s=3.0, probe_timeout_s=2.0,
                       selection=SelectionConfig(spread=0.3, sharpness=4.0, hysteresis=0.15))


def _core() -> Core:
    core = figure2_core(CFG)
    core.packet_in(2, 2, build_arp(ARP_REQUEST, "00:00:00:00:00:23", SPARE, BROADCAST,
                                   "10.0.0.254"), 0.0)
    core.register("10.0.100.1", SPARE, "dma-spare", False, 0.0)
    return core


def _load(core: Core, now: float, sessions: int) -> None:
    """Report both active svc1 instances at sessions/10 load, svc2 idle, and tick."""
    for dbid in ("10.0.0.21", "10.0.0.31"):
        report(core, dbid, now, sessions=sessions)
    for dbid in ("10.0.0.22", "10.0.0.32"):
        report(core, dbid, now)
    see_links(core, now)
    core.tick(now)


def _post(api: Api, path: str, body: object, now: float):
    return api.handle("POST", f"/dyncast/v1/{path}", json.dumps(body).encode(), now)


def _spare_report(api: Api, now: float, active: bool):
    body = {"dbid": SPARE, "cpu": 0.0, "sessions": 0, "queue": 0, "capacity": 10,
            "active": active}
    return _post(api, "metrics", body, now)


def test_inactive_instance_is_reactivated_when_every_active_one_stays_loaded() -> None:
    """Both active instances above `high` for hold_s: the D-MA of the inactive one gets the
    trigger in its next metrics answer; once it reports serving it takes new flows, and no
    flow bound before changes instance."""
    core = _core()
    api = Api(core)
    assert core.catalogue.instances[SPARE].state == "inactive"
    for t in range(1, 5):
        _load(core, float(t), sessions=8)
    assert core.catalogue.instances[SPARE].state == "activating"
    for n in range(6):
        bind_flow(core, 40000 + n, 4.0)
    before = {b.ident: b.dbid for b in core.bindings.all()}
    assert SPARE not in before.values()
    reply = _spare_report(api, 4.5, active=False)
    (cmd,) = reply.body["commands"]
    assert (cmd["op"], cmd["dbid"], cmd["dsid"]) == ("reactivate", SPARE, "10.0.100.1")
    assert _spare_report(api, 4.6, active=False).body["commands"] == []  # delivered once
    _spare_report(api, 5.0, active=True)
    assert core.catalogue.instances[SPARE].state == "active"
    after = [bind_flow(core, 41000 + n, 5.0) for n in range(6)]
    assert SPARE in after
    assert {b.ident: b.dbid for b in core.bindings.all() if b.ident in before} == before
    history = [(h["from"], h["to"], h["event"]) for h in
               api.handle("GET", f"/dyncast/v1/instances/{SPARE}", b"", 5.0).body["history"]]
    assert history == [("unknown", "inactive", "register"),
                       ("inactive", "activating", "activate"),
                       ("activating", "active", "report_active")]
    stats = stats_view(core)
    assert stats["reactivations"] == 1 and stats["reactivations_completed"] == 1


def test_activation_that_never_completes_times_out_to_inactive() -> None:
    """A D-MA that never reports the instance serving: back to inactive after the timeout,
    its undelivered trigger dropped; a later overload may try again after the cool-down."""
    core = _core()
    for t in range(1, 5):
        _load(core, float(t), sessions=8)
    assert core.catalogue.instances[SPARE].state == "activating"
    for t in range(5, 10):
        _load(core, float(t), sessions=8)
    spare = core.catalogue.instances[SPARE]
    assert spare.state == "inactive" and core.states.pending == {}
    assert spare.history[-1].event == "activation_timeout"
    for t in range(10, 15):  # the cool-down (10 s from t=3) has passed at t=13
        _load(core, float(t), sessions=8)
    assert spare.state == "activating" and stats_view(core)["reactivations"] == 2


def test_scale_in_drains_then_stops_an_instance_once_its_flows_have_ended() -> None:
    """Low load: the least useful instance drains (its flows stay), then its D-MA is told to
    stop it once no flow is bound to it; its `not serving` report makes it inactive."""
    core = _core()
    api = Api(core)
    report(core, SPARE, 0.5)
    _load(core, 0.5, sessions=1)
    flows = {n: bind_flow(core, 42000 + n, 0.5) for n in range(9)}
    for t in range(1, 5):
        _load(core, float(t), sessions=1)
        report(core, SPARE, float(t))
    drained = [i for i in core.catalogue.instances.values() if i.state == "draining"]
    assert len(drained) == 1 and drained[0].stop_when_drained
    victim = drained[0].dbid
    assert drained[0].drain_deadline == 3.0 + SCALING.drain_deadline_s
    on_victim = [b for b in core.bindings.all() if b.dbid == victim]
    assert on_victim and all(bind_flow(core, 43000 + n, 4.0) != victim for n in range(6))
    assert [b.dbid for b in core.bindings.all()][:len(flows)] == list(flows.values())
    assert core.states.pending.get(victim) is None  # flows still bound: no stop yet
    for b in on_victim:
        core.flow_removed(b.ingress, cookie(CookieKind.AFFINITY_FWD, b.ident), "idle", 6.0)
    core.tick(6.5)
    body = {"dbid": victim, "cpu": 0.0, "sessions": 0, "queue": 0, "capacity": 10}
    (cmd,) = _post(api, "metrics", body, 7.0).body["commands"]
    assert cmd["op"] == "deactivate" and cmd["dbid"] == victim
    _post(api, "metrics", {**body, "active": False}, 8.0)
    inst = core.catalogue.instances[victim]
    assert inst.state == "inactive" and not inst.stop_when_drained
    assert stats_view(core)["scale_ins"] == 1 and stats_view(core)["affinity_moves"] == 0


def test_scale_in_deadline_moves_the_last_flows_before_the_stop() -> None:
    """Flows still bound when the drain deadline passes move to a live instance (counted);
    only then is the stop sent."""
    core = _core()
    report(core, SPARE, 0.5)
    _load(core, 0.5, sessions=1)
    for n in range(9):
        bind_flow(core, 44000 + n, 0.5)
    for t in range(1, 5):
        report(core, SPARE, float(t))  # before the tick: every instance reported
        _load(core, float(t), sessions=1)
    victim = next(i.dbid for i in core.catalogue.instances.values() if i.state == "draining")
    held = sum(1 for b in core.bindings.all() if b.dbid == victim)
    assert held > 0
    for t in (10.0, 20.0):
        report(core, SPARE, t)
        _load(core, t, sessions=1)
    assert core.states.pending.get(victim) is None
    report(core, SPARE, 23.5)
    _load(core, 23.5, sessions=1)
    assert victim not in {b.dbid for b in core.bindings.all()}
    assert stats_view(core)["drain_deadline_moves"] == held
    assert core.states.pending[victim][0].op == "deactivate"


def test_operator_verbs_follow_the_table_and_refuse_what_it_forbids() -> None:
    """activate/deactivate/drain/undrain answer 409 naming the states they need when the
    state forbids them (field `state`), and change nothing."""
    core = _core()
    api = Api(core)
    report(core, "10.0.0.21", 1.0)
    bad = _post(api, "instances/10.0.0.21/activate", {}, 1.0)
    assert (bad.status, bad.body["field"]) == (409, "state")
    assert bad.body["error"] == "instance is active: 'activate' needs it inactive", bad.body
    bad = _post(api, f"instances/{SPARE}/undrain", {}, 1.0)  # (it listed internal events)
    assert bad.body["error"] == "instance is inactive: 'undrain' needs it draining", bad.body
    assert _post(api, f"instances/{SPARE}/drain", {}, 1.0).status == 409
    assert _post(api, f"instances/{SPARE}/undrain", {}, 1.0).status == 409
    ok = _post(api, f"instances/{SPARE}/activate", {}, 1.0)
    assert ok.status == 200 and ok.body["state"] == "activating"
    assert ok.body["pending_commands"][0]["op"] == "reactivate"
    assert _post(api, "instances/10.0.0.21/deactivate", {"deadline_s": "x"}, 1.0).status == 400
    assert core.catalogue.instances["10.0.0.21"].state == "active"
    off = _post(api, "instances/10.0.0.21/deactivate", {"deadline_s": 5}, 1.0)
    assert off.status == 200 and off.body["state"] == "draining"
    assert off.body["stop_when_drained"] and off.body["pending_commands"][0]["op"] == "deactivate"


def test_transitions_are_queued_for_the_log_and_survive_a_restart() -> None:
    """Every change is queued for the shell's log, and the history is in the stored record."""
    from apps.store import Store

    core = _core()
    report(core, "10.0.0.21", 1.0)
    logged = core.states.drain_log()
    assert any(t.dbid == "10.0.0.21" and (t.src, t.dst) == ("unknown", "active")
               for t in logged)
    assert core.states.drain_log() == []
    store = Store("sqlite://")
    store.apply(core.drain_writes())
    (stored,) = [i for i in store.load().instances if i.dbid == "10.0.0.21"]
    assert stored.state == "active" and [h.dst for h in stored.history] == ["unknown", "active"]


def test_an_ejected_instance_is_not_counted_in_the_service_load() -> None:
    """10.0.0.31's service died behind a live D-MA: passive health ejected it and its D-MA
    still reports it idle. 10.0.0.21 carries everything, loaded above `high` for hold_s: the
    spare is reactivated (judged with 10.0.0.31, the mean would be 0.4 and nothing would
    happen)."""
    health = HealthConfig(enabled=True, base_eject_s=60.0, max_eject_s=60.0)
    core = figure2_core(dataclasses.replace(CFG, health=health))
    core.packet_in(2, 2, build_arp(ARP_REQUEST, "00:00:00:00:00:23", SPARE, BROADCAST,
                                   "10.0.0.254"), 0.0)
    core.register("10.0.100.1", SPARE, "dma-spare", False, 0.0)
    active = ["10.0.0.21", "10.0.0.31"]
    assert not any(core.health.state.refused("10.0.0.31", active, 0.5 + k / 10) for k in range(2))
    assert core.health.state.refused("10.0.0.31", active, 0.7)
    for t in range(1, 5):
        report(core, "10.0.0.21", float(t), sessions=8)
        report(core, "10.0.0.31", float(t), sessions=0)
        for dbid in ("10.0.0.22", "10.0.0.32"):
            report(core, dbid, float(t))
        see_links(core, float(t))
        core.tick(float(t))
    assert core.catalogue.instances["10.0.0.31"].state == "active"
    assert core.catalogue.instances[SPARE].state == "activating"

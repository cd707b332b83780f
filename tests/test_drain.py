"""Operator drain: no new flows to a drained instance; its flows stay until a deadline."""

from __future__ import annotations

import json

from controller.api import Api
from controller.views import stats_view
from tests.helpers import FAILURES_CFG as CFG
from tests.helpers import all_fresh, bind_flow, figure2_core


def _post(api: Api, path: str, body: object = None, now: float = 1.0):
    data = b"" if body is None else json.dumps(body).encode()
    return api.handle("POST", f"/dyncast/v1/{path}", data, now)


def test_drained_instance_gets_no_new_flows_and_keeps_its_bound_ones() -> None:
    """After drain, every new flow goes elsewhere; flows bound before keep the instance."""
    api = Api(figure2_core(CFG))
    all_fresh(api.core, 1.0)
    before = [bind_flow(api.core, 46000 + i, 1.0) for i in range(4)]
    reply = _post(api, "instances/10.0.0.31/drain")
    assert reply.status == 200 and reply.body["state"] == "draining"
    assert {bind_flow(api.core, 47000 + i, 1.0) for i in range(6)} == {"10.0.0.21"}
    assert [b.dbid for b in api.core.bindings.all()[:4]] == before
    reply = _post(api, "instances/10.0.0.31/undrain")
    assert reply.status == 200 and reply.body["state"] == "active"
    all_fresh(api.core, 1.5)  # reports after the flows above ended: idle again
    assert {bind_flow(api.core, 48000 + i, 1.5) for i in range(6)} == {"10.0.0.21", "10.0.0.31"}


def test_drain_deadline_moves_the_remaining_flows() -> None:
    """When the drain deadline passes, flows still bound to the instance move and are counted."""
    api = Api(figure2_core(CFG))
    all_fresh(api.core, 1.0)
    [bind_flow(api.core, 49000 + i, 1.0) for i in range(4)]
    assert _post(api, "instances/10.0.0.31/drain", {"deadline_s": 5}).status == 200
    api.core.tick(3.0)
    assert "10.0.0.31" in {b.dbid for b in api.core.bindings.all()}
    for dbid in ("10.0.0.21", "10.0.0.22", "10.0.0.31", "10.0.0.32"):
        from tests.helpers import report, see_links

        report(api.core, dbid, 6.0)
        see_links(api.core, 6.0)
    api.core.tick(6.0)
    assert {b.dbid for b in api.core.bindings.all()} == {"10.0.0.21"}
    assert stats_view(api.core)["drain_deadline_moves"] == 2


def test_drain_rejects_bad_input() -> None:
    """Unknown instance 404, bad deadline or key 400, unknown action 400; nothing changes."""
    api = Api(figure2_core(CFG))
    assert _post(api, "instances/10.0.0.77/drain").status == 404
    bad = _post(api, "instances/10.0.0.31/drain", {"deadline_s": -1})
    assert bad.status == 400 and bad.body["field"] == "deadline_s"
    assert _post(api, "instances/10.0.0.31/drain", {"until": 3}).body["field"] == "until"
    assert _post(api, "instances/10.0.0.31/pause").status == 400
    assert not api.core.catalogue.instances["10.0.0.31"].draining


def test_moved_client_keeps_its_instance_at_the_new_ingress() -> None:
    """A bound flow that shows up at another ingress (the client moved) gets the same
    instance installed there, never a new decision (CATS R20)."""
    from controller.intents import VIRTUAL_MAC, CookieKind, cookie_kind
    from tests.helpers import HOSTS, flow_mods, tcp_frame

    core = figure2_core(CFG)
    all_fresh(core, 1.0)
    first = bind_flow(core, 50000, 1.0)
    ip, mac, _, _ = HOSTS["c1"]
    moved = core.packet_in(2, 1, tcp_frame(mac, VIRTUAL_MAC, ip, "10.0.100.1", 50000, 8000),
                           2.0)
    routes = [f for f in flow_mods(moved) if f.table == 1]
    assert {f.dpid for f in routes} == {1, 2, 4}  # the client's host route follows it
    fwd = [f for f in flow_mods(moved) if f.table == 0 and f.command == "add"]
    assert {f.dpid for f in fwd} == {2} and fwd[0].actions[1].value == first
    gone = [f for f in flow_mods(moved) if f.command == "delete"]
    assert {(f.dpid, cookie_kind(f.cookie)[0]) for f in gone} == {  # type: ignore[index]
        (1, CookieKind.AFFINITY_FWD), (1, CookieKind.AFFINITY_REV)}
    (binding,) = core.bindings.all()
    assert binding.ingress == 2 and binding.dbid == first


def test_forwarder_binds_locally_with_its_routers_decision() -> None:
    """At a D-Forwarder a new flow takes its D-Router's decision and the binding is installed
    at the forwarder; the forwarder keeps no decision of its own and /decisions says so."""
    import dataclasses

    from controller.intents import VIRTUAL_MAC
    from tests.helpers import HOSTS, flow_mods, report, tcp_frame

    core = figure2_core(dataclasses.replace(CFG, forwarders=((2, 1),)))  # r2 relies on r1
    all_fresh(core, 1.0)
    report(core, "10.0.0.31", 1.0, sessions=9)  # from r1, e2 is now clearly the better choice
    assert all(k[0] != 2 for k in core.engine.decisions)
    ip, mac, dpid, port = HOSTS["c2"]
    fwd = [f for f in flow_mods(core.packet_in(dpid, port, tcp_frame(
        mac, VIRTUAL_MAC, ip, "10.0.100.1", 52000, 8000), 2.0)) if f.table == 0]
    assert {f.dpid for f in fwd} == {2}
    assert fwd[0].actions[1].value == core.engine.decisions[(1, "svc1")].primary
    rows = Api(core).handle("GET", "/dyncast/v1/decisions/svc1", b"", 2.0).body
    assert {(r["ingress"], r["role"], tuple(r["forwarders"])) for r in rows} == {
        (1, "router", (2,)), (3, "router", ()), (4, "router", ())}


def test_forwarder_config_is_validated() -> None:
    """A forwarder must name another switch, once, and its router must not be a forwarder."""
    import pytest

    from controller.config import config_from_dict
    from controller.errors import ValidationError

    assert config_from_dict({"forwarder": [{"dpid": 4, "router": 1}]}).forwarders == ((4, 1),)
    for bad in ([{"dpid": 1, "router": 1}], [{"dpid": 4, "router": 1}, {"dpid": 1, "router": 2}],
                [{"dpid": 4}], [{"dpid": 4, "router": 1, "via": 2}]):
        with pytest.raises(ValidationError):
            config_from_dict({"forwarder": bad})


def test_client_seen_elsewhere_takes_its_bindings_before_sending_to_the_dsid() -> None:
    """A moved client announced only by ARP (replies may already be on their way to it) gets
    its bindings, forward and reverse, at the new switch at once; same instance, counted."""
    from controller.intents import CookieKind, cookie_kind
    from tests.helpers import arp_request, flow_mods

    core = figure2_core(CFG)
    all_fresh(core, 1.0)
    first = bind_flow(core, 51000, 1.0)
    core.port_changed(1, 1, up=False, now=2.0)  # c1's port at r1 goes down
    moved = flow_mods(core.packet_in(2, 12, arp_request("c1", "10.0.100.1"), 2.5))
    added = {(f.dpid, cookie_kind(f.cookie)[0]) for f in moved  # type: ignore[index]
             if f.command == "add" and f.table == 0}
    assert added == {(2, CookieKind.AFFINITY_FWD), (2, CookieKind.AFFINITY_REV)}
    (binding,) = core.bindings.all()
    assert (binding.ingress, binding.dbid) == (2, first)
    assert stats_view(core)["client_moves"] == 1

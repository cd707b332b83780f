"""`conntrack` on Figure 2's fake switches: what differs from the other switch-decided modes.

The shared behaviour (new flows spread without the controller, replies from the D-SID,
established flows kept across a decision change, a reconnected switch, a lost instance's and a
drain deadline's flows moved) runs for `conntrack` in tests/test_pipelines.py. Here: the
affinity lives in the switches' connection tracker, so it survives a wipe and reinstall of
every table and outlasts `idle_timeout`; a lost instance's connections are flushed from it;
a retirement waits for its drain deadline when the trackers are not read
(tests/test_tracker.py: when they are)."""

from __future__ import annotations

from collections import Counter

import pytest

from controller.api import Api
from controller.errors import ValidationError
from controller.intents import CtFlush
from controller.model import check_unique, service_from_dict
from controller.network.packet import TCP_ACK, TCP_SYN
from controller.views import stats_view
from tests.fakeoftable import FakeOFTable
from tests.helpers import HOSTS, PORTS, figure2_core
from tests.test_api import _call
from tests.test_pipelines import (
    ATTACHED_PORT,
    DSID,
    E21,
    E31,
    FLOWS,
    IDLE_S,
    NEW_FLOWS,
    SERVICES,
    Figure2,
    connect,
    to_dsid,
)

SVC = SERVICES["conntrack"]


def test_new_connections_are_committed_by_the_switch_with_the_decisions_instance() -> None:
    """Every new connection is committed in the service's zone, translated to the instance the
    decision chose and marked with its label; none reaches the controller."""
    fig = Figure2(SVC)
    seen = [fig.go(sport, TCP_SYN) for sport in FLOWS]
    assert not any(punted for _, punted in seen)
    conns = fig.net.conntrack.entries(SVC.ct_zone)
    assert len(conns) == len(FLOWS)
    labels = {fig.core.programmer.label(d): d for d in (E21, E31)}
    for c in conns:
        assert labels[c.mark] == _ip(c.nat_dst)
    assert Counter(d for d, _ in seen) == {E21: 8, E31: 8}


def _ip(value: int | None) -> str:
    assert value is not None
    return ".".join(str(value >> s & 0xFF) for s in (24, 16, 8, 0))


def test_connections_survive_a_wipe_and_reinstall_of_every_table_with_a_new_decision() -> None:
    """Every switch loses every entry and gets them again from a decision that no longer names
    e21: the tracker still holds each connection's instance, replies still come from the D-SID."""
    fig = Figure2(SVC)
    placed = connect(fig, FLOWS)
    fig.busy(E21)
    for dpid in PORTS:
        fig.net.switches[dpid] = FakeOFTable(dpid, fig.net.conntrack)
        fig.apply(fig.core.switch_connected(dpid))
        fig.apply(fig.core.switch_ports(dpid, PORTS[dpid], fig.now))
    assert {s: fig.go(s)[0] for s in FLOWS} == placed
    on_e21 = next(s for s, d in placed.items() if d == E21)
    back = fig.reply(fig.send("c1", to_dsid("c1", on_e21)).only()).only()
    assert back.has(ipv4_src=DSID, tcp_dst=on_e21, eth_dst=HOSTS["c1"][1])
    assert set(connect(fig, NEW_FLOWS).values()) == {E31}


def test_affinity_outlasts_the_idle_timeout() -> None:
    """The tracker's own timeouts (minutes to days), not idle_timeout, end a connection."""
    fig = Figure2(SVC)
    placed = connect(fig, FLOWS)
    fig.busy(E21)
    fig.advance(fig.now + 3 * IDLE_S)
    assert {s: fig.go(s)[0] for s in FLOWS} == placed


def test_a_lost_instances_connections_are_flushed_from_the_tracker() -> None:
    """Withdrawn: every switch is told to flush the zone's connections answered from its
    D-BID and service port (NXT_CT_FLUSH), so they are decided again without it (UDP flows
    move; a TCP connection's next segment is not a SYN: Open vSwitch calls it invalid and
    drops it, and the client opens a new one); the others keep theirs."""
    fig = Figure2(SVC)
    placed = connect(fig, FLOWS)
    flushes = [i for i in fig.core.withdraw(E21, fig.now) if isinstance(i, CtFlush)]
    assert {(f.zone, f.reply_src, f.reply_sport) for f in flushes} == {(SVC.ct_zone, E21, 8000)}
    assert sorted(f.dpid for f in flushes) == sorted(PORTS)
    fig.apply(flushes)
    assert {_ip(c.nat_dst) for c in fig.net.conntrack.entries(SVC.ct_zone)} == {E31}
    assert len(fig.net.conntrack.entries()) == sum(d == E31 for d in placed.values())


def test_a_retirement_without_a_deadline_waits_and_one_with_a_deadline_ends_there() -> None:
    """The controller does not read the trackers: a retiring instance is stopped at its drain
    deadline (its connections flushed, so decided again), not before, and without one it is
    not stopped; until then its connections stay on it."""
    fig = Figure2(SVC)
    placed = connect(fig, FLOWS)
    fig.apply(fig.core.deactivate(E21, None, fig.now)[1])
    fig.advance(fig.now + 3 * IDLE_S)
    assert stats_view(fig.core).get("deactivations", 0) == 0
    assert {s: fig.go(s)[0] for s in FLOWS} == placed
    assert set(connect(fig, NEW_FLOWS).values()) == {E31}
    fig.apply(fig.core.deactivate(E31, 3.0, fig.now)[1])
    fig.advance(fig.now + 2)
    assert stats_view(fig.core).get("deactivations", 0) == 0
    fig.advance(fig.now + 2)
    assert stats_view(fig.core).get("deactivations", 0) == 1


def test_an_instances_own_traffic_from_its_service_port_is_left_alone() -> None:
    """A client talking to an instance's D-BID directly gets its replies unchanged (only
    connections committed through the D-SID are translated back)."""
    fig = Figure2(SVC)
    ip = HOSTS["c1"][0]
    e21_mac = HOSTS["e21"][1]
    hop = fig.send("c1", {**to_dsid("c1", 45000, TCP_SYN), "ipv4_dst": E21,
                          "eth_dst": e21_mac}).only()
    assert (hop.dpid, hop.port) == ATTACHED_PORT[E21] and hop["ipv4_dst"] == E21
    back = fig.reply(hop)
    assert back.only().has(ipv4_src=E21, eth_src=e21_mac, ipv4_dst=ip, tcp_flags=TCP_SYN | TCP_ACK)


def test_config_takes_overlay_refuses_failover_and_a_shared_zone() -> None:
    base = {"name": "s", "dsid": "10.0.100.9", "protocol": "tcp", "port": 80,
            "dataplane": "conntrack"}
    assert service_from_dict(base).ct_zone == 100 << 8 | 9
    assert service_from_dict({**base, "overlay": True}).overlay
    for overlay in (True, False):
        with pytest.raises(ValidationError) as err:
            service_from_dict({**base, "overlay": overlay, "failover": True})
        assert err.value.field == "failover"
    with pytest.raises(ValidationError) as err:
        service_from_dict({k: v for k, v in base.items() if k not in ("protocol", "port")})
    assert err.value.field == "dataplane"
    twin = service_from_dict({**base, "name": "t", "dsid": "10.1.100.9"})
    with pytest.raises(ValidationError, match="zone 25609"):
        check_unique((service_from_dict(base), twin))
    check_unique((service_from_dict(base), service_from_dict({**twin.to_dict(),
                                                              "dataplane": "bucket"})))
    assert service_from_dict({**base, "dsid": "10.0.0.0"}).ct_zone == 0xFFFF


def test_the_api_refuses_failover_and_a_zone_clash_and_changes_nothing() -> None:
    """Through the REST API: a clear 4xx naming the field, and the catalogue unchanged;
    overlay is taken."""
    api = Api(figure2_core())
    svc1 = {**SVC.to_dict(), "affinity": {"key": "5-tuple", "idle_timeout": 5}}
    assert _call(api, "PUT", "services/svc1", svc1).status == 200
    before = dict(api.core.catalogue.services)
    clash = {**svc1, "name": "svc3", "dsid": "10.9.100.1"}  # same low 16 bits as 10.0.100.1
    failover = {**svc1, "name": "svc3", "dsid": "10.0.100.3", "overlay": True, "failover": True}
    translated = {**failover, "overlay": False}  # the tracker would not know the backup's replies
    for body, field in ((clash, "dsid"), (failover, "failover"), (translated, "failover")):
        reply = _call(api, "POST", "services", body)
        assert 400 <= reply.status < 500 and reply.body.get("field", "").endswith(field), reply
        assert dict(api.core.catalogue.services) == before
    assert _call(api, "POST", "services", {**clash, "dataplane": "bucket"}).status == 201
    overlay = {**failover, "name": "svc4", "dsid": "10.0.100.4", "failover": False}
    assert _call(api, "POST", "services", overlay).status == 201
    assert api.core.catalogue.services["svc4"].overlay


def test_a_d_forwarder_commits_by_its_d_routers_bucket_map(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """r2 as a D-Forwarder of r1: r2 holds r1's bucket map, so its clients' new connections are
    committed, with no packet-in, to the instances r1's decision names; replies from the D-SID."""
    import tests.test_pipelines as pipelines
    from controller.config import ControllerConfig
    from controller.intents import TABLE_DECISION

    monkeypatch.setattr(pipelines, "ControllerConfig", lambda services: ControllerConfig(
        services=services, forwarders=((2, 1),)))
    fig = Figure2(SVC)
    assert all(k[0] != 2 for k in fig.core.engine.decisions)

    def commits(dpid: int) -> list[object]:
        return [(fm.match, fm.actions) for fm in fig.net.switch(dpid).entries(TABLE_DECISION)
                if fm.cookie >> 48 & 0xFF == 5]
    assert commits(2) and commits(2) == commits(1)
    seen = [fig.go(sport, TCP_SYN, client="c2") for sport in FLOWS]
    assert not any(punted for _, punted in seen) and {d for d, _ in seen} == {E21, E31}
    hop = fig.send("c2", to_dsid("c2", FLOWS[0])).only()
    assert fig.reply(hop).only().has(ipv4_src=DSID, ipv4_dst=HOSTS["c2"][0])


OVERLAY = SERVICES["conntrack-overlay"]


def test_overlay_commits_marked_untranslated_connections_and_labels_them() -> None:
    """conntrack + overlay: each new connection is committed with the decided instance's mark
    and no translation, reaches the instance still addressed to the D-SID (the fake switch's
    label route pops the MPLS label the ingress pushed), with no packet-in; its reply, sent
    from the D-SID, is tracked (the connection becomes established) and not rewritten."""
    fig = Figure2(OVERLAY)
    seen = [fig.go(sport, TCP_SYN) for sport in FLOWS]
    assert not any(punted for _, punted in seen)
    assert Counter(d for d, _ in seen) == {E21: 8, E31: 8}
    conns = fig.net.conntrack.entries(OVERLAY.ct_zone)
    assert len(conns) == len(FLOWS) and all(c.nat_dst is None for c in conns)
    labels = {fig.core.programmer.label(d): d for d in (E21, E31)}
    by_port = {c.orig[3]: labels[c.mark] for c in conns}
    assert by_port == {s: d for s, (d, _) in zip(FLOWS, seen, strict=True)}
    hop = fig.send("c1", to_dsid("c1", FLOWS[0])).only()
    assert hop["ipv4_dst"] == DSID
    back = fig.reply(hop).only()
    assert back.has(ipv4_src=DSID, ipv4_dst=HOSTS["c1"][0], eth_src=HOSTS[
        "e" + by_port[FLOWS[0]].rsplit(".", 1)[1]][1])
    assert next(c for c in conns if c.orig[3] == FLOWS[0]).replied


def test_overlay_connections_survive_a_decision_change_and_a_wipe_and_reinstall() -> None:
    """The mark, not the flow tables, holds each connection's instance: a decision that no
    longer names e21 and every table wiped and reinstalled move none; new ones go to e31."""
    fig = Figure2(OVERLAY)
    placed = connect(fig, FLOWS)
    fig.busy(E21)
    assert {s: fig.go(s)[0] for s in FLOWS} == placed
    for dpid in PORTS:
        fig.net.switches[dpid] = FakeOFTable(dpid, fig.net.conntrack)
        fig.apply(fig.core.switch_connected(dpid))
        fig.apply(fig.core.switch_ports(dpid, PORTS[dpid], fig.now))
    assert {s: fig.go(s)[0] for s in FLOWS} == placed
    assert set(connect(fig, NEW_FLOWS).values()) == {E31}
    assert all(c.nat_dst is None for c in fig.net.conntrack.entries())


def test_overlay_a_lost_instances_connections_are_re_marked_not_flushed() -> None:
    """Withdrawn: no flush (the reply source, the D-SID, names no instance); its connections'
    packets find no label for its mark and are decided again, re-marked for e31."""
    fig = Figure2(OVERLAY)
    placed = connect(fig, FLOWS)
    intents = fig.core.withdraw(E21, fig.now)
    assert not [i for i in intents if isinstance(i, CtFlush)]
    fig.apply(intents)
    assert {s: fig.go(s)[0] for s in FLOWS} == dict.fromkeys(placed, E31)
    e31 = fig.core.programmer.label(E31)
    assert {c.mark for c in fig.net.conntrack.entries(OVERLAY.ct_zone)} == {e31}


def test_overlay_a_drained_instance_keeps_its_connections_past_its_deadline() -> None:
    """Known limit (docs/dataplanes.md): nothing names a drained instance's connections to
    flush at its deadline, so they stay on it (new ones go elsewhere) until it is stopped."""
    fig = Figure2(OVERLAY)
    placed = connect(fig, FLOWS)
    fig.apply(fig.core.drain(E21, 2.0, fig.now)[1])
    fig.advance(fig.now + 3)
    assert {s: fig.go(s)[0] for s in FLOWS} == placed
    assert set(connect(fig, NEW_FLOWS).values()) == {E31}

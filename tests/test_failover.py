"""Switch-local failover on Figure 2 over fake switches: when an instance's access port goes
down, the switch it is attached to sends the service's new packets to the backup on its own
(the controller is not told: as if it were stopped), rewritten for the backup, whose replies
come back from the D-SID; reconciliation keeps the groups and their entries.

svc1's instances: e21 at r2 port 2, e31 at r3 port 1; c1 is at r1, c2 at r2. From c1 a packet
to e21 enters r2 by port 10, the port towards e31 too: the group sends it back out of it.
"""

from __future__ import annotations

import dataclasses

import pytest

from controller.dataplane.failover import group_ids
from controller.model import ValidationError, service_from_dict
from controller.network.packet import TCP_SYN
from tests.fakeoftable import FakeOFTable
from tests.test_pipelines import (
    ATTACHED_PORT,
    DSID,
    E21,
    E31,
    FLOWS,
    NEW_FLOWS,
    SERVICES,
    Figure2,
    connect,
    to_dsid,
)
from tests.test_reconcile import read, reconcile

MODES = ["reactive", "learn", "bucket"]


def _figure2(mode: str) -> Figure2:
    return Figure2(dataclasses.replace(SERVICES[mode], failover=True))


def _port_down(fig: Figure2, dbid: str) -> None:
    """The instance's access link goes down; only its switch knows (the controller is not
    told: it is stopped, or has not heard yet)."""
    dpid, port = ATTACHED_PORT[dbid]
    fig.net.switch(dpid).down.add(port)


def _served(fig: Figure2, client: str, sport: int, flags: int) -> str:
    """The instance a client's packet reaches; its answer comes back from the D-SID."""
    hop = fig.send(client, to_dsid(client, sport, flags)).only()
    dbid = fig.instance(hop)  # rewritten for the instance it reached (address and MAC)
    back = fig.reply(hop).only()
    assert back.has(ipv4_src=DSID, eth_src="02:dc:00:00:00:01", ipv4_dst=hop["ipv4_src"]), back
    assert (back.dpid, back.port) == (1, 1) if client == "c1" else (2, 1)
    return dbid


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("client", ["c1", "c2"])
def test_port_down_sends_the_flows_new_packets_to_the_backup_without_the_controller(
        mode: str, client: str) -> None:
    """e21's link goes down: flows bound to it (reactive) or its buckets (bucket) reach e31
    with no packet-in, rewritten for e31, and e31's replies come back from the D-SID; when the
    link is back, they reach e21 again."""
    fig = _figure2(mode)
    placed = {s: fig.go(s, TCP_SYN, client)[0] for s in FLOWS}
    on_e21 = [s for s, dbid in placed.items() if dbid == E21]
    assert on_e21 and len(on_e21) < len(FLOWS), placed
    _port_down(fig, E21)
    for sport in on_e21:
        res = fig.send(client, to_dsid(client, sport, TCP_SYN))
        assert not res.to_controller, res
        assert _served(fig, client, sport, TCP_SYN) == E31
    fig.net.switch(ATTACHED_PORT[E21][0]).down.clear()
    assert {_served(fig, client, s, TCP_SYN) for s in on_e21} == {E21}


@pytest.mark.parametrize("mode", MODES)
def test_a_backups_own_flows_keep_their_instance_and_their_replies(mode: str) -> None:
    """e31 is e21's backup (and e21 e31's): the backups' reply entries change nothing for the
    flows already on either, before the failure, and for e31's own flows during it."""
    fig = _figure2(mode)
    placed = {s: fig.go(s, TCP_SYN)[0] for s in FLOWS}
    assert {_served(fig, "c1", s, TCP_SYN) for s in FLOWS if placed[s] == E31} == {E31}
    assert {_served(fig, "c1", s, TCP_SYN) for s in FLOWS if placed[s] == E21} == {E21}
    _port_down(fig, E21)
    assert {_served(fig, "c1", s, 0x010) for s in FLOWS if placed[s] == E31} == {E31}


def test_without_failover_a_down_port_drops_the_flows_packets() -> None:
    """The same failure without `failover`: the switch has nowhere else to send them (the test
    above can fail)."""
    fig = Figure2(SERVICES["bucket"])
    placed = connect(fig, FLOWS)
    _port_down(fig, E21)
    on_e21 = [s for s, dbid in placed.items() if dbid == E21]
    assert not any(fig.send("c1", to_dsid("c1", s, TCP_SYN)).outputs for s in on_e21)


@pytest.mark.parametrize("mode", MODES)
def test_controller_told_of_the_port_moves_flows_and_drops_the_groups(mode: str) -> None:
    """Once the controller hears of the port, e21 is no longer located: its groups' entries
    go, new flows are decided among what is left (e31), and nothing points at a missing group."""
    fig = _figure2(mode)
    connect(fig, FLOWS)
    _port_down(fig, E21)
    dpid, port = ATTACHED_PORT[E21]
    fig.apply(fig.core.port_changed(dpid, port, False, fig.now))
    fig.advance(fig.now + 3.0)
    assert set(connect(fig, NEW_FLOWS).values()) == {E31}
    label = fig.core.programmer.label(E21)
    groups = fig.net.switch(dpid).groups
    assert not set(group_ids(label, fig.core.programmer.group_prefix)) & set(groups), groups


@pytest.mark.parametrize("mode", MODES)
def test_reconcile_keeps_the_groups_and_repairs_them(mode: str) -> None:
    """The periodic read-back keeps the failover entries; a switch that lost one gets it back
    with its group; an emptied, reconnected switch gets groups and entries again."""
    fig = _figure2(mode)
    placed = connect(fig, FLOWS)
    on_e21 = [s for s, dbid in placed.items() if dbid == E21]
    dpid = ATTACHED_PORT[E21][0]
    before = read(fig, dpid)
    reconcile(fig, dpid)
    assert read(fig, dpid) == before
    sw = fig.net.switch(dpid)
    sw.groups.clear()  # lost with the entries that name them (OpenFlow: deleting a group)
    sw.tables = {t: [e for e in es if not any(type(a).__name__ == "Group" for a in e.fm.actions)]
                 for t, es in sw.tables.items()}
    reconcile(fig, dpid)
    _port_down(fig, E21)
    assert {_served(fig, "c1", s, TCP_SYN) for s in on_e21} == {E31}
    fig.net.switches[dpid] = FakeOFTable(dpid, fig.net.conntrack)
    _port_down(fig, E21)
    fig.apply(fig.core.switch_connected(dpid))
    fig.apply(fig.core.switch_ports(dpid, {1, 2, 10}, fig.now))
    fig.net.switch(dpid).down.add(ATTACHED_PORT[E21][1])
    assert {_served(fig, "c1", s, TCP_SYN) for s in on_e21} == {E31}


@pytest.mark.parametrize(("body", "why"), [
    ({"dataplane": "conntrack"}, "failover"), ({"dataplane": "learn", "overlay": True}, "failover"),
    ({"dataplane": "bucket", "overlay": True}, "failover"),
    ({"failover": "yes"}, "failover")])
def test_failover_needs_a_mode_that_supports_it(body: dict[str, object], why: str) -> None:
    base = {"name": "s", "dsid": "10.0.100.9", "protocol": "tcp", "port": 80, "failover": True}
    with pytest.raises(ValidationError) as exc:
        service_from_dict({**base, **body})
    assert exc.value.field == why
    assert service_from_dict(base).to_dict()["failover"] is True


@pytest.mark.parametrize("mode", MODES)
def test_restarted_controller_keeps_the_failover_and_the_flows(mode: str, tmp_path) -> None:
    """A restarted controller reads the switches back: it deletes nothing (the punts of a
    reactive service stay the pipeline's), the groups still fail over before it has found the
    network again and after, and new flows are served."""
    from apps.store import Store
    from controller.views import stats_view
    from tests.test_reconcile import rediscover, restart

    fig = _figure2(mode)
    placed = connect(fig, FLOWS)
    on_e21 = [s for s, dbid in placed.items() if dbid == E21]
    restart(fig, Store(f"sqlite:///{tmp_path / 'dyncast.db'}"), after=1.0)
    assert {s: fig.go(s)[0] for s in FLOWS} == placed
    _port_down(fig, E21)
    assert {_served(fig, "c1", s, TCP_SYN) for s in on_e21} == {E31}
    fig.net.switch(ATTACHED_PORT[E21][0]).down.clear()
    rediscover(fig)
    assert {s: fig.go(s)[0] for s in FLOWS} == placed
    _port_down(fig, E21)
    assert {_served(fig, "c1", s, TCP_SYN) for s in on_e21} == {E31}
    fig.net.switch(ATTACHED_PORT[E21][0]).down.clear()
    assert set(connect(fig, NEW_FLOWS).values()) == {E21, E31}
    assert stats_view(fig.core)["reconcile_removed"] == 0


@pytest.mark.parametrize("mode", MODES)
def test_turning_failover_off_takes_the_groups_and_their_entries_away(mode: str) -> None:
    """PUT the service again without `failover` (same dataplane): no switch keeps a group or
    an entry sending to one, so a down port then drops the flows' packets as if failover had
    never been on (a kept group would go on sending them to a backup nobody updates)."""
    fig = _figure2(mode)
    placed = connect(fig, FLOWS)
    assert any(sw.groups for sw in fig.net.switches.values())
    fig.apply(fig.core.put_service(SERVICES[mode], False, fig.now))
    fig.advance(fig.now + 3.0)
    assert not any(sw.groups for sw in fig.net.switches.values())
    _port_down(fig, E21)
    on_e21 = [s for s, dbid in placed.items() if dbid == E21]
    assert on_e21 and not any(fig.send("c1", to_dsid("c1", s, TCP_SYN)).outputs for s in on_e21)

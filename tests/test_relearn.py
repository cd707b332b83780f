"""An emptied ingress gets back the entries it had learned itself (controller/dataplane/
relearn.py): held flows of `learn` and `bucket` services stay on their instance when the bucket
map no longer names it, and `learn` replies are rewritten before the client sends again, as
after `ovs-vsctl del-controller` and `set-controller` (Open vSwitch flushes the bridge's
tables) while an instance drains. Found on a six-switch mesh in Mininet: held connections on a
draining bucket-mode instance were reset by another one after their ingress reconnected, and
with `learn` every held connection through that ingress stalled (the instances' data found no
reply entry, and clients that only receive sent nothing to learn it again)."""

from __future__ import annotations

import pytest

from controller.intents import TABLE_AFFINITY, cookie_kind
from controller.views import stats_view
from tests.fakeoftable import FakeOFTable
from tests.helpers import PORTS
from tests.test_pipelines import (
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
from tests.test_reconcile import reconcile

SWITCH_HELD = ["learn", "bucket", "learn-overlay", "bucket-overlay"]
C1_INGRESS = 1


def _drained_while_held(mode: str) -> tuple[Figure2, dict[int, str]]:
    """Figure 2 with connections from c1 on both instances, then E21 draining until the bucket
    moves are over, the held flows sending every second and table 2 read after each."""
    fig = Figure2(SERVICES[mode])
    placed = connect(fig, FLOWS)
    assert set(placed.values()) == {E21, E31}
    fig.apply(fig.core.drain(E21, None, fig.now)[1])
    for _ in range(IDLE_S + 3):  # bucket: past the moves, only the pins hold E21's flows
        fig.advance(fig.now + 1)
        assert {s: fig.go(s)[0] for s in placed} == placed
    fig.advance(fig.now + 1)
    return fig, placed


def _emptied(fig: Figure2, reconnects: bool) -> None:
    """The ingress loses every entry; it reconnects (its table read first) or the periodic
    read finds it so."""
    fig.net.switches[C1_INGRESS] = FakeOFTable(C1_INGRESS)
    if reconnects:
        fig.apply(fig.core.switch_connected(C1_INGRESS, reads_table=True))
        fig.apply(fig.core.switch_ports(C1_INGRESS, PORTS[C1_INGRESS], fig.now))
    reconcile(fig, C1_INGRESS)


@pytest.mark.parametrize("reconnects", [True, False], ids=["reconnect", "read"])
@pytest.mark.parametrize("mode", SWITCH_HELD)
def test_an_emptied_ingress_keeps_held_flows_on_a_draining_instance(
        mode: str, reconnects: bool) -> None:
    """The held flows on the draining instance stay on it, new ones go to the other, and the
    next read adds nothing more."""
    fig, placed = _drained_while_held(mode)
    at_instance = {s: fig.send("c1", to_dsid("c1", s)).only() for s in placed}
    _emptied(fig, reconnects)
    for sport, hop in at_instance.items():  # the instances speak first (the clients receive)
        assert fig.reply(hop).only().has(ipv4_src=DSID, ipv4_dst=hop["ipv4_src"],
                                         tcp_dst=sport), sport
    assert {s: fig.go(s)[0] for s in placed} == placed
    assert set(connect(fig, NEW_FLOWS).values()) == {E31}
    added = stats_view(fig.core)["reconcile_added"]
    reconcile(fig, C1_INGRESS)
    assert stats_view(fig.core)["reconcile_added"] == added


@pytest.mark.parametrize("mode", ["learn", "bucket"])
def test_entries_of_an_instance_gone_are_not_sent_back(mode: str) -> None:
    """An instance withdrawn after the read gets none of its learned entries back: its flows
    are decided again."""
    fig, placed = _drained_while_held(mode)
    label = fig.core.programmer.label(E21)
    fig.apply(fig.core.withdraw(E21, fig.now))
    _emptied(fig, reconnects=True)
    held = [fm for fm in fig.net.switch(C1_INGRESS).entries(TABLE_AFFINITY)
            if (cookie_kind(fm.cookie) or (None, None))[1] == label]
    assert held == []
    assert {fig.go(s)[0] for s in placed} == {E31}


@pytest.mark.parametrize("mode", ["learn", "bucket"])
def test_entries_deleted_at_a_drain_deadline_are_not_sent_back(mode: str) -> None:
    """A drain deadline deletes the instance's learned entries and pins; an ingress emptied
    before its next read does not get them back from the read before: the flows move on, as
    the deadline says."""
    fig = Figure2(SERVICES[mode])
    placed = connect(fig, FLOWS)
    label = fig.core.programmer.label(E21)
    fig.apply(fig.core.drain(E21, 3.0, fig.now)[1])
    for _ in range(2):  # the flows send (bucket: pinned); each read has E21's entries in it
        fig.advance(fig.now + 1)
        assert {s: fig.go(s)[0] for s in placed} == placed
    fig.advance(fig.now + 0.5)
    fig.now += 2
    fig.apply(fig.core.tick(fig.now))  # past the deadline, no read since
    _emptied(fig, reconnects=True)
    held = [fm for fm in fig.net.switch(C1_INGRESS).entries(TABLE_AFFINITY)
            if (cookie_kind(fm.cookie) or (None, None))[1] == label]
    assert held == []
    assert {fig.go(s)[0] for s in placed} == {E31}

"""`learn`: the flows held on an instance that is lost get their new instance's entries with
the move (controller/dataplane/relearn.py, `rehomed`), so its replies come from the D-SID
before the flow sends again; Figure 2 run by the core over fake switches (tests/test_pipelines.py).

The fake switches learn at every packet, as Open vSwitch does only on an upcall; the datapath
cache that makes this matter is modelled in tests/test_learn_move_cache.py. Here a reply is sent
before the moved flow's next packet, so only entries the move itself installed can rewrite it.
"""

from __future__ import annotations

import dataclasses

import pytest

from apps.metrics import Metrics
from controller.dataplane.nudges import NUDGE_DELAY_S
from controller.intents import TABLE_AFFINITY, CookieKind, cookie_kind
from controller.model import AffinityPolicy
from controller.network.packet import TCP_ACK, TCP_RST
from controller.views import bindings_view, stats_view
from tests.fakeoftable import Result
from tests.test_pipelines import (
    ATTACHED_PORT,
    DSID,
    E21,
    E31,
    FLOWS,
    HOSTS,
    SERVICES,
    SVC1,
    Figure2,
    connect,
    to_dsid,
)

LOST = ["withdrawn", "port down", "drain deadline"]


def lose(fig: Figure2, how: str, dbid: str = E21) -> None:
    """Instance `dbid` is lost as `how` says."""
    if how == "withdrawn":
        fig.apply(fig.core.withdraw(dbid, fig.now))
    elif how == "port down":
        fig.apply(fig.core.port_changed(*ATTACHED_PORT[dbid], up=False, now=fig.now))
    else:
        fig.apply(fig.core.drain(dbid, 0.5, fig.now)[1])
        fig.now += 1.0
        fig.apply(fig.core.tick(fig.now))


def answer(fig: Figure2, dbid: str, sport: int, client: str = "c1", flags: int = TCP_ACK
           ) -> Result:
    """Instance `dbid` sends c1's connection from `sport` a segment, unprompted."""
    ip, _, _, _ = HOSTS[client]
    dpid, port = ATTACHED_PORT[dbid]
    seg = {"eth_src": HOSTS[f"e{dbid.rsplit('.', 1)[1]}"][1], "eth_dst": HOSTS[client][1],
           "eth_type": 0x0800, "ipv4_src": dbid, "ipv4_dst": ip, "ip_proto": 6,
           "tcp_src": 8000, "tcp_dst": sport, "tcp_flags": flags}
    return fig._answer(fig.net.send(dpid, port, seg, fig.now))


@pytest.mark.parametrize("how", LOST)
@pytest.mark.parametrize("key", ["5-tuple", "source"])
def test_flows_read_on_a_lost_instance_hear_their_new_one_from_the_dsid_at_once(
        how: str, key: str) -> None:
    """Every flow on the lost instance at the switch's latest read: the other's first segment
    to it, before the flow sends again, reaches c1 from the D-SID; its next packet goes there
    by the switch. (A `source` key puts all of c1's flows on one instance: that one is lost.)"""
    svc = dataclasses.replace(SERVICES["learn"], affinity=AffinityPolicy(key, 5, 0))
    fig = Figure2(svc)
    placed = connect(fig, FLOWS)
    gone = placed[FLOWS[0]]
    other = E31 if gone == E21 else E21
    on_gone = sorted(s for s, d in placed.items() if d == gone)
    assert len(on_gone) == (len(placed) if key == "source" else len(placed) // 2)
    fig.advance(fig.now + 1)  # the shell's periodic read of table 2
    lose(fig, how, gone)
    for sport in on_gone:
        back = answer(fig, other, sport)
        assert back.only().has(ipv4_src=DSID, tcp_dst=sport), (sport, back.only().fields)
        assert fig.go(sport) == (other, False)
    assert {s: fig.go(s)[0] for s in placed} == dict.fromkeys(placed, other)


@pytest.mark.parametrize("how", LOST)
def test_a_client_of_a_moved_connection_is_reset_through_its_new_instance(how: str) -> None:
    """As a `reactive` binding's client (tests/test_pipelines.py): a second after the move each
    moved TCP connection's client gets two empty ACKs from the D-SID out of its own port; its
    answer reaches E31 by the switch, and E31's reset reaches it from the D-SID. Connections
    that stayed on E31 get none."""
    fig = Figure2(SERVICES["learn"])
    placed = connect(fig, FLOWS)
    moved = sorted(s for s, d in placed.items() if d == E21)
    fig.advance(fig.now + 1)
    lose(fig, how)
    fig.now += NUDGE_DELAY_S
    res = fig.apply(fig.core.tick(fig.now))
    nudges = [h for h in res.outputs if h.fields.get("tcp_flags") == TCP_ACK]
    assert sorted(h["tcp_dst"] for h in nudges) == sorted(moved * 2)
    ip, mac, dpid, port = HOSTS["c1"]
    for hop in nudges[::2]:
        assert (hop.dpid, hop.port) == (dpid, port)
        assert hop.has(eth_dst=mac, ipv4_src=DSID, ipv4_dst=ip, tcp_src=SVC1.port or 0)
        challenge = fig.send("c1", to_dsid("c1", int(hop["tcp_dst"])))
        assert not challenge.to_controller and fig.instance(challenge.only()) == E31
        reset = answer(fig, E31, int(hop["tcp_dst"]), flags=TCP_RST).only()
        assert (reset.dpid, reset.port) == (dpid, port)
        assert reset.has(ipv4_src=DSID, tcp_dst=hop["tcp_dst"], tcp_flags=TCP_RST)


def test_the_moved_flows_show_on_their_new_instance_in_bindings() -> None:
    """/bindings shows the flows read on E21 under E31 from the move, not only after the
    next read; /stats and the metrics count them."""
    fig = Figure2(SERVICES["learn"])
    placed = connect(fig, FLOWS)
    fig.advance(fig.now + 1)
    lose(fig, "port down")
    rows = [r for r in bindings_view(fig.core) if r["source"] == "switch"]
    assert sorted(r["flow"]["sport"] for r in rows) == sorted(placed)
    assert {r["dbid"] for r in rows} == {E31}
    assert stats_view(fig.core)["learned_moves"] == len(placed) // 2  # (half were on E21)
    text = Metrics(fig.core).scrape().decode()
    assert f'dyncast_affinity_moves_total{{reason="switch_learned"}} {len(placed) // 2}.0' in text


def test_a_lost_instance_leaves_no_entry_of_its_own() -> None:
    """After the move the ingress holds no learned entry naming E21, and one forward and one
    reply entry per moved flow naming E31."""
    fig = Figure2(SERVICES["learn"])
    placed = connect(fig, FLOWS)
    fig.advance(fig.now + 1)
    lose(fig, "port down")
    labels = {E21: fig.core.programmer.label(E21), E31: fig.core.programmer.label(E31)}
    held = [cookie_kind(e.cookie) for e in fig.net.switch(1).entries(TABLE_AFFINITY)]
    kinds = (CookieKind.LEARNED_FWD, CookieKind.LEARNED_REV)
    assert not [k for k in held if k is not None and k[0] in kinds and k[1] == labels[E21]]
    for kind in kinds:
        assert sum(1 for k in held if k == (kind, labels[E31])) == len(placed)


def test_bucket_mode_has_nothing_to_rehome() -> None:
    """`bucket` rewrites replies by their source alone: a lost instance's move adds no entry
    to table 2 (its pins go), and E31's segment to a moved flow still comes from the D-SID."""
    fig = Figure2(SERVICES["bucket"])
    placed = connect(fig, FLOWS)
    fig.advance(fig.now + 1)
    before = len(fig.net.switch(1).entries(TABLE_AFFINITY))
    lose(fig, "port down")
    assert len(fig.net.switch(1).entries(TABLE_AFFINITY)) <= before
    assert stats_view(fig.core)["learned_moves"] == 0
    moved = next(s for s, d in placed.items() if d == E21)
    assert answer(fig, E31, moved).only().has(ipv4_src=DSID, tcp_dst=moved)


def test_at_most_rehome_max_flows_move_with_the_loss_and_the_rest_learn_their_own(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With the bound at 3: three of E21's flows get E31's entries with the move (E31's
    segment reaches c1 from the D-SID before they send); the others have none until their
    next packet learns them, and then they do."""
    monkeypatch.setattr("controller.dataplane.programmer.REHOME_MAX", 3)
    fig = Figure2(SERVICES["learn"])
    placed = connect(fig, FLOWS)
    on_e21 = sorted(s for s, d in placed.items() if d == E21)
    fig.advance(fig.now + 1)
    lose(fig, "port down")
    rewritten = [s for s in on_e21 if answer(fig, E31, s).only()["ipv4_src"] == DSID]
    assert len(rewritten) == 3, rewritten
    assert stats_view(fig.core)["learned_moves"] == 3
    for sport in on_e21:
        assert fig.go(sport) == (E31, False)
        assert answer(fig, E31, sport).only().has(ipv4_src=DSID, tcp_dst=sport)

"""Roles confirmed before programming, against a switch that keeps roles as Open vSwitch does
(bench/cluster_switch.py's `Roles`): a member programs a switch only once the switch's reply
confirms it MASTER; a MASTER request made stale by another member's SLAVE request with a later
ticket is asked again at once and the member is master one round trip later (two when it had
seen no generation id as great as the rival's); a write refused as from a slave stops the
programming at once and nothing is asked again before the next beat."""

from __future__ import annotations

from bench.cluster_switch import MASTER as OF_MASTER
from bench.cluster_switch import NOCHANGE as OF_NOCHANGE
from bench.cluster_switch import SLAVE as OF_SLAVE
from bench.cluster_switch import Roles
from controller.cluster.mastership import master_of
from controller.cluster.member import (
    MASTER,
    NOCHANGE,
    SLAVE,
    Member,
    Reconcile,
    RoleRequest,
    StopProgramming,
)
from controller.cluster.membership import MemberRow, View

LEASE = 1.5
CODES = {MASTER: OF_MASTER, SLAVE: OF_SLAVE, NOCHANGE: OF_NOCHANGE}
NAMES = {OF_MASTER: MASTER, OF_SLAVE: SLAVE}


def view(now: float, ticket: int, *live: str) -> View:
    return View(tuple(MemberRow(m, "", now, now + LEASE, 1) for m in live), now, ticket)


def dpid_of(member_id: str, *others: str) -> int:
    return next(d for d in range(1, 1000) if master_of(d, (member_id, *others)) == member_id)


def deliver(switch: Roles, conn: int, m: Member, asked: list[object], now: float
            ) -> list[object]:
    """The switch handles `m`'s role requests in order on connection `conn` and `m` reads
    the answers (one round trip): what `m` does next."""
    out: list[object] = []
    for req in asked:
        if not isinstance(req, RoleRequest):
            continue
        answer = switch.request(conn, CODES[req.role], req.generation_id)
        if answer.stale:
            out += m.refused(req.dpid, now)
        else:
            gen = answer.generation_id if answer.generation_id is not None else 2**64 - 1
            out += m.role_reply(req.dpid, NAMES.get(answer.role, "equal"), gen, now)
    return out


def race(b_ticket: int) -> tuple[Member, Roles, int, list[list[object]]]:
    """a (ticket 10) is the rule's master of the switch, b (a later ticket) its slave; b's
    SLAVE request reaches the switch first, so a's MASTER request is stale. The rounds of a's
    requests until it stops asking."""
    dpid = dpid_of("a", "b")
    a, b = Member("a", LEASE), Member("b", LEASE)
    a.renewed(view(100.0, 10, "a", "b"), 100.0)
    b.renewed(view(100.0, b_ticket, "a", "b"), 100.0)
    switch = Roles(2)
    asked_a, asked_b = a.step([dpid], 100.0), b.step([dpid], 100.0)
    assert [(r.role, r.generation_id) for r in asked_b] == [(SLAVE, b_ticket)]
    deliver(switch, 1, b, asked_b, 100.0)
    rounds = [asked_a]
    while any(isinstance(i, RoleRequest) for i in rounds[-1]) and len(rounds) < 10:
        assert not a.masters(dpid)  # asked, not confirmed: nothing is programmed
        rounds.append(deliver(switch, 0, a, rounds[-1], 100.0))
    return a, switch, dpid, rounds


def test_nothing_is_programmed_before_the_switch_confirms_master() -> None:
    """No rival: MASTER asked, not programmed; the reply confirms it (read and repair);
    a reply for another generation id, or for SLAVE, confirms nothing."""
    a = Member("a", LEASE)
    a.renewed(view(100.0, 10, "a"), 100.0)
    asked = a.step([1, 2], 100.0)
    assert [type(i) for i in asked] == [RoleRequest, RoleRequest] and not a.masters(1)
    assert a.role_reply(1, MASTER, 9, 100.0) == [] and not a.masters(1)
    assert a.role_reply(1, SLAVE, 10, 100.0) == [] and not a.masters(1)
    assert a.role_reply(1, MASTER, 10, 100.0) == [Reconcile(1)] and a.masters(1)
    assert a.role_reply(1, MASTER, 10, 100.0) == []  # confirmed once: read once
    assert a.role_reply(2, MASTER, 10, 100.0 + LEASE) == [] and not a.masters(2)  # lapsed


def test_a_stale_refusal_leads_to_mastership_within_one_round_trip() -> None:
    """b's SLAVE request (ticket 11) made a's MASTER request (10) stale: a asks again at once
    (a role query, then MASTER with 11, the greatest it has seen + 1, not older than 11 for
    the switch) and the next reply confirms it: master one round trip after the refusal."""
    a, switch, dpid, rounds = race(11)
    first, retry, confirmed = rounds[0], rounds[1], rounds[2]
    assert [(r.role, r.generation_id) for r in first] == [(MASTER, 10)]
    assert retry == [RoleRequest(dpid, NOCHANGE, 0), RoleRequest(dpid, MASTER, 11)]
    assert confirmed == [Reconcile(dpid)] and len(rounds) == 3
    assert a.masters(dpid) and switch.masters() == [0] and switch.role[1] == OF_SLAVE


def test_a_rival_far_ahead_costs_one_more_round_trip() -> None:
    """b's ticket (25) is far above anything a has seen: a's first retry (11) is stale too,
    but the role query before it told a the switch's generation id: the second retry (26) is
    confirmed. Never more than RETRIES retries for one ticket."""
    a, switch, dpid, rounds = race(25)
    assert rounds[2] == [RoleRequest(dpid, NOCHANGE, 0), RoleRequest(dpid, MASTER, 26)]
    assert rounds[3] == [Reconcile(dpid)] and a.masters(dpid) and switch.masters() == [0]


def test_a_write_refused_as_from_a_slave_stops_the_programming_until_the_next_beat() -> None:
    """a masters the switch; c (joined) took it: a's first write refused as from a slave
    stops a's programming at once (a later one changes nothing), and a asks nothing with
    this ticket; its next beat's view, which has c, settles it: nothing more to ask."""
    dpid = dpid_of("c", "a")
    assert master_of(dpid, ("a",)) == "a"
    a = Member("a", LEASE)
    a.renewed(view(100.0, 10, "a"), 100.0)
    confirm = a.step([dpid], 100.0)
    a.role_reply(dpid, MASTER, confirm[0].generation_id, 100.0)
    assert a.masters(dpid)
    assert a.lost(dpid) == [StopProgramming(dpid)] and not a.masters(dpid)
    assert a.lost(dpid) == []  # the writes already in flight: nothing more to stop
    assert a.step([dpid], 100.1) == []  # the same view: no MASTER asked again
    a.renewed(view(100.3, 12, "a", "c"), 100.3)
    assert a.step([dpid], 100.3) == [] and not a.masters(dpid)  # c's now: a is SLAVE there


def test_after_a_slave_refusal_a_view_that_still_gives_the_switch_asks_master_again() -> None:
    """The member that took it left before our next beat: the next view asks MASTER anew."""
    a = Member("a", LEASE)
    a.renewed(view(100.0, 10, "a"), 100.0)
    a.step([7], 100.0)
    a.role_reply(7, MASTER, 10, 100.0)
    a.lost(7)
    a.renewed(view(100.3, 14, "a"), 100.3)
    assert a.step([7], 100.3) == [RoleRequest(7, MASTER, 14)] and not a.masters(7)

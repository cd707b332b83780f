"""The cluster's pure core on a fake clock: the mastership rule spreads switches and moves as
few as possible when a member joins or leaves; leases expire; an expired member fences itself
(never MASTER); generation ids rise; the [cluster] table is validated."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.cluster.mastership import assignment, master_of, weight
from controller.cluster.member import (
    MASTER,
    RETRIES,
    SLAVE,
    Member,
    Reconcile,
    RoleRequest,
    StopProgramming,
)
from controller.cluster.membership import MemberRow, View
from controller.cluster.settings import ClusterConfig, cluster_from_dict
from controller.config import config_from_dict
from controller.errors import ValidationError

LEASE = 1.5
PG = "postgresql+psycopg://u:p@db/dyncast"
ids = st.text("abcdefgh0123456789-", min_size=1, max_size=8)


def view(now: float, ticket: int, *live: str, dead: tuple[str, ...] = ()) -> View:
    """A heartbeat's view at database time `now`: `live` members' leases run, `dead` ended."""
    rows = [MemberRow(m, f"http://{m}:8080", now, now + LEASE, 1) for m in live]
    rows += [MemberRow(m, f"http://{m}:8080", now - 9, now - 1, 1) for m in dead]
    return View(tuple(rows), now, ticket)


def roles(intents: list[object]) -> dict[int, tuple[str, int]]:
    """The role requests among intents, by switch."""
    return {i.dpid: (i.role, i.generation_id) for i in intents if isinstance(i, RoleRequest)}


def confirm(m: Member, intents: list[object], now: float) -> list[object]:
    """The switches reply to the MASTER requests among `intents` (no rival): what `m` does."""
    return [i for r in intents if isinstance(r, RoleRequest) and r.role == MASTER
            for i in m.role_reply(r.dpid, MASTER, r.generation_id, now)]


def test_the_hash_is_stable_across_processes() -> None:
    """The rule uses BLAKE2b, not Python's salted hash: these values never change."""
    assert weight("a", 1) == weight("a", 1)
    assert weight("a", 1) != weight("b", 1)
    assert weight("m1", 0x10) == int.from_bytes(
        __import__("hashlib").blake2b(b"m1\x000000000000000010", digest_size=8).digest(), "big")


def test_the_rule_spreads_switches_over_members() -> None:
    """300 switches over 3 members: each gets between a fifth and a half of them."""
    owners = assignment(range(1, 301), ["m1", "m2", "m3"])
    counts = {m: sum(1 for o in owners.values() if o == m) for m in ("m1", "m2", "m3")}
    assert all(60 <= n <= 150 for n in counts.values()), counts
    assert master_of(7, []) is None and assignment([1, 2], []) == {}


@given(st.sets(ids, min_size=1, max_size=6), ids, st.sets(st.integers(1, 2**48), max_size=60))
def test_a_member_joining_takes_only_switches_it_now_masters(
        members: set[str], joiner: str, dpids: set[int]) -> None:
    """When a member joins, a switch changes master only if the newcomer is its master."""
    before = assignment(dpids, members)
    after = assignment(dpids, members | {joiner})
    for dpid in dpids:
        assert after[dpid] == before[dpid] or after[dpid] == joiner


@given(st.sets(ids, min_size=2, max_size=6), st.sets(st.integers(1, 2**48), max_size=60),
       st.data())
def test_a_member_leaving_moves_only_its_own_switches(
        members: set[str], dpids: set[int], data: st.DataObject) -> None:
    """When a member leaves, only the switches it mastered change master."""
    leaver = data.draw(st.sampled_from(sorted(members)))
    before = assignment(dpids, members)
    after = assignment(dpids, members - {leaver})
    for dpid in dpids:
        assert after[dpid] == before[dpid] or before[dpid] == leaver
        assert after[dpid] != leaver


def test_liveness_is_the_lease_against_the_database_clock() -> None:
    """A row whose lease ended before the view's `now` is not live."""
    v = view(100.0, 5, "a", "b", dead=("c",))
    assert v.live() == ("a", "b")
    assert [m["live"] for m in v.as_json()] == [True, True, False]


def two_members() -> tuple[Member, Member, list[int]]:
    """Members a and b with leases from a view at t=100, both stepped once over 40 switches."""
    a, b = Member("a", LEASE), Member("b", LEASE)
    for m in (a, b):
        m.renewed(view(100.0, 10 if m is a else 11, "a", "b"), asked_at=100.0)
    return a, b, list(range(1, 41))


def test_each_switch_has_exactly_one_master() -> None:
    """Two members on the same view: every switch gets MASTER from one and SLAVE from the
    other; the master reads, repairs and programs it once the switch confirms it, not
    before."""
    a, b, dpids = two_members()
    ia, ib = a.step(dpids, 100.1), b.step(dpids, 100.1)
    ra, rb = roles(ia), roles(ib)
    assert set(ra) == set(rb) == set(dpids)
    for dpid in dpids:
        assert {ra[dpid][0], rb[dpid][0]} == {MASTER, SLAVE}
    assert not any(isinstance(i, Reconcile) for i in ia) and not any(map(a.masters, dpids))
    assert {i.dpid for i in confirm(a, ia, 100.1) if isinstance(i, Reconcile)} == {
        d for d in dpids if ra[d][0] == MASTER}
    assert a.step(dpids, 100.2) == []  # nothing changed: nothing asked again
    assert 5 < sum(a.masters(d) for d in dpids) < 35


def test_a_silent_member_fences_itself_when_its_lease_ends() -> None:
    """No renewal: at the lease's end the member asks SLAVE of each switch it mastered and stops
    programming it; it never asks MASTER again until it renews."""
    a, _, dpids = two_members()
    first = a.step(dpids, 100.1)
    confirm(a, first, 100.1)
    mine = {d for d, (r, _) in roles(first).items() if r == MASTER}
    a.failed()
    assert a.step(dpids, 101.0) == []  # still within the lease (own clock)
    out = a.step(dpids, 100.0 + LEASE)
    assert {i.dpid for i in out if isinstance(i, StopProgramming)} == mine
    assert {d for d, (r, _) in roles(out).items()} == mine
    assert all(r == SLAVE for r, _ in roles(out).values())
    assert not any(a.masters(d) for d in dpids)
    for t in (102.0, 150.0, 1000.0):  # fenced: whatever happens, never MASTER
        assert a.refused(dpids[0], t) == []
        assert all(i.role == SLAVE for i in a.step(dpids, t) if isinstance(i, RoleRequest))


def test_a_beat_that_finds_the_lease_gone_is_no_renewal() -> None:
    """A view in which our own row is missing or expired does not extend our lease."""
    a = Member("a", LEASE)
    a.renewed(view(100.0, 3, "b", dead=("a",)), asked_at=100.0)
    assert not a.holds_lease(100.0) and a.step([1, 2], 100.0) == [] and a.beats_failed == 1


def test_the_survivor_takes_over_with_a_greater_generation_id() -> None:
    """b's lease ends; a's next beat no longer sees b live and asks MASTER of b's switches with
    a greater generation id than b ever used, then reads and repairs them."""
    a, b, dpids = two_members()
    a.step(dpids, 100.1)
    b_used = roles(b.step(dpids, 100.1))
    b_mastered = {d for d, (r, _) in b_used.items() if r == MASTER}
    a.renewed(view(102.0, 20, "a", dead=("b",)), asked_at=102.0)
    out = a.step(dpids, 102.0)
    taken = roles(out)
    assert set(taken) == b_mastered
    assert all(r == MASTER and g > max(g2 for _, g2 in b_used.values())
               for r, g in taken.values())
    assert {i.dpid for i in confirm(a, out, 102.0) if isinstance(i, Reconcile)} == b_mastered


def test_a_joining_member_takes_its_share_and_the_other_lets_go() -> None:
    """c joins: the switches the rule now gives c are released by their old master (stop, then
    SLAVE) and asked for by c (MASTER, a newer ticket); no other switch moves."""
    a, b, dpids = two_members()
    old = {**{d: "a" for d, (r, _) in roles(a.step(dpids, 100.1)).items() if r == MASTER},
           **{d: "b" for d, (r, _) in roles(b.step(dpids, 100.1)).items() if r == MASTER}}
    c = Member("c", LEASE)
    c.renewed(view(101.0, 30, "a", "b", "c"), asked_at=101.0)
    a.renewed(view(101.0, 31, "a", "b", "c"), asked_at=101.0)
    got = {d for d, (r, _) in roles(c.step(dpids, 101.0)).items() if r == MASTER}
    released = a.step(dpids, 101.0)
    assert got and {i.dpid for i in released if isinstance(i, StopProgramming)} == {
        d for d in got if old[d] == "a"}
    assert all(r == SLAVE for r, _ in roles(released).values())


def test_a_refused_master_request_is_asked_again_with_a_newer_ticket() -> None:
    """A MASTER request refused as stale more than RETRIES times with one ticket forgets
    the role; it is asked again with the next beat's ticket, not before."""
    a, _, dpids = two_members()
    first = roles(a.step(dpids, 100.1))
    dpid = next(d for d, (r, _) in first.items() if r == MASTER)
    for _ in range(RETRIES):
        assert a.refused(dpid, 100.1)
    assert a.refused(dpid, 100.1) == []
    assert not a.masters(dpid)
    assert a.step(dpids, 100.2) == []  # the same ticket would be refused again: wait
    a.renewed(view(100.5, 40, "a", "b"), asked_at=100.5)
    again = roles(a.step(dpids, 100.5))
    assert again == {dpid: (MASTER, 40)} and first[dpid][1] < 40


def test_a_new_lease_epoch_asks_every_switch_again() -> None:
    """Our lease lapsed and was taken anew (another epoch): every role is asked again, with
    the new ticket (another member may have taken our switches meanwhile)."""
    a, _, dpids = two_members()
    a.step(dpids, 100.1)
    rows = (MemberRow("a", "", 105.0, 105.0 + LEASE, 50), MemberRow("b", "", 105.0, 106.5, 1))
    a.renewed(View(rows, 105.0, 50), asked_at=105.0)
    assert set(roles(a.step(dpids, 105.0))) == set(dpids)


def test_a_disconnected_switch_is_forgotten() -> None:
    """A switch no longer connected has no role; when it comes back it is asked again."""
    a, _, dpids = two_members()
    a.step(dpids, 100.1)
    a.step(dpids[1:], 100.2)
    assert dpids[0] not in a.roles
    assert dpids[0] in roles(a.step(dpids, 100.3))


def test_the_cluster_view_names_members_leases_and_masters() -> None:
    """GET /dyncast/v1/cluster's body: members with their leases, the master of each switch."""
    a, _, dpids = two_members()
    a.step(dpids[:3], 100.1)
    body = a.as_json(dpids[:3], 100.1)
    assert [m["member_id"] for m in body["members"]] == ["a", "b"]
    assert body["lease_held"] and body["masters"]["0000000000000001"] in ("a", "b")
    assert set(body["roles"].values()) <= {MASTER, SLAVE}


def test_the_cluster_is_off_by_default() -> None:
    """No [cluster] table: the cluster is disabled and SQLite is fine."""
    assert config_from_dict({}).cluster == ClusterConfig()
    assert not config_from_dict({"cluster": {"enabled": False}}).cluster.enabled


def test_an_enabled_cluster_is_parsed() -> None:
    """A full [cluster] table on PostgreSQL."""
    cfg = config_from_dict({"controller": {"store_url": PG}, "cluster": {
        "enabled": True, "member_id": "m1", "advertise": "http://10.0.0.1:8080",
        "heartbeat_s": 0.25, "lease_s": 1.0, "failover_s": 2.0}})
    assert cfg.cluster == ClusterConfig(True, "m1", "http://10.0.0.1:8080", 0.25, 1.0, 2.0)


@pytest.mark.parametrize(("table", "store", "field"), [
    ({"enabled": True, "member_id": "m1"}, "sqlite:///x.db", "controller.store_url"),
    ({"enabled": True}, PG, "cluster.member_id"),
    ({"enabled": "yes", "member_id": "m1"}, PG, "cluster.enabled"),
    ({"member_id": "a b"}, PG, "cluster.member_id"),
    ({"advertise": "http://x y"}, PG, "cluster.advertise"),
    ({"heartbeat_s": 0}, PG, "cluster.heartbeat_s"),
    ({"heartbeat_s": 1.0, "lease_s": 1.5}, PG, "cluster.lease_s"),
    ({"lease_s": 3.0, "failover_s": 2.0}, PG, "cluster.failover_s"),
    ({"leases": 3.0}, PG, "cluster.leases"),
])
def test_a_bad_cluster_table_names_the_key(table: dict[str, object], store: str,
                                           field: str) -> None:
    """Every bad [cluster] setting is refused with the key at fault."""
    with pytest.raises(ValidationError) as err:
        config_from_dict({"controller": {"store_url": store}, "cluster": table})
    assert err.value.field == field
    with pytest.raises(ValidationError):
        cluster_from_dict([])

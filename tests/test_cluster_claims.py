"""One D-SID, one service, across a cluster's members: a write that gives a service a D-SID
first claims it in the shared store (controller/cluster/claims.py, apps/dsidclaims.py). The
plan on its own; the claims on the real PostgreSQL (DYNCAST_TEST_PG_URL), two members racing
included; and the app as member m1, whose refused writes change nothing and are not shared."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, update
from sqlalchemy.exc import OperationalError

from apps import dsidclaims
from apps.dsidclaims import DsidClaims, Refused
from apps.store import dsid_claims_table, services_table
from controller.cluster.changes import PREFIX
from controller.cluster.claims import SETTLE_S, Claim, Plan, plan, stale
from tests import test_app_smoke, test_cluster_shell
from tests.test_app_smoke import Shell
from tests.test_cluster_concurrent import service

shell = test_app_smoke.shell  # the fixture: the app on each framework
member, pg_url = test_cluster_shell.member, test_cluster_shell.pg_url  # m1 on PostgreSQL
HERE = {"svc1": "10.0.100.1", "svc2": "10.0.100.2"}


def body(**fields: object) -> bytes:
    """A JSON request body."""
    return json.dumps(fields).encode()


def test_the_plan_claims_a_new_dsid_and_releases_the_one_a_service_leaves() -> None:
    """POST claims the body's D-SID; PUT claims it too and releases the service's old one;
    DELETE releases the service's; other requests, and bodies the API refuses, claim
    nothing."""
    services = PREFIX + "services"
    assert plan("POST", services, body(name="svc3", dsid="10.0.100.3"), HERE) == \
        Plan(Claim("10.0.100.3", "svc3"), None)
    assert plan("PUT", services + "/svc1", body(dsid="10.0.100.1", policy="nearest"), HERE) \
        == Plan(Claim("10.0.100.1", "svc1"), None)
    assert plan("PUT", services + "/svc1", body(dsid="10.0.100.7"), HERE) == \
        Plan(Claim("10.0.100.7", "svc1"), Claim("10.0.100.1", "svc1"))
    assert plan("DELETE", services + "/svc2", b"", HERE) == Plan(None,
                                                                  Claim("10.0.100.2", "svc2"))
    for method, path, raw in (("DELETE", services + "/nope", b""),
                              ("POST", services, body(name="svc3", dsid="not an address")),
                              ("POST", services, b"[1]"), ("POST", services, b"{"),
                              ("POST", services, b"[" * 100000 + b"]" * 100000),
                              ("POST", services, b'{"name": "a", "name": "b"}'),
                              ("POST", services, b"\xff"),
                              ("POST", services + "/svc1", body(dsid="10.0.100.3")),
                              ("PUT", services, body(name="svc3", dsid="10.0.100.3")),
                              ("POST", PREFIX + "instances", body(dsid="10.0.100.1")),
                              ("GET", services + "/svc1", b"")):
        assert plan(method, path, raw, HERE) is None, (method, path, raw)


def test_a_claim_is_stale_only_when_old_and_its_service_holds_the_dsid_nowhere() -> None:
    """Young claims stand (a service created elsewhere may not have arrived); an old one
    stands while its service holds the D-SID here or in the store."""
    old, young = 100.0, 100.0 + SETTLE_S - 1
    now = 100.0 + SETTLE_S + 1
    assert stale(old, now, "10.0.100.9", None, None)
    assert not stale(young, now, "10.0.100.9", None, None)
    assert not stale(old, now, "10.0.100.1", HERE["svc1"], None)
    assert not stale(old, now, "10.0.100.9", None, "10.0.100.9")
    assert stale(old, now, "10.0.100.9", None, "10.0.100.1")  # moved on


@pytest.fixture
def two(pg_url: str) -> Iterator[tuple[DsidClaims, DsidClaims]]:
    """Members m1 and m2's claims on one migrated store."""
    engines = [create_engine(pg_url) for _ in range(2)]
    yield (DsidClaims(engines[0], "m1", Counter()), DsidClaims(engines[1], "m2", Counter()))
    for engine in engines:
        engine.dispose()


def claims(engine: object) -> dict[str, str]:
    """The stored claims: D-SID -> service."""
    with engine.begin() as conn:  # type: ignore[attr-defined]
        return dict(conn.execute(select(dsid_claims_table.c.dsid,
                                        dsid_claims_table.c.service)).all())


def test_the_first_claim_holds_and_the_other_service_is_refused(
        two: tuple[DsidClaims, DsidClaims]) -> None:
    """m1 claims a D-SID for svc3: m2 cannot claim it for svc4 (told whose it is), may for
    svc3 (held), and may once m1 released it."""
    m1, m2 = two
    assert m1.take(Claim("10.0.100.9", "svc3"), {}) == "new"
    with pytest.raises(Refused) as refused:
        m2.take(Claim("10.0.100.9", "svc4"), {})
    assert (refused.value.holder, refused.value.member) == ("svc3", "m1")
    assert m2.take(Claim("10.0.100.9", "svc3"), {}) == "held"
    assert m2.release(Claim("10.0.100.9", "svc4")) == 0  # not svc4's to give back
    assert m1.release(Claim("10.0.100.9", "svc3")) == 1
    assert m2.take(Claim("10.0.100.9", "svc4"), {}) == "new"
    assert claims(m1.engine) == {"10.0.100.9": "svc4"}


def test_members_racing_for_one_dsid_get_exactly_one_claim(
        two: tuple[DsidClaims, DsidClaims]) -> None:
    """Eight writers at each of two members, each a service of its own, claim one D-SID at
    once: exactly one is taken, every other is refused naming that one."""
    results: dict[str, str] = {}
    start = threading.Barrier(16)

    def claim(who: DsidClaims, name: str) -> None:
        start.wait()
        try:
            results[name] = who.take(Claim("10.0.100.9", name), {})
        except Refused as exc:
            results[name] = f"refused:{exc.holder}"
    threads = [threading.Thread(target=claim, args=(two[i % 2], f"s{i}")) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    (winner,) = [n for n, r in results.items() if r == "new"]
    assert len(results) == 16
    assert all(r == f"refused:{winner}" for n, r in results.items() if n != winner), results
    assert claims(two[0].engine) == {"10.0.100.9": winner}


def test_an_old_claim_left_by_a_failed_release_is_taken_over(
        two: tuple[DsidClaims, DsidClaims]) -> None:
    """A claim older than SETTLE_S whose service holds the D-SID nowhere is taken by another
    service; while the store holds that service on the D-SID it stands."""
    m1, m2 = two
    m1.take(Claim("10.0.100.9", "svc3"), {})
    with m1.engine.begin() as conn:
        conn.execute(update(dsid_claims_table).values(at=dsid_claims_table.c.at - SETTLE_S - 5))
        conn.execute(services_table.insert().values(name="svc3", dsid="10.0.100.9", data="{}"))
    with pytest.raises(Refused):
        m2.take(Claim("10.0.100.9", "svc4"), {})  # stored: svc3 is there
    with pytest.raises(Refused):
        m2.take(Claim("10.0.100.9", "svc4"), {"svc3": "10.0.100.9"})
    with m1.engine.begin() as conn:
        conn.execute(services_table.delete())
    assert m2.take(Claim("10.0.100.9", "svc4"), {}) == "new"


def test_a_start_claims_every_service_held_and_not_claimed_yet(
        two: tuple[DsidClaims, DsidClaims]) -> None:
    """At its first beat a member claims the D-SIDs of the services it holds (made before
    claims existed, or from its configuration), leaving one another service claims; once
    done, it does not again."""
    m1, m2 = two
    m2.take(Claim("10.0.100.9", "b"), {})
    m1.start({"a": "10.0.100.9", "c": "10.0.100.3"})
    assert claims(m1.engine) == {"10.0.100.9": "b", "10.0.100.3": "c"}
    assert m1.started
    m1.start({"d": "10.0.100.4"})
    assert "10.0.100.4" not in claims(m1.engine)


def outbox(s: Shell) -> list[str]:
    """The changes m1 has queued for the other members: (method, path)."""
    return [f"{c.method} {c.path}" for c in s.app._outbox]


def test_the_app_refuses_a_dsid_claimed_elsewhere_and_changes_nothing(
        member: str, shell: Shell) -> None:
    """m2 claimed 10.0.100.9 for svc4 (its create not heard here yet): m1's POST of svc3 on it
    gets a 409 naming the D-SID, creates nothing and tells the others nothing; on a free
    D-SID it is created and claimed."""
    app = shell.app
    app.claims.start({n: s.dsid for n, s in app.core.catalogue.services.items()})  # a beat's
    m2 = DsidClaims(app.store.engine, "m2", Counter())
    assert claims(app.store.engine) == {"10.0.100.1": "svc1", "10.0.100.2": "svc2"}
    m2.take(Claim("10.0.100.9", "svc4"), {})
    before = outbox(shell)
    reply = shell.rest("POST", "services", {"name": "svc3", "dsid": "10.0.100.9"})
    assert reply.status == 409 and reply.body["field"] == "dsid", reply.body
    assert "svc4" in reply.body["error"] and "m2" in reply.body["error"]
    assert service(shell, "svc3") is None and outbox(shell) == before
    assert app.core.counters["dsid_claims_refused"] == 1
    assert b'dyncast_cluster_dsid_claims_total{outcome="refused"} 1.0' in app.metrics_text()
    assert shell.rest("POST", "services", {"name": "svc3", "dsid": "10.0.100.8"}).status == 201
    assert claims(app.store.engine)["10.0.100.8"] == "svc3"
    assert outbox(shell)[len(before):] == [f"POST {PREFIX}services"]
    assert app.core.counters["errors"] == 0


def test_the_app_gives_back_what_a_refused_write_claimed_and_what_a_service_leaves(
        member: str, shell: Shell) -> None:
    """A create refused after its claim (the name exists) leaves no claim; a service moved to
    another D-SID gives the old one back, and a deleted service its own."""
    app = shell.app
    app.claims.start({n: s.dsid for n, s in app.core.catalogue.services.items()})  # a beat's
    reply = shell.rest("POST", "services", {"name": "svc1", "dsid": "10.0.100.8"})
    assert reply.status == 409 and reply.body["field"] == "name", reply.body
    assert "10.0.100.8" not in claims(app.store.engine)
    moved = {**service(shell, "svc1"), "dsid": "10.0.100.7"}  # type: ignore[dict-item]
    assert shell.rest("PUT", "services/svc1", moved).status == 200
    assert claims(app.store.engine) == {"10.0.100.7": "svc1", "10.0.100.2": "svc2"}
    assert shell.rest("DELETE", "services/svc2").status == 200
    assert claims(app.store.engine) == {"10.0.100.7": "svc1"}
    assert app.core.counters["errors"] == 0


def test_the_app_answers_503_and_changes_nothing_when_the_store_cannot_claim(
        member: str, shell: Shell, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store does not answer the claim: a 503 naming the D-SID, nothing created, nothing
    shared, and the same request succeeds once it answers."""
    app = shell.app

    def down(*_: object) -> str:
        raise OSError("connection refused")
    monkeypatch.setattr(dsidclaims.DsidClaims, "take", down)
    before = outbox(shell)
    reply = shell.rest("POST", "services", {"name": "svc3", "dsid": "10.0.100.8"})
    assert reply.status == 503 and reply.body["field"] == "dsid", reply.body
    assert service(shell, "svc3") is None and outbox(shell) == before
    assert app.core.counters["dsid_claims_failed"] == 1
    monkeypatch.undo()
    assert shell.rest("POST", "services", {"name": "svc3", "dsid": "10.0.100.8"}).status == 201


def test_a_claim_waits_for_a_held_row_only_so_long_then_fails(
        two: tuple[DsidClaims, DsidClaims]) -> None:
    """A transaction elsewhere holds the D-SID's row (a member stuck mid-claim): another claim
    on it gives up at the lock timeout with the database's error (the app's 503), instead of
    holding its REST request and a worker thread until that transaction ends."""
    m1, m2 = two
    m1.take(Claim("10.0.100.9", "svc3"), {})
    with m1.engine.connect() as holder:
        holder.execute(select(dsid_claims_table).where(dsid_claims_table.c.dsid == "10.0.100.9")
                       .with_for_update())
        with pytest.raises(OperationalError):
            m2.take(Claim("10.0.100.9", "svc4"), {})
        holder.rollback()
    with pytest.raises(Refused):
        m2.take(Claim("10.0.100.9", "svc4"), {})


def test_a_service_a_reload_adds_is_claimed_at_the_next_beat(
        member: str, shell: Shell, tmp_path: Path) -> None:
    """A reload that adds a service to the file: the member claims its D-SID at its next
    heartbeat, as it did its configuration's at the first."""
    app = shell.app
    beat = {n: s.dsid for n, s in app.core.catalogue.services.items()}
    app.claims.start(beat)
    config = tmp_path / "dyncast.toml"
    config.write_text(config.read_text() + '\n[[service]]\nname = "svc9"\ndsid = "10.0.100.9"\n')
    assert shell.rest("POST", "config/reload").status == 200
    app.claims.start({n: s.dsid for n, s in app.core.catalogue.services.items()})  # the beat
    assert claims(app.store.engine)["10.0.100.9"] == "svc9"

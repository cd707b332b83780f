"""The cluster's shell pieces without Mininet: the lease table on the real PostgreSQL
(DYNCAST_TEST_PG_URL), the role request's bytes under each framework, and the app as a cluster
member: it asks each switch for the role the rule gives it, and programs only the switches it
masters. Without [cluster] nothing changes (the other app tests), and /cluster says so."""

from __future__ import annotations

import json
import logging
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from agents.dyncastctl import main as ctl_main
from apps.cluster import LeaseTable, role_request
from apps.store import Store
from bench import ofgen
from controller.cluster.mastership import master_of
from controller.cluster.member import MASTER, SLAVE, Member, RoleRequest
from controller.cluster.membership import MemberRow, View
from controller.cluster.settings import ClusterConfig
from tests import test_app_smoke
from tests.fakes import FakeDatapath
from tests.pgschema import fresh_schema
from tests.test_app_smoke import PORTS, Shell, flow_mods, packet_outs
from tests.test_openapi import SPEC

shell = test_app_smoke.shell  # the fixture: the app on each framework
CLUSTER = ClusterConfig(True, "m1", "http://127.0.0.1:8080", 0.1, 0.3, 1.0)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema of its own, migrated (skipped without DYNCAST_TEST_PG_URL)."""
    with fresh_schema() as url:
        Store(url).close()  # the migrations: the table and the sequence
        yield url


def test_the_role_request_is_openflow_1_3s(dp: FakeDatapath) -> None:
    """OFPT_ROLE_REQUEST (24), 24 bytes: the role (MASTER 2, SLAVE 3) and the generation id."""
    for role, code in ((MASTER, 2), (SLAVE, 3)):
        dp.sent.clear()
        dp.send_msg(role_request(dp, RoleRequest(1, role, 2**40 + 7)))
        (raw,) = dp.sent
        version, msg_type, length = struct.unpack_from("!BBH", raw)
        assert (version, msg_type, length) == (4, dp.ofproto.OFPT_ROLE_REQUEST, 24)
        assert struct.unpack_from("!I4xQ", raw, 8) == (code, 2**40 + 7)


def test_beats_renew_leases_and_tickets_rise(pg_url: str) -> None:
    """Two members beat: both live, each beat's ticket greater than any before, the lease epoch
    kept while renewed; a member whose lease lapsed takes a new epoch; one that leaves is gone."""
    a = LeaseTable(pg_url, CLUSTER)
    b = LeaseTable(pg_url, replace(CLUSTER, member_id="m2", advertise="http://m2"))
    try:
        v1, v2, v3 = a.beat(), b.beat(), a.beat()
        assert v1.ticket < v2.ticket < v3.ticket
        assert v3.live() == ("m1", "m2")
        row = v3.row("m1")
        assert row is not None and row.epoch == v1.ticket  # acquired at the first beat
        assert row.lease_until == pytest.approx(v3.now + CLUSTER.lease_s)
        assert v3.row("m2") == MemberRow("m2", "http://m2", v2.now, v2.now + 0.3, v2.ticket)
        time.sleep(0.4)  # m1's lease lapses
        v4 = b.beat()
        assert v4.live() == ("m2",)
        v5 = a.beat()
        row = v5.row("m1")
        assert row is not None and row.epoch == v5.ticket > v1.ticket  # a new lease epoch
        a.leave()
        assert b.beat().row("m1") is None
        with pytest.raises(RuntimeError):  # a beat after leaving never brings the row back
            a.beat()
    finally:
        a.close()
        b.close()


def test_a_beat_against_an_unreachable_database_fails_fast() -> None:
    """No server at the address: the beat raises within the connect timeout (the member's
    lease then runs out on its own clock)."""
    table = LeaseTable("postgresql+psycopg://u:p@127.0.0.1:9/none", CLUSTER)
    start = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
        table.beat()
    assert time.monotonic() - start < 3.0
    table.close()


def test_one_member_has_no_cluster(shell: Shell) -> None:
    """Without [cluster]: /cluster says disabled, /healthz and /readyz answer 200 (the SQLite
    store answers), and every switch is programmed."""
    assert shell.rest("GET", "cluster").body == {"enabled": False}
    assert shell.rest("POST", "cluster").status == 405
    assert shell.app.health(False) == (200, {"status": "alive"})
    assert shell.app.health(True) == (200, {"status": "ready", "store": True})
    assert shell.app.programs(1)


@pytest.fixture
def member(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The app fixture's configuration, as member m1 of a cluster on PostgreSQL."""
    monkeypatch.setattr(test_app_smoke, "CONFIG", test_app_smoke.CONFIG.replace(
        '"{url}"', f'"{pg_url}"') + '\n[cluster]\nenabled = true\nmember_id = "m1"\n'
        'heartbeat_s = 0.1\nlease_s = 0.3\nfailover_s = 1.0\n')
    yield pg_url


def beat(s: Shell, now: float, *live: str, ticket: int = 10) -> None:
    """The member's heartbeat read `live` members at `now` (their leases running)."""
    rows = tuple(MemberRow(m, "", now, now + 0.3, 1) for m in live)
    s.app.member.renewed(View(rows, now, ticket), now)


def roles_sent(s: Shell, dp: FakeDatapath) -> list[tuple[int, int]]:
    """The (role, generation id) of each role request sent to `dp` since the last call."""
    return [struct.unpack_from("!I4xQ", m.raw, 8) for m in s.sent(dp)
            if m.msg_type == dp.ofproto.OFPT_ROLE_REQUEST]


def grant(s: Shell, dp: FakeDatapath) -> list[tuple[int, int]]:
    """The switch answers every role request sent to `dp` and not yet answered, as Open
    vSwitch does with no rival: a reply with the role asked and its generation id (the
    requests are taken out of what `dp` was sent); their (role, generation id)."""
    ofp = dp.ofproto
    asked = [m for m in dp.messages() if m.msg_type == ofp.OFPT_ROLE_REQUEST]
    dp.sent[:] = [m.raw for m in dp.messages() if m.msg_type != ofp.OFPT_ROLE_REQUEST]
    out = []
    for m in asked:
        role, gen = struct.unpack_from("!I4xQ", m.raw, 8)
        xid = struct.unpack_from("!I", m.raw, 4)[0]
        s.switch_says(struct.pack("!BBHII4xQ", 4, ofp.OFPT_ROLE_REPLY, 24, xid, role, gen),
                      dp=dp)
        out.append((role, gen))
    return out


def dp_reads(dp: FakeDatapath) -> int:
    """How many requests for the switch's table `dp` was sent (not yet taken)."""
    return sum(m.msg_type == dp.ofproto.OFPT_MULTIPART_REQUEST
               and ofgen.multipart_type(m.raw) == dp.ofproto.OFPMP_FLOW for m in dp.messages())


def dpid_mastered_by(member_id: str, others: tuple[str, ...]) -> int:
    """A datapath id the rule gives `member_id` among it and `others`."""
    return next(d for d in range(1, 1000) if master_of(d, (member_id, *others)) == member_id)


def test_a_member_programs_the_switches_it_masters_and_no_other(member: str,
                                                                 shell: Shell) -> None:
    """m1 and m2 live: a switch the rule gives m1 gets MASTER, then, once the switch's reply
    confirms it and not before, the connect path (config, meter, table read, pipeline); one
    the rule gives m2 gets SLAVE and nothing that changes it, not even LLDP; when m2's lease
    ends m1 takes it over (MASTER, a newer ticket; programmed once confirmed)."""
    app = shell.app
    mine = FakeDatapath(shell.dp.framework, dpid_mastered_by("m1", ("m2",)))
    theirs = FakeDatapath(shell.dp.framework, dpid_mastered_by("m2", ("m1",)))
    now = time.time()
    beat(shell, now, "m1", "m2")
    for dp in (mine, theirs):
        shell.switch_says(ofgen.features_reply(1, dp.id), "config", dp)
    ofp = mine.ofproto
    before = {m.msg_type for m in mine.messages()}  # asked, not confirmed: nothing programmed
    assert before == {ofp.OFPT_ROLE_REQUEST, ofp.OFPT_SET_ASYNC, ofp.OFPT_MULTIPART_REQUEST}
    assert not app.programs(mine.id) and dp_reads(mine) == 0
    assert grant(shell, mine) == [(ofp.OFPCR_ROLE_MASTER, 10)]
    sent = shell.sent(mine)
    assert ofp.OFPT_SET_CONFIG in [m.msg_type for m in sent] and app.programs(mine.id)
    mine.sent[:] = [m.raw for m in sent]
    xid = shell.table_read_xid(mine)
    mine.sent.clear()
    assert roles_sent(shell, theirs) == [(ofp.OFPCR_ROLE_SLAVE, 10)]
    for dp in (mine, theirs):
        shell.switch_says(ofgen.port_desc_reply(2, dp.id, PORTS), dp=dp)
    shell.switch_says(ofgen.multipart_reply(xid, ofp.OFPMP_FLOW), dp=mine)
    assert flow_mods(shell.sent(mine)) and not shell.sent(theirs)  # the pipeline; nothing
    assert app.programs(mine.id) and not app.programs(theirs.id)
    app.send_event = lambda *_: None  # the tick posts nothing here
    shell.app.send(app.core.tick(now))  # LLDP goes out of mastered switches only
    assert packet_outs(shell.sent(mine), ofp) and not shell.sent(theirs)
    body = shell.rest("GET", "cluster").body
    request = MockRequest("http://127.0.0.1:8080", "get", "/dyncast/v1/cluster")
    OpenAPI.from_file_path(str(SPEC)).validate_response(
        request, MockResponse(app.encode(body), status_code=200))  # as docs/openapi.yaml says
    assert body["roles"] == {f"{mine.id:016x}": MASTER, f"{theirs.id:016x}": SLAVE}
    beat(shell, time.time(), "m1", ticket=11)  # m2's row is gone (or its lease ended)
    shell.app._step_roles()
    assert not app.programs(theirs.id)
    assert grant(shell, theirs) == [(ofp.OFPCR_ROLE_MASTER, 11)]
    assert app.programs(theirs.id) and app.core.counters["errors"] == 0


def test_a_member_whose_lease_ends_stops_programming(member: str, shell: Shell) -> None:
    """No beat for a lease: SLAVE to every switch it mastered, and nothing more is sent;
    /readyz says not ready (the lease is not held); a stale refusal is no error."""
    dp = FakeDatapath(shell.dp.framework, dpid_mastered_by("m1", ()))
    ofp = dp.ofproto
    now = time.time()
    beat(shell, now - 0.25, "m1")  # the lease (0.3 s) ends in 0.05 s
    shell.switch_says(ofgen.features_reply(1, dp.id), "config", dp)
    assert grant(shell, dp) == [(ofp.OFPCR_ROLE_MASTER, 10)]
    assert dp.id in shell.app._reads  # the connect path's table read, not answered yet
    xid = shell.app._reads[dp.id].xid
    shell.sent(dp)
    time.sleep(0.06)
    shell.app._step_roles()
    assert roles_sent(shell, dp) == [(ofp.OFPCR_ROLE_SLAVE, 10)]
    assert dp.id not in shell.app._reads and xid in shell.app._dropped_reads  # answer ignored
    shell.app.send(shell.app.core.tick(time.time()))
    assert not shell.sent(dp) and not shell.app.programs(dp.id)
    status, body = shell.app.health(True)
    assert status == 503 and body["lease"] is False and body["store"] is True
    stale = struct.pack("!BBHIHH", 4, ofp.OFPT_ERROR, 12, 5, ofp.OFPET_ROLE_REQUEST_FAILED,
                        ofp.OFPRRFC_STALE)
    assert (ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_STALE) == (11, 0)  # OpenFlow 1.3
    shell.switch_says(stale, dp=dp)
    assert shell.app.core.counters["role_refused"] == 1
    assert shell.app.core.counters["errors"] == 0


def serve_json(bodies: dict[str, Any]) -> HTTPServer:
    """A loopback HTTP server answering GET `path` with `bodies[path]` (404 otherwise)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = bodies.get(self.path)
            data = json.dumps(body if body is not None else {"error": "no"}).encode()
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def test_dyncastctl_cluster_shows_members_and_masters(capsys: pytest.CaptureFixture[str]) -> None:
    """`dyncastctl cluster`: this member's lease, each member live or dead, each switch's
    master and our role; one controller says it has no cluster."""
    member = Member("m1", 1.5)
    rows = (MemberRow("m1", "http://a", 100.0, 101.5, 7), MemberRow("m2", "http://b", 90.0,
                                                                     91.5, 3))
    member.renewed(View(rows, 100.0, 9), asked_at=100.0)
    member.step([1, 2], 100.1)
    path = "/dyncast/v1/cluster"
    for body, expected in ((member.as_json([1, 2], 100.1), [
            "lease held", "m2               dead", "0000000000000002  master m1 ",
            "our role master"]),
                           ({"enabled": False}, ["no cluster"])):
        server = serve_json({path: body})
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}"
            assert ctl_main(["--controller", url, "cluster"]) == 0
        finally:
            server.shutdown()
            server.server_close()
        out = capsys.readouterr().out
        assert all(e in out for e in expected), out


def test_a_role_reply_is_logged_as_confirmed(member: str, shell: Shell,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """The switch's OFPT_ROLE_REPLY reaches the app and is logged with the role it gives."""
    ofp = shell.dp.ofproto
    raw = struct.pack("!BBHII4xQ", 4, ofp.OFPT_ROLE_REPLY, 24, 7, ofp.OFPCR_ROLE_MASTER, 42)
    with caplog.at_level(logging.INFO):
        shell.switch_says(raw)
    confirmed = [r.fields for r in caplog.records if r.getMessage() == "role_confirmed"]
    assert confirmed == [{"event": "role_confirmed", "dpid": "0000000000000001",
                          "role": "master", "generation_id": 42,
                          "reason": "the switch's role reply"}]
    assert shell.app.core.counters["errors"] == 0


def error_from(dp: FakeDatapath, err_type: int, code: int) -> bytes:
    """An OFPT_ERROR of `err_type`/`code` (its data: an empty request's header)."""
    return struct.pack("!BBHIHH8s", 4, dp.ofproto.OFPT_ERROR, 20, 5, err_type, code,
                       bytes(8))


def test_a_stale_master_refusal_is_asked_again_at_once(member: str, shell: Shell) -> None:
    """Another member's request with a later ticket made our MASTER request stale: the app
    asks again at once (a role query, then MASTER with a greater generation id), programs
    nothing meanwhile, and programs the switch once the switch confirms it; no error."""
    dp = FakeDatapath(shell.dp.framework, dpid_mastered_by("m1", ("m2",)))
    ofp = dp.ofproto
    beat(shell, time.time(), "m1", "m2")
    shell.switch_says(ofgen.features_reply(1, dp.id), "config", dp)
    assert roles_sent(shell, dp) == [(ofp.OFPCR_ROLE_MASTER, 10)]
    shell.switch_says(error_from(dp, ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_STALE), dp=dp)
    assert not shell.app.programs(dp.id) and dp_reads(dp) == 0
    assert grant(shell, dp) == [(ofp.OFPCR_ROLE_NOCHANGE, 0), (ofp.OFPCR_ROLE_MASTER, 11)]
    assert shell.app.programs(dp.id) and dp_reads(dp) == 1
    c = shell.app.core.counters
    assert (c["role_refused"], c["errors"]) == (1, 0)


def test_a_write_refused_as_from_a_slave_stops_the_programming_at_once(
        member: str, shell: Shell, caplog: pytest.LogCaptureFixture) -> None:
    """Another member took the switch before our next beat: the first OFPBRC_IS_SLAVE stops
    our programming at once (nothing more sent, not even LLDP), counted in slave_refusals
    and logged as a warning, not as an OpenFlow error; the refusals of writes already in
    flight are counted, not logged; nothing is asked of it until the next beat."""
    dp = FakeDatapath(shell.dp.framework, dpid_mastered_by("m1", ()))
    ofp = dp.ofproto
    beat(shell, time.time(), "m1")
    shell.switch_says(ofgen.features_reply(1, dp.id), "config", dp)
    grant(shell, dp)
    shell.switch_says(ofgen.port_desc_reply(2, dp.id, PORTS), dp=dp)
    assert shell.app.programs(dp.id) and shell.sent(dp)
    is_slave = error_from(dp, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE)
    assert (ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE) == (1, 10)  # OpenFlow 1.3
    with caplog.at_level(logging.INFO):
        shell.switch_says(is_slave, dp=dp)
        shell.switch_says(is_slave, dp=dp)
    assert not shell.app.programs(dp.id)
    shell.app.send_event = lambda *_: None
    shell.app.send(shell.app.core.tick(time.time()))
    shell.app._step_roles()
    assert not shell.sent(dp)
    c = shell.app.core.counters
    assert (c["slave_refusals"], c["errors"]) == (2, 0)
    assert [r.levelname for r in caplog.records if "as from a slave" in r.getMessage()] == [
        "WARNING"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "dyncast_cluster_slave_refusals_total 2.0" in shell.app.metrics.scrape().decode()

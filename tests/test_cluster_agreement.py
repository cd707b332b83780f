"""Members configured apart are seen: each publishes a digest of the settings every member must
share (controller/cluster/agreement.py) with its lease, and a member lists the live others whose
digest differs (GET /cluster, the log, /metrics). The shell's part runs on the real PostgreSQL
(DYNCAST_TEST_PG_URL)."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apps.cluster import LeaseTable
from controller.cluster.agreement import disagreeing, settings_digest, shared_settings
from controller.cluster.member import Member
from controller.cluster.membership import MemberRow, View
from controller.cluster.settings import ClusterConfig
from controller.config import config_from_toml
from tests import test_app_smoke, test_cluster_shell
from tests.test_app_smoke import Shell

ROOT = Path(__file__).resolve().parent.parent
BASE = """
[controller]
store_url = "postgresql+psycopg://dyncast:pw@db1:5432/dyncast"
ingresses = [1, 2]
[[service]]
name = "web"
dsid = "10.0.100.1"
protocol = "tcp"
port = 8000
[[service]]
name = "dns"
dsid = "10.0.100.2"
protocol = "udp"
port = 53
dataplane = "learn"
[cluster]
enabled = true
member_id = "m1"
advertise = "http://10.0.0.1:8080"
"""
CLUSTER = ClusterConfig(True, "m1", "http://127.0.0.1:8080", 0.1, 0.3, 1.0)
shell = test_app_smoke.shell  # the fixtures: the app on each framework,
pg_url = test_cluster_shell.pg_url  # a fresh PostgreSQL schema,
member = test_cluster_shell.member  # the app as member m1 of a cluster on it


def digest_of(text: str) -> str:
    return settings_digest(config_from_toml(text, "test"))


def test_a_member_s_own_settings_do_not_count() -> None:
    """Member id, advertised address, where it listens, its logging, its credential files and
    the store URL's spelling are a member's own: the digest is the same."""
    own = BASE.replace('member_id = "m1"', 'member_id = "m2"').replace(
        "10.0.0.1:8080", "10.0.0.2:8080")
    own = own.replace("@db1:5432", "@db1.example.net:5432")
    own += '[channel]\nrest_listen = "127.0.0.1:8181"\n[controller.logging]\nlevel = "DEBUG"\n'
    assert digest_of(own) == digest_of(BASE)


@pytest.mark.parametrize("change", [
    ("[cluster]\n", "[dataplane]\ngroup_id_prefix = 0xD6\n[cluster]\n"),  # other group ids
    ('port = 53\n', 'port = 5353\n'),  # a service
    ('dataplane = "learn"\n', 'dataplane = "bucket"\n'),  # a dataplane mode
    ("ingresses = [1, 2]", "ingresses = [1, 3]"),
    ('advertise = "http://10.0.0.1:8080"\n', 'advertise = "http://10.0.0.1:8080"\nlease_s = 1.2\n'),
    ("[cluster]\n", "[controller.health]\nenabled = false\n[cluster]\n"),
])
def test_settings_that_change_what_a_member_programs_or_decides_change_the_digest(
        change: tuple[str, str]) -> None:
    old, new = change
    assert old in BASE
    assert digest_of(BASE.replace(old, new, 1)) != digest_of(BASE)


def test_the_digest_is_the_same_in_every_process() -> None:
    """String hashing differs from process to process (set order): the digest must not."""
    code = ("import sys; from controller.config import config_from_toml; "
            "from controller.cluster.agreement import settings_digest; "
            "print(settings_digest(config_from_toml(sys.stdin.read(), 'x')))")
    got = {subprocess.run([sys.executable, "-c", code], input=BASE, text=True, check=True,
                          capture_output=True, cwd=ROOT,
                          env={**os.environ, "PYTHONHASHSEED": str(seed),
                               "PYTHONPATH": str(ROOT)}).stdout.strip()
           for seed in (1, 2, 3)}
    assert got == {digest_of(BASE)}


def test_sets_are_ordered_before_the_digest() -> None:
    @dataclasses.dataclass(frozen=True)
    class Fake:
        names: frozenset[str]
        cluster: ClusterConfig = CLUSTER

    a = shared_settings(Fake(frozenset({"b", "a", "c"})))
    assert a["names"] == ["a", "b", "c"] and "member_id" not in a["cluster"]


def test_live_members_with_other_settings_are_listed() -> None:
    now = 100.0
    rows = (MemberRow("m1", "", now, now + 1, 1, "aaaa"), MemberRow("m2", "", now, now + 1, 2,
                                                                   "aaaa"),
            MemberRow("m3", "", now, now + 1, 3, "bbbb"), MemberRow("m4", "", now, now + 1, 4),
            MemberRow("m5", "", now - 5, now - 1, 5, "cccc"))  # m5's lease ended
    assert disagreeing(rows, "m1", "aaaa", now) == {"m3": "bbbb", "m4": None}
    m1 = Member("m1", 1.0)
    m1.renewed(View(rows, now, 9), now)
    assert m1.disagreement() == {}  # nothing published yet by us: nothing to compare
    m1.settings = "aaaa"
    assert m1.disagreement() == {"m3": "bbbb", "m4": None}
    assert m1.as_json([], now)["settings_disagree"] == {"m3": "bbbb", "m4": None}


def test_each_beat_publishes_the_digest(pg_url: str) -> None:
    a = LeaseTable(pg_url, CLUSTER)
    b = LeaseTable(pg_url, dataclasses.replace(CLUSTER, member_id="m2"))
    try:
        a.beat("aaaa")
        view = b.beat("bbbb")
        assert {r.member_id: r.settings for r in view.rows} == {"m1": "aaaa", "m2": "bbbb"}
        assert disagreeing(view.rows, "m2", "bbbb", view.now) == {"m1": "aaaa"}
        view = a.beat("bbbb")  # m1 reloaded the same settings as m2
        assert disagreeing(view.rows, "m1", "bbbb", view.now) == {}
    finally:
        a.close()
        b.close()


def test_the_member_says_when_another_is_configured_apart(member: str, shell: Shell,
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    """A live member m2 publishes other settings: m1 logs it once as an error, counts it in
    /metrics and shows it in GET /cluster; when m2 publishes m1's, m1 says they agree."""
    app = shell.app
    # m2 holds a long lease: a slow step (a loaded CI machine) must not end it mid-test
    other = LeaseTable(member, dataclasses.replace(CLUSTER, member_id="m2", heartbeat_s=10.0,
                                                   lease_s=60.0, failover_s=120.0))
    mine = settings_digest(app.core.config)
    try:
        with caplog.at_level(logging.INFO):
            other.beat("0123456789abcdef")
            app._beat(time.time())
            body = shell.rest("GET", "cluster").body
            assert body["settings"] == mine
            assert body["settings_disagree"] == {"m2": "0123456789abcdef"}
            assert body["members"][0]["settings"] == mine  # (m1's row, as it published it)
            assert "dyncast_cluster_settings_disagree 1.0" in app.metrics_text().decode()
            for _ in range(3):  # still apart: said once
                other.beat("0123456789abcdef")
                app._beat(time.time())
            other.beat(mine)
            app._beat(time.time())
            assert shell.rest("GET", "cluster").body["settings_disagree"] == {}
            assert "dyncast_cluster_settings_disagree 0.0" in app.metrics_text().decode()
        said = [r.getMessage() for r in caplog.records if "cluster_settings" in r.getMessage()]
        assert said == ["cluster_settings_disagree", "cluster_settings_agree"], said
        assert app.member.held_until > 0  # not stepped down (`fenced`) for it
        assert app.member.beats_failed == 0 and app.core.counters["errors"] == 0
    finally:
        other.leave()
        other.close()

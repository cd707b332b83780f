"""End-to-end Dyncast on the draft's Figure 2: real OVS, real TCP, real instances and D-MAs.

Every assertion is about what a client observed (which instance answered, from which address)
or what a switch holds (its flow table); the fixtures fail the test on any controller exception
or OpenFlow error and leave nothing behind.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from typing import Any

import pytest

from agents.demo_service import HOLD_LINE_PERIOD
from controller.intents import COOKIE_APP, CookieKind
from mininet_tests.flowdump import dump_flows
from mininet_tests.harness import Lab
from mininet_tests.processes import HostProcess, bin_path, wait_until

SVC1, SVC2 = "10.0.100.1", "10.0.100.2"
R1, R2 = 1, 2  # dpids of D-Router 1 and 2
EDGES = {"edges": True}
INSTANCE_OF = {"svc1@e2": "10.0.0.21", "svc1@e3": "10.0.0.31",
               "svc2@e2": "10.0.0.22", "svc2@e3": "10.0.0.32"}


def client(lab: Lab, host: str, dsid: str, requests: int = 1,
           concurrency: int = 1) -> dict[str, Any]:
    """Run dyncast-client in `host` against `dsid`; return its summary (what the client saw)."""
    out = lab.host_cmd(host, f"{bin_path('dyncast-client')} --url http://{dsid}:8000/ "
                             f"--requests {requests} --concurrency {concurrency} --timeout 5")
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert lines and "summary" in lines[-1], f"client in {host} printed: {out!r}"
    summary: dict[str, Any] = lines[-1]["summary"]
    return summary


def shares(lab: Lab, service: str, dpid: int) -> dict[str, float]:
    """The controller's current shares of new flows for `service` at switch `dpid`."""
    rows = lab.rest("GET", f"/decisions/{service}")[1]
    for row in rows:
        if row["ingress"] == dpid:
            return {c["dbid"]: c["share"] for c in row["candidates"] if c["share"] > 0}
    return {}


def wait_shares(lab: Lab, service: str, dpid: int, dbids: set[str], timeout: float = 20) -> None:
    """Wait until exactly `dbids` get new flows of `service` at `dpid`."""
    wait_until(lambda: set(shares(lab, service, dpid)) == dbids, timeout,
               lambda: f"{service} at {dpid}: shares {shares(lab, service, dpid)}, "
                       f"want {sorted(dbids)}")


def set_load(lab: Lab, dbid: str, extra_load: float) -> None:
    """Give an instance synthetic load through its own control endpoint (from its host)."""
    host = "e2" if dbid.startswith("10.0.0.2") else "e3"
    out = lab.host_cmd(host, f"curl -s -X POST -d '{{\"extra_load\": {extra_load}}}' "
                             f"http://{dbid}:8000/load")
    assert "extra_load" in out, out


def start_hold(lab: Lab, seconds: float, host: str = "c1", dsid: str = SVC1,
               name: str = "hold") -> tuple[HostProcess, str]:
    """Open one long-lived connection from `host` to `dsid`; return it and the instance
    serving it (the name in its first streamed line)."""
    proc = lab.popen(host, [bin_path("dyncast-client"), "--url", f"http://{dsid}:8000/",
                            "--hold", str(seconds)], name, ready=r'"line"')
    first = next(json.loads(x)["line"] for x in proc.log().splitlines()
                 if x.startswith('{"line"'))
    return proc, first


def held_lines(proc: HostProcess) -> list[dict[str, Any]]:
    """The JSON lines a held connection's client printed so far."""
    return [json.loads(x) for x in proc.log().splitlines() if x.startswith("{")]


def assert_held_to_the_end(proc: HostProcess, instance: str, seconds: float,
                           dsid: str = SVC1) -> None:
    """The held connection ended cleanly, every line streamed by `instance`, none missing,
    and the client only ever talked to the D-SID."""
    code = proc.popen.wait(timeout=seconds + 20)
    lines = held_lines(proc)
    assert code == 0 and lines and "summary" in lines[-1], \
        f"held connection ended with exit {code}: {lines[-3:]}"
    served = Counter(x["line"] for x in lines if "line" in x)
    assert set(served) == {instance}, f"held connection was served by {dict(served)}"
    assert sum(served.values()) >= 0.9 * seconds / HOLD_LINE_PERIOD, dict(served)
    assert lines[-1]["summary"]["peers"] == {dsid: 1}, lines[-1]


def stored_bindings(lab: Lab) -> int:
    """How many bindings the controller's SQLite store holds (it runs in the artefact folder)."""
    with sqlite3.connect(lab.artifacts / "dyncast.db") as db:
        return int(db.execute("SELECT count(*) FROM bindings").fetchone()[0])


def affinity_entries(bridge: str, kind: CookieKind) -> list[dict[str, Any]]:
    """Our affinity entries of one kind in a switch's flow table."""
    return [f for f in dump_flows(bridge)
            if f["cookie"] >> 56 == COOKIE_APP and (f["cookie"] >> 48) & 0xFF == kind]


@pytest.mark.sanity
def test_every_host_pair_pings(fig2: Lab) -> None:
    """Ordinary IPv4 forwarding and ARP work between every pair of addresses."""
    addrs = {"c1": ["10.0.0.1"], "c2": ["10.0.0.2"], "e2": ["10.0.0.21", "10.0.0.22"],
             "e3": ["10.0.0.31", "10.0.0.32"]}
    failed = [(src, dst) for src in addrs for host, ips in addrs.items() if host != src
              for dst in ips if fig2.ping(src, dst) is None and fig2.ping(src, dst) is None]
    assert failed == []


@pytest.mark.parametrize("fig2", [EDGES], indirect=True)
def test_client_reaches_dsid_and_chosen_instance_serves(fig2: Lab) -> None:
    """A client connects to the D-SID; the chosen instance serves it and replies come from the
    D-SID; the ingress holds the forward and reverse rewrite entries."""
    wait_shares(fig2, "svc1", R1, {"10.0.0.21", "10.0.0.31"})
    seen = client(fig2, "c1", SVC1, requests=4)
    assert seen["errors"] == 0, seen
    assert seen["peers"] == {SVC1: 4}  # the client only ever talked to the D-SID
    assert set(seen["served"]) == {"svc1@e2", "svc1@e3"}  # equal costs: flows shared
    bindings = fig2.rest("GET", "/bindings/svc1")[1]
    assert sorted(b["dbid"] for b in bindings) == ["10.0.0.21", "10.0.0.21", "10.0.0.31",
                                                    "10.0.0.31"]
    forward = affinity_entries("r1", CookieKind.AFFINITY_FWD)
    reverse = affinity_entries("r1", CookieKind.AFFINITY_REV)
    assert len(forward) == 4 and len(reverse) == 4
    assert all(f["idle_timeout"] == 30 and f["match"]["nw_dst"] == SVC1 for f in forward)
    assert {a.split("->")[0] for f in forward for a in f["actions"] if "ip_dst" in a} \
        <= {"set_field:10.0.0.21", "set_field:10.0.0.31"}
    assert all(f["n_packets"] > 0 for f in forward), forward  # later packets stayed in r1
    assert affinity_entries("r2", CookieKind.AFFINITY_FWD) == []


@pytest.mark.parametrize("fig2", [EDGES], indirect=True)
def test_long_lived_connection_keeps_its_instance_when_decision_changes(fig2: Lab) -> None:
    """A held connection stays on its instance after the decision moves; new ones follow it."""
    wait_shares(fig2, "svc1", R1, {"10.0.0.21", "10.0.0.31"})
    holder, first = start_hold(fig2, 12)
    pinned = INSTANCE_OF[first]
    other = "10.0.0.31" if pinned == "10.0.0.21" else "10.0.0.21"
    set_load(fig2, pinned, 10.0)
    wait_shares(fig2, "svc1", R1, {other})
    seen = client(fig2, "c1", SVC1, requests=6)
    assert seen["errors"] == 0 and {INSTANCE_OF[i] for i in seen["served"]} == {other}, seen
    assert_held_to_the_end(holder, first, 12)


@pytest.mark.parametrize("fig2", [EDGES], indirect=True)
def test_three_tuple_service_keeps_a_clients_connections_together(fig2: Lab) -> None:
    """svc2 keys on (source, D-SID, protocol): four connections with different source ports
    land on one instance, while svc1 (5-tuple) spreads the same pattern over both."""
    wait_shares(fig2, "svc2", R1, {"10.0.0.22", "10.0.0.32"})
    wait_shares(fig2, "svc1", R1, {"10.0.0.21", "10.0.0.31"})
    three = client(fig2, "c1", SVC2, requests=4)
    assert three["errors"] == 0 and len(three["served"]) == 1, three
    five = client(fig2, "c1", SVC1, requests=4)
    assert five["errors"] == 0 and len(five["served"]) == 2, five
    (entry,) = [f for f in affinity_entries("r1", CookieKind.AFFINITY_FWD)
                if f["match"]["nw_dst"] == SVC2]
    assert "tp_src" not in entry["match"] and "tp_dst" not in entry["match"]


@pytest.mark.parametrize("fig2", [EDGES], indirect=True)
def test_after_idle_timeout_a_new_flow_is_decided_afresh(fig2: Lab) -> None:
    """Within the idle timeout the client keeps its instance although the decision moved;
    once the switch expires the entry, the binding ends and the next flow follows the decision."""
    svc = fig2.rest("GET", "/services/svc2")[1]
    svc["affinity"]["idle_timeout"] = 3
    assert fig2.rest("PUT", "/services/svc2", svc)[0] == 200
    wait_shares(fig2, "svc2", R1, {"10.0.0.22", "10.0.0.32"})
    (first,) = client(fig2, "c1", SVC2)["served"]
    wait_until(lambda: stored_bindings(fig2) == 1, 10, "the binding reaching the store")
    pinned = INSTANCE_OF[first]
    other = "10.0.0.32" if pinned == "10.0.0.22" else "10.0.0.22"
    set_load(fig2, pinned, 10.0)
    wait_shares(fig2, "svc2", R1, {other})
    assert set(client(fig2, "c1", SVC2)["served"]) == {first}  # bound: same instance
    wait_until(lambda: fig2.rest("GET", "/bindings/svc2")[1] == [], 15,
               lambda: f"binding not expired: {fig2.rest('GET', '/bindings/svc2')[1]}")
    assert affinity_entries("r1", CookieKind.AFFINITY_FWD) == []
    assert affinity_entries("r1", CookieKind.AFFINITY_REV) == []
    wait_until(lambda: stored_bindings(fig2) == 0, 10, "the binding leaving the store")
    assert {INSTANCE_OF[i] for i in client(fig2, "c1", SVC2)["served"]} == {other}


def test_bad_dma_report_is_rejected_and_changes_nothing(fig2: Lab) -> None:
    """An absurd metric report gets a 4xx naming the field; instances and decisions stay."""
    reg = {"dsid": SVC1, "dbid": "10.0.0.21", "dma": "lab"}
    assert fig2.rest("POST", "/instances", reg)[0] == 201
    good = {"dbid": "10.0.0.21", "cpu": 0.1, "sessions": 1, "queue": 0, "capacity": 4}
    assert fig2.rest("POST", "/metrics", good)[0] == 200
    wait_shares(fig2, "svc1", R1, {"10.0.0.21"})  # located (ARP probe answered) and decided
    before = (fig2.rest("GET", "/instances")[1], fig2.rest("GET", "/decisions")[1])
    for bad, field in (({**good, "cpu": 3.5}, "cpu"), ({**good, "sessions": -1}, "sessions"),
                       ({**good, "dbid": "10.0.0.300"}, "dbid")):
        status, body = fig2.rest("POST", "/metrics", bad)
        assert status == 400 and body["field"] == field, body
    status, body = fig2.rest("POST", "/metrics", {**good, "dbid": "10.0.0.99"})
    assert status == 404, body
    after = (fig2.rest("GET", "/instances")[1], fig2.rest("GET", "/decisions")[1])
    assert after == before


@pytest.mark.parametrize("fig2", [EDGES], indirect=True)
def test_withdrawn_instance_gets_no_new_flows(fig2: Lab) -> None:
    """When e2's D-MA stops it withdraws its instances; new flows from every ingress go to e3."""
    wait_shares(fig2, "svc1", R2, {"10.0.0.21", "10.0.0.31"})
    dma = next(p for p in fig2.procs if p.host == "e2" and p.name == "dma")
    assert fig2.stop_process(dma) == 0
    wait_until(lambda: "10.0.0.21" not in {i["dbid"] for i in fig2.rest("GET", "/instances")[1]},
               10, "10.0.0.21 still registered")
    for host in ("c1", "c2"):
        seen = client(fig2, host, SVC1, requests=4)
        assert seen["errors"] == 0 and seen["served"] == {"svc1@e3": 4}, (host, seen)

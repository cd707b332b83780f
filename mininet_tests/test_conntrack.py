"""The `conntrack` dataplane on Figure 2 with real traffic (Open vSwitch's userspace datapath):
new connections reach the decided instance with no packet-in, replies come from the D-SID,
and held connections keep their instance across a decision change, a controller SIGKILL and
restart, and a wipe of the ingress's tables (the affinity lives in the connection tracker);
a client moved to another ingress keeps its connection; a client reusing the port of a
connection its instance still holds connects (the tracker's invalid packets pass translated);
an instance's ICMP error reaches the client from the D-SID."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.dataplane.tracker import parse_line
from controller.intents import TABLE_DECISION, CookieKind
from mininet_tests.harness import Lab
from mininet_tests.processes import wait_until
from mininet_tests.restarts import HeldConnections, damage, probe, repaired, stat
from mininet_tests.test_dataplane import BOTH, INSTANCE_OF, _entries, _steer_and_keep
from mininet_tests.test_fig2 import (
    EDGES,
    R1,
    SVC1,
    assert_held_to_the_end,
    client,
    held_lines,
    set_load,
    start_hold,
    wait_shares,
)
from mininet_tests.test_restart import RECONCILE_S, assert_unharmed, restart_and_check, serve

HERE = Path(__file__).parent
CONFIG = HERE / "fig2_conntrack.toml"
ZONE = 100 << 8 | 1  # svc1's D-SID 10.0.100.1: the zone is its low 16 bits


def conntrack(zone: int = ZONE) -> list[str]:
    """The tracker's entries of a zone (all bridges share ovs-vswitchd's one tracker)."""
    out = subprocess.run(["ovs-appctl", "dpctl/dump-conntrack", f"zone={zone}"],
                         capture_output=True, text=True, timeout=20, check=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def commits_to(dbids: set[str]) -> bool:
    """True when r1's buckets commit new connections to exactly `dbids`."""
    decision = _entries("r1", CookieKind.DECISION, TABLE_DECISION)
    targets = {m.group(1) for f in decision for a in f["actions"]
               for m in [re.search(r"nat\(dst=([0-9.]+)\)", a)] if m}
    return bool(decision) and targets == dbids


@pytest.mark.parametrize("fig2", [{**EDGES, "config": CONFIG}], indirect=True)
def test_conntrack_steers_new_flows_without_packet_in_and_keeps_a_held_one(fig2: Lab) -> None:
    """New connections: no packet-in, both instances, replies from the D-SID (the client only
    ever talks to it); a held connection keeps its instance when the decision moves away; the
    tracker holds the connections, in svc1's zone, marked and translated; withdrawing e2 flushes
    its connections from the tracker (NXT_CT_FLUSH), not e3's."""
    _steer_and_keep(fig2, follows=commits_to)
    entries = conntrack()
    assert any("dst=10.0.100.1" in e and "mark=" in e for e in entries), entries
    assert not _entries("r1", CookieKind.LEARNED_FWD) and not _entries("r1", CookieKind.PIN)
    e2 = lambda: [e for e in conntrack() if "reply=(src=10.0.0.21,"  # noqa: E731
                  in e and "sport=8000" in e]
    assert e2(), entries
    status, _ = fig2.rest("DELETE", "/instances/10.0.0.21")
    assert status == 200
    wait_until(lambda: not e2(), 5, lambda: f"e2's connections not flushed: {e2()}")
    assert any("reply=(src=10.0.0.31," in e for e in conntrack())  # e3's stay


@pytest.mark.heavy  # its UDP twin (test_conntrack_udp) runs under both frameworks, and so do
# test_restart's controller kill and wiped ingress (CI's time budget)
@pytest.mark.parametrize("fig2", [{"config": CONFIG}], indirect=True)
def test_held_connections_survive_a_decision_change_a_controller_kill_and_a_wiped_ingress(
        fig2: Lab) -> None:
    """200 held connections on both instances: none breaks or moves when the decision moves
    all new flows to e3, when the controller is SIGKILLed and restarted (tables compared with
    before), or when r1 loses every entry behind the controller's back (repaired within
    reconcile_interval_s; the tracker keeps each connection's translation)."""
    conns = serve(fig2)
    set_load(fig2, "10.0.0.21", 10.0)
    wait_shares(fig2, "svc1", R1, {"10.0.0.31"})
    wait_until(lambda: commits_to({"10.0.0.31"}), 10, "r1 does not commit new flows to e3")
    assert_unharmed(conns, time.time(), stall_s=5.0)
    restart_and_check(fig2, conns, signal.SIGKILL)
    added = stat(fig2, "reconcile_added")
    time.sleep(2 * RECONCILE_S + 1)
    assert stat(fig2, "reconcile_added") == added, "the audit keeps re-adding entries"
    emptied = time.time()
    fig2.empty_switch("r1")
    repair_s = repaired(fig2, added, emptied, RECONCILE_S + 1.0)
    served = probe(fig2, "c1", SVC1, 10.0)
    assert served is not None, f"no new connection served within 10 s of a repair at {repair_s} s"
    assert_unharmed(conns, served, stall_s=None)
    assert len(conntrack()) >= 200
    set_load(fig2, "10.0.0.21", 0.0)
    wait_shares(fig2, "svc1", R1, BOTH)


LIMIT = 10  # fig2_conntrack_limit.toml's zone_limit
HELD_UNDER_LIMIT = 6


def attempts(lab: Lab, host: str, n: int) -> list[str]:
    """`n` new connections to svc1 from `host`, one after another, each allowed 1 s: curl's
    HTTP code for each ("000": no answer in time)."""
    out = lab.host_cmd(host, f"for i in $(seq {n}); do curl -s -m 1 -o /dev/null "
                             f"-w '%{{http_code}}\\n' http://{SVC1}:8000/; done")
    return [x.strip() for x in out.splitlines() if x.strip().isdigit()]


@pytest.fixture
def no_limit_left() -> Iterator[None]:
    """Start with svc1's zone empty, and remove its limit once the test's controller is gone
    (requested before `fig2`, so torn down after it): the tracker is ovs-vswitchd's, shared
    with any other lab running then, and outlives this one while any bridge of the datapath
    does (with the connections an earlier lab's hosts left open when they were killed)."""
    appctl = lambda cmd: subprocess.run(["ovs-appctl", cmd, f"zone={ZONE}"],  # noqa: E731
                                        capture_output=True, timeout=20, check=False)
    appctl("dpctl/flush-conntrack")
    yield
    appctl("dpctl/ct-del-limits")


@pytest.mark.parametrize("fig2", [{"config": HERE / "fig2_conntrack_limit.toml"}],
                         indirect=True)
def test_a_full_zone_refuses_new_connections_and_keeps_held_ones(no_limit_left: None,
                                                                 fig2: Lab) -> None:
    """The controller sets svc1's zone limit (ct-set-limits) and reads the tracker: /bindings
    lists the held connections with their instance, /stats counts the zone's entries. With
    the zone full, a new connection gets no answer (its SYN is dropped; curl times out) while
    the held ones keep streaming on their instance."""
    _fill_the_zone(fig2)


def _fill_the_zone(fig2: Lab) -> None:
    """The steps of the test above."""
    fig2.fast_reconnect()
    for host in ("e2", "e3"):
        fig2.start_edge(host, capacity=4 * HELD_UNDER_LIMIT)
    wait_shares(fig2, "svc1", R1, BOTH)
    limits = lambda: subprocess.run(  # noqa: E731
        ["ovs-appctl", "dpctl/ct-get-limits", f"zone={ZONE}"], capture_output=True,
        text=True, timeout=20).stdout
    wait_until(lambda: f"zone={ZONE},limit={LIMIT}," in limits(), 10,
               lambda: f"the controller set no limit: {limits()!r}")
    conns = HeldConnections(fig2, "c1", SVC1, HELD_UNDER_LIMIT)
    first = conns.report()
    assert first["states"] == {"open": HELD_UNDER_LIMIT}, damage(first)
    dump = conntrack()
    (fig2.artifacts / "conntrack-dump.txt").write_text("\n".join(dump) + "\n")
    assert all(parse_line(line) is not None for line in dump), dump
    tracked = lambda: [b for b in fig2.rest("GET", "/bindings/svc1")[1]  # noqa: E731
                       if b["source"] == "tracker" and b.get("live")]
    wait_until(lambda: len(tracked()) == len(dump), 10,
               lambda: f"/bindings shows {tracked()}, the tracker {dump}")
    held = {(b["flow"]["sport"], b["dbid"]) for b in tracked()}
    assert held == {(c["sport"], INSTANCE_OF[c["instance"]]) for c in first["connections"]}
    wait_until(lambda: stat(fig2, f"conntrack_entries_zone_{ZONE}") == len(dump), 10,
               "/stats does not count the zone's entries")
    room = LIMIT - len(dump)
    recirc = lambda: subprocess.run(  # noqa: E731 - how the refused SYNs end (docs)
        ["ovs-appctl", "coverage/read-counter", "datapath_drop_recirc_error"],
        capture_output=True, text=True, timeout=20).stdout.strip()
    before = recirc()
    codes = attempts(fig2, "c2", room + 4)
    (fig2.artifacts / "attempts.json").write_text(json.dumps(
        {"codes": codes, "datapath_drop_recirc_error": [before, recirc()]}))
    assert codes[:room] == ["200"] * room and codes[room:] == ["000"] * 4, codes
    assert len(conntrack()) == LIMIT
    assert_unharmed(conns, time.time(), stall_s=5.0)


@pytest.mark.parametrize("fig2", [{**EDGES, "config": CONFIG}], indirect=True)
def test_a_client_moved_to_another_ingress_keeps_its_connection_on_its_instance(
        fig2: Lab) -> None:
    """c1 moves from r1 to r2 in the middle of a held connection, after the decision has moved
    every new flow away from its instance: r2 shares ovs-vswitchd's tracker, so the
    connection's packets are known there (not decided again) and it completes on its
    instance; c1's new connections go where the decision says."""
    wait_shares(fig2, "svc1", R1, BOTH)
    holder, first = start_hold(fig2, 15)
    wait_until(lambda: len(held_lines(holder)) >= 3, 10, "the held connection streams")
    held = INSTANCE_OF[first]
    (other,) = BOTH - {held}
    set_load(fig2, held, 10.0)
    wait_shares(fig2, "svc1", R1, {other})
    wait_until(lambda: commits_to({other}), 10, f"r1 does not commit new flows to {other}")
    fig2.move_host("c1", "r2", 12)
    assert_held_to_the_end(holder, first, 15)
    again = client(fig2, "c1", SVC1, requests=4)
    assert again["errors"] == 0, again
    assert {INSTANCE_OF[k] for k in again["served"]} == {other}, again
    set_load(fig2, held, 0.0)


REUSED_PORT = 31999  # below Linux's ephemeral range: no other connection of c1 takes it
FROM_PORT = r"""
import socket, struct, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.0.0.1", int(sys.argv[1])))
s.settimeout(float(sys.argv[2]))
start = time.time()
try:
    s.connect(("10.0.100.1", 8000))
except OSError as e:
    print(f"failed {type(e).__name__} after {time.time() - start:.1f} s", flush=True)
    sys.exit(1)
print(f"open in {time.time() - start:.2f} s", flush=True)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # exit: RST
if sys.argv[3] == "hold":
    time.sleep(3600)
s.sendall(b"GET / HTTP/1.0\r\nHost: svc1\r\n\r\n")
data = b""
while chunk := s.recv(4096):
    data += chunk
print("reply " + data.split(b"\r\n", 1)[0].decode(), flush=True)
"""


def _stale_at(lab: Lab, port: int) -> dict[str, str]:
    """The instances' connections (not TIME-WAIT) to c1's `port`, by host."""
    states = "state established state fin-wait-1 state fin-wait-2 state close-wait"
    return {h: out for h in ("e2", "e3")
            if (out := lab.host_cmd(h, f"ss -Htn {states} '( dport = :{port} )'").strip())}


@pytest.mark.parametrize("fig2", [{**EDGES, "config": CONFIG}], indirect=True)
def test_a_client_reusing_the_port_of_a_connection_its_instance_still_holds_connects(
        fig2: Lab) -> None:
    """c1's connection from a fixed port ends with a RST that never reaches its instance (r1
    drops it for the test, as the bench's killed clients lost theirs), and the tracker forgets
    it; c1 connects again from that port: the instance's stale socket answers the SYN with a
    challenge ACK, c1 resets it and connects (0.01 s here), as in the other modes (with the
    tracker's invalid packets dropped, the connect timed out after 8 s, the stale socket
    still there: it would have hung until that socket timed out, never for an idle one)."""
    wait_shares(fig2, "svc1", R1, BOTH)
    script = fig2.artifacts / "from_port.py"
    script.write_text(FROM_PORT)
    holder = fig2.popen("c1", [sys.executable, str(script), str(REUSED_PORT), "5", "hold"],
                        "from-port", ready=r"^open ")
    drop = f"table=0,priority=65000,tcp,nw_src=10.0.0.1,tp_src={REUSED_PORT},tcp_flags=+rst"
    subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "add-flow", "r1", drop + ",actions=drop"],
                   check=True, timeout=20)
    for _ in range(2):  # a full round after the add: the connection's cached datapath flow,
        # translated before the drop entry existed, would still forward the RST until then
        # (CI once saw the instance's socket gone: docs/dataplanes.md, pitfall 14's cache)
        subprocess.run(["ovs-appctl", "revalidator/wait"], check=True, timeout=20)
    try:
        fig2.stop_process(holder)
        time.sleep(0.5)
        stale = _stale_at(fig2, REUSED_PORT)
    finally:
        subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "--strict", "del-flows", "r1", drop],
                       check=True, timeout=20)
    assert len(stale) == 1 and "ESTAB" in next(iter(stale.values())), stale
    (host,) = stale
    held, other = ("10.0.0.21", "10.0.0.31") if host == "e2" else ("10.0.0.31", "10.0.0.21")
    set_load(fig2, other, 10.0)  # every bucket to the stale socket's instance
    wait_until(lambda: commits_to({held}), 15, f"r1 does not commit new flows to {held}")
    subprocess.run(["ovs-appctl", "dpctl/flush-conntrack", f"zone={ZONE}"], check=True,
                   capture_output=True, timeout=20)
    before = _stale_at(fig2, REUSED_PORT)
    out = fig2.host_cmd("c1", f"{sys.executable} {script} {REUSED_PORT} 8 request")
    out += f"\nstale before: {before}, after: {_stale_at(fig2, REUSED_PORT)}"
    found = re.search(r"^open in ([\d.]+) s", out, re.MULTILINE)
    assert found and float(found.group(1)) < 4.0 and re.search(
        r"^reply HTTP/1\.[01] 200", out, re.MULTILINE), out
    assert not _stale_at(fig2, REUSED_PORT), "the stale socket is still there"
    set_load(fig2, other, 0.0)


ICMP_LISTEN = r"""
import json, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(0.5)
print("listening", flush=True)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    try:
        data, _ = s.recvfrom(2048)
    except TimeoutError:
        continue
    hl = (data[0] & 15) * 4
    if data[hl] != 3:
        continue
    inner = data[hl + 8:]
    ihl = (inner[0] & 15) * 4
    print(json.dumps({"src": socket.inet_ntoa(data[12:16]), "code": data[hl + 1],
                      "inner_src": socket.inet_ntoa(inner[12:16]),
                      "inner_dst": socket.inet_ntoa(inner[16:20]),
                      "inner_sport": int.from_bytes(inner[ihl:ihl + 2], "big"),
                      "inner_dport": int.from_bytes(inner[ihl + 2:ihl + 4], "big")}), flush=True)
"""
ICMP_SEND = r"""
import socket, struct, sys
def csum(b):
    b += b"\0" * (len(b) % 2)
    t = sum(struct.unpack(f"!{len(b) // 2}H", b))
    t = (t >> 16) + (t & 0xFFFF)
    return ~(t + (t >> 16)) & 0xFFFF
src, dst, sport = sys.argv[1], sys.argv[2], int(sys.argv[3])
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0, socket.inet_aton("10.0.0.1"),
                 socket.inet_aton(src))
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
quoted = ip + struct.pack("!HHI", sport, 8000, 12345)
icmp = struct.pack("!BBHI", 3, 3, 0, 0) + quoted
icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.sendto(icmp, (dst, 0))
print("sent", flush=True)
"""


@pytest.mark.parametrize("fig2", [{**EDGES, "config": CONFIG}], indirect=True)
def test_an_instances_icmp_error_reaches_the_client_from_the_dsid(fig2: Lab) -> None:
    """The instance of c1's connection sends c1 an ICMP port unreachable quoting c1's packet
    as it received it (to its D-BID): c1 gets it from the D-SID, quoting its packet to the
    D-SID (`+rel`, translated outside and inside), so its socket can tell which it is."""
    wait_shares(fig2, "svc1", R1, BOTH)
    script = fig2.artifacts / "from_port.py"
    script.write_text(FROM_PORT)
    port = REUSED_PORT - 1
    fig2.popen("c1", [sys.executable, str(script), str(port), "5", "hold"], "icmp-hold",
               ready=r"^open ")
    (host,) = _stale_at(fig2, port)
    dbid = "10.0.0.21" if host == "e2" else "10.0.0.31"
    for name, text in (("icmp_listen.py", ICMP_LISTEN), ("icmp_send.py", ICMP_SEND)):
        (fig2.artifacts / name).write_text(text)
    listener = fig2.popen("c1", [sys.executable, str(fig2.artifacts / "icmp_listen.py"), "6"],
                          "icmp-listen", ready=r"^listening")
    sent = fig2.host_cmd(host, f"{sys.executable} {fig2.artifacts / 'icmp_send.py'} "
                               f"{dbid} 10.0.0.1 {port}")
    assert "sent" in sent, sent
    seen = lambda: [json.loads(x) for x in listener.log().splitlines()  # noqa: E731
                    if x.startswith("{")]
    wait_until(seen, 5, lambda: f"no ICMP error reached c1: {listener.log()!r}")
    assert seen()[0] == {"src": SVC1, "code": 3, "inner_src": "10.0.0.1", "inner_dst": SVC1,
                         "inner_sport": port, "inner_dport": 8000}, seen()


def _marks() -> set[str]:
    """The ct_marks r1's buckets commit new connections with."""
    return {m.group(1) for f in _entries("r1", CookieKind.DECISION, TABLE_DECISION)
            for a in f["actions"] for m in [re.search(r"set_field:(\w+)->ct_mark", a)] if m}


@pytest.mark.parametrize("fig2", [{"config": HERE / "fig2_conntrack_overlay.toml",
                                   "overlay": True}], indirect=True)
def test_conntrack_overlay_marks_without_nat_and_keeps_a_held_connection(fig2: Lab) -> None:
    """conntrack + overlay: new connections reach the decided instance, which answers on the
    D-SID, with no packet-in; a held one keeps its instance across a decision change; the
    tracker holds them marked, untranslated, established or closed (it saw the replies)."""
    for host, dbid in (("e2", "10.0.0.21"), ("e3", "10.0.0.31")):
        fig2.popen(host, fig2.demo_service_argv("0.0.0.0", f"svc1@{host}"), "service",
                   ready=r"^serving ")
        fig2.start_dma(host, {SVC1: dbid})
    _steer_and_keep(fig2, follows=lambda dbids: len(_marks()) == len(dbids))
    entries = conntrack()
    assert entries and all("mark=" in e and "reply=(src=10.0.100.1," in e for e in entries), entries
    assert any(re.search(r"state=(ESTABLISHED|TIME_WAIT)", e) for e in entries), entries
    decision = " ".join(" ".join(f["actions"]) for f in
                        _entries("r1", CookieKind.DECISION, TABLE_DECISION))
    assert "ct_mark" in decision and "nat" not in decision, decision

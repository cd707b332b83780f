"""Switch-local failover on Figure 2 with real OVS: an instance's link goes down (its switch-side
veth, `ip link set ... down`) while the controller is stopped (SIGSTOP); the switch alone sends
new requests to the backup, which answers from the D-SID. Then the controller runs again, the
link comes back exactly as it was, and the instance serves again; the groups survive the
controller's periodic reconciliation. Config: mininet_tests/fig2_failover.toml.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mininet_tests.flowdump import dump_flows, dump_flows_text
from mininet_tests.harness import Lab
from mininet_tests.processes import HostProcess, wait_until
from mininet_tests.test_dataplane import _new_flows_follow_the_decision
from mininet_tests.test_fig2 import (
    EDGES,
    INSTANCE_OF,
    R1,
    SVC1,
    SVC2,
    client,
    set_load,
    wait_shares,
)

HERE = Path(__file__).parent
FAILOVER = {**EDGES, "config": HERE / "fig2_failover.toml"}
TIMED = HERE / "timedrequests.py"
SWITCH_OF = {"e2": "r2", "e3": "r3"}
RECOVERY_S = 0.1  # requests started this long after the link went down reach the backup
STOPPED_S = 3.0  # the controller stays stopped this long (under OVS's 5 s inactivity probe)


def _stat(lab: Lab, name: str) -> int:
    return int(lab.rest("GET", "/stats")[1].get(name, 0))


def _groups(bridge: str) -> str:
    return subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-groups", bridge],
                          capture_output=True, text=True, check=True).stdout


def _ff(bridge: str) -> list[int]:
    """The ids of the fast-failover groups `bridge` holds."""
    return sorted(int(g) for g in re.findall(r"group_id=(\d+),type=ff", _groups(bridge)))


def _named(bridge: str, dbids: set[str] | None = None) -> set[int]:
    """The groups `bridge`'s entries send to (only those matching packets to `dbids`)."""
    return {int(g) for line in dump_flows_text(bridge).splitlines()
            if dbids is None or any(f"nw_dst={d}," in line for d in dbids)
            for g in re.findall(r"group:(\d+)", line)}


def _switch_side(lab: Lab, host: str) -> str:
    """The name of the switch-side end of `host`'s link to its switch."""
    link = lab.net[host].intfList()[0].link
    for intf in (link.intf1, link.intf2):
        if intf.node.name == SWITCH_OF[host]:
            return str(intf.name)
    raise AssertionError(f"no link from {host} to {SWITCH_OF[host]}")


def _link(intf: str, up: bool) -> None:
    subprocess.run(["ip", "link", "set", "dev", intf, "up" if up else "down"], check=True)


def _rows(proc: HostProcess, timeout: float) -> list[dict[str, Any]]:
    code = proc.popen.wait(timeout=timeout)
    lines = [json.loads(x) for x in proc.log().splitlines() if x.startswith("{")]
    assert code == 0 and lines and "done" in lines[-1], f"exit {code}: {proc.log()[-1500:]}"
    return lines[:-1]


def _link_failure(lab: Lab, dsid: str, down_host: str, stop: bool) -> tuple[list[dict[str, Any]],
                                                                          float, float]:
    """Closed-loop requests from c1 to `dsid` (4 workers, 0.5 s timeout); 1 s in,
    `down_host`'s link goes down (with the controller stopped if `stop`) for STOPPED_S, then
    comes back exactly as it was (and the controller runs again). The rows, and when the link
    went down and when the controller ran again."""
    intf = _switch_side(lab, down_host)
    assert lab.controller is not None and lab.controller.popen is not None
    ctl = lab.controller.popen
    proc = lab.popen("c1", [sys.executable, str(TIMED), "--dsid", dsid, "--workers", "4",
                            "--seconds", str(2.0 + STOPPED_S), "--timeout", "0.5"],
                     f"timed-{dsid}-{stop}", ready=r"^ready")
    time.sleep(1.0)
    if stop:
        ctl.send_signal(signal.SIGSTOP)
    try:
        _link(intf, False)
        down_at = time.time()  # (after the command: forking `ip` took over 0.1 s under load)
        time.sleep(STOPPED_S)
        cont_at = time.time()
    finally:
        if stop:
            ctl.send_signal(signal.SIGCONT)
    try:
        rows = _rows(proc, 20)
    finally:
        _link(intf, True)
    return rows, down_at, cont_at


def _moving_buckets(bridge: str) -> set[int]:
    """The buckets of svc1 that `bridge` is moving (their decision entry learns pins)."""
    return {f["cookie"] & 0xFFFF for f in dump_flows(bridge)
            if f["table"] == 3 and f["cookie"] >> 48 == 0xDC05
            and any(a.startswith("learn(") for a in f["actions"])}


def _reused_ports_connect(lab: Lab, rows: list[dict[str, Any]], buckets: int) -> None:
    """New connections from source ports c1 used for svc1 seconds ago, in buckets r1 is
    moving now, are each served by one instance: their earlier connections' SYN datapath
    flows may still be cached (OVS keeps them up to 10 s), and one re-translated through a
    bucket's SYN entry after its pin idled out must not send the new SYN to the new instance
    and its next packets, pinned by the bucket's entry, to the old one (docs/dataplanes.md,
    pitfall 14). Clients reuse ports that soon at high connection rates: the closed loop's
    ports wrap Linux's range every few seconds."""
    moving = _moving_buckets("r1")
    if not moving:  # the moves began 1-2 s ago and last 5 s: only a very slow run gets here
        print("reused ports not tried: r1 moves no bucket any more")
        return
    ports = [r["sport"] for r in rows if r.get("instance") and r["sport"]
             and (r["sport"] >> 1) & (buckets - 1) in moving][-12:]
    assert len(ports) >= 6, f"too few ports of moving buckets {sorted(moving)}: {ports}"
    reused = _connect_from(lab, ports, "reused-ports")
    failed = [r for r in reused if "instance" not in r]
    assert not failed, (f"{len(failed)} of {len(reused)} connections from reused ports failed "
                        f"(buckets {sorted(moving)} moving): {failed}")


def _connect_from(lab: Lab, ports: list[int], name: str) -> list[dict[str, Any]]:
    """One request to svc1 from each source port in turn (3 s timeout each): the rows."""
    proc = lab.popen("c1", [sys.executable, str(TIMED), "--dsid", SVC1, "--timeout", "3",
                            "--sports", ",".join(map(str, ports))], name, ready=r"^ready")
    return _rows(proc, 20 + 4 * len(ports))


def _owner_of_last_bucket(both: set[str]) -> str:
    """The instance r1's last bucket of svc1 (15) points to."""
    flows = dump_flows("r1")
    (last,) = [f for f in flows if f["table"] == 3 and f["cookie"] >> 48 == 0xDC05
               and f["cookie"] & 0xFFFF == 15]
    label = next(int(a.split(":")[1].split("-")[0], 0) for a in last["actions"] if "reg0" in a)
    return next(d for d in both for f in flows if f["table"] == 4
                and f"set_field:{d}->ip_dst" in f["actions"]
                and int(f["match"].get("reg0", "0"), 0) == label)


def _summary(rows: list[dict[str, Any]], down_at: float, until: float, backup: str) -> str:
    """Requests started while the link was down (`down_at` to `until`): how many, how many
    failed (not served by `backup`), when the last failed one and the first served one
    started, after the link went down."""
    during = sorted((r for r in rows if down_at <= r["t"] < until), key=lambda r: r["t"])
    failed = [r for r in during if INSTANCE_OF.get(r.get("instance", "")) != backup]
    served = [r for r in during if r not in failed]

    def at(r: dict[str, Any] | None) -> str:
        return "-" if r is None else f"{1000 * (r['t'] - down_at):.0f} ms"
    return (f"{len(during)} requests started in the {until - down_at:.1f} s the link was "
            f"down, {len(failed)} failed (the last started {at(failed[-1] if failed else None)}"
            f" after it went down); the first served by {backup} started "
            f"{at(served[0] if served else None)} after it")


def _fail_over(lab: Lab, dsid: str, down_host: str, backup: str) -> list[dict[str, Any]]:
    """`_link_failure` with the controller stopped: every request started from RECOVERY_S
    after the link went down until the controller ran again is served by `backup`."""
    rows, down_at, cont_at = _link_failure(lab, dsid, down_host, stop=True)
    window = [r for r in rows if down_at + RECOVERY_S <= r["t"] < cont_at - 0.5]
    assert len(window) >= 10, rows
    wrong = [r for r in window if r.get("instance") is None
             or INSTANCE_OF.get(r["instance"]) != backup]
    assert not wrong, f"{len(wrong)} of {len(window)} requests not served by {backup}: {wrong}"
    print(f"switch-local failover, controller stopped, {dsid}: "
          f"{_summary(rows, down_at, cont_at, backup)}")
    return rows


@pytest.mark.parametrize("fig2", [FAILOVER], indirect=True)
def test_bucket_switch_fails_over_without_the_controller(fig2: Lab) -> None:
    """bucket: e2's link down with the controller stopped: every new request reaches e3 from
    100 ms on; the controller, running again, moves the decision; the link restored, e2 serves
    again, and while its buckets move back, new connections from ports used seconds ago are
    served (pitfall 14); the failover groups are still in the switches after reconciliation."""
    both = {"10.0.0.21", "10.0.0.31"}
    wait_shares(fig2, "svc1", R1, both)
    wait_until(lambda: _new_flows_follow_the_decision(both), 10,
               "r1 does not send new flows to both instances")
    wait_until(lambda: "type=ff" in _groups("r2") and "type=ff" in _groups("r3"), 10,
               lambda: f"no fast-failover groups: r2 {_groups('r2')!r}")
    seen = client(fig2, "c1", SVC1, requests=12)
    assert seen["errors"] == 0 and {INSTANCE_OF[i] for i in seen["served"]} == both, seen
    rows = _fail_over(fig2, SVC1, "e2", "10.0.0.31")
    assert any(INSTANCE_OF.get(r.get("instance", "")) == "10.0.0.21" for r in rows), \
        "e2 served nothing before its link went down: the failover was not exercised"
    wait_shares(fig2, "svc1", R1, both, timeout=30)  # e2 located again, decided again
    wait_until(lambda: _new_flows_follow_the_decision(both), 15,
               "r1 does not send new flows to both instances again")
    _reused_ports_connect(fig2, rows, 16)  # fig2_failover.toml: svc1's buckets
    runs = _stat(fig2, "reconcile_runs")
    wait_until(lambda: _stat(fig2, "reconcile_runs") >= runs + 4, 15,
               "no reconciliation ran")  # every switch read back and repaired at least once
    for bridge in ("r2", "r3"):
        assert "type=ff" in _groups(bridge), f"{bridge} lost its failover groups"
        assert [f for f in dump_flows(bridge) if f["cookie"] >> 48 == 0xDC0F], bridge
    after = client(fig2, "c1", SVC1, requests=12)
    assert after["errors"] == 0 and {INSTANCE_OF[i] for i in after["served"]} == both, after


@pytest.mark.heavy  # both frameworks' learn2 bytes: tests/test_bucket_syn_cache.py (CI time)
@pytest.mark.parametrize("fig2", [FAILOVER], indirect=True)
def test_bucket_move_back_keeps_a_reused_5_tuple_on_one_instance(fig2: Lab) -> None:
    """bucket (pitfall 14): 32 connections open from chosen ports while their buckets move
    to the other instance (the SYN entry pins them there); that move ends, load goes back,
    and while the same buckets move back, the same ports connect again, 4.6 s after the
    first ones (their pins idled out; OVS still caches their SYNs' datapath flows, up to
    10 s): every connection is served, none split between the SYN's instance and the one
    the bucket's entry pins its next packet to. Without the SYN entry's learn limit the
    second round failed in each of 5 runs (2 of 32 ports timed out where counted)."""
    both = {"10.0.0.21", "10.0.0.31"}
    wait_shares(fig2, "svc1", R1, both)
    wait_until(lambda: _new_flows_follow_the_decision(both), 15,
               "r1 does not send new flows to both instances")
    wait_until(lambda: not _moving_buckets("r1"), 15, "r1's first moves did not end")
    owner = _owner_of_last_bucket(both)  # remap gives back the highest buckets: load it
    other = (both - {owner}).pop()
    set_load(fig2, owner, 10.0)
    wait_shares(fig2, "svc1", R1, {other})
    wait_until(lambda: _new_flows_follow_the_decision({other}), 15,
               f"r1 does not send new flows to {other}")
    away = _moving_buckets("r1")
    ports = [p for p in range(40000, 60000, 2) if (p >> 1) & 15 in away][:32]
    started = time.time()
    first = _connect_from(fig2, ports, "first")
    ended = time.time()
    assert {INSTANCE_OF.get(r.get("instance", "")) for r in first} == {other}, first
    wait_until(lambda: not _moving_buckets("r1"), 15, f"the move to {other} did not end")
    set_load(fig2, owner, 0.0)
    wait_shares(fig2, "svc1", R1, both)
    wait_until(lambda: _new_flows_follow_the_decision(both), 15,
               "r1 does not send new flows to both instances again")
    back = _moving_buckets("r1")
    again = [p for p in ports if (p >> 1) & 15 in back]
    assert again, f"buckets {sorted(away)} moved away, {sorted(back)} move back"
    time.sleep(max(0.0, ended + 4.6 - time.time()))  # every first connection's pin is gone
    late = time.time() - started
    second = _connect_from(fig2, again, "second")
    print(f"reused {len(again)} ports {late:.1f} s after their first connections"
          + (" (past OVS's 10 s: nothing cached was left to test)" if late > 8.5 else ""))
    failed = [r for r in second if "instance" not in r]
    assert not failed, f"{len(failed)} of {len(second)} reused ports failed: {failed}"


@pytest.mark.parametrize("fig2", [FAILOVER], indirect=True)
def test_reactive_binding_fails_over_without_the_controller(fig2: Lab) -> None:
    """reactive, 3-tuple key: c1's binding to svc2 holds its new connections on one instance;
    that instance's link down with the controller stopped: the switch sends them to the other,
    whose replies come back from the D-SID (the client connects to the D-SID only)."""
    both = {"10.0.0.22", "10.0.0.32"}
    wait_shares(fig2, "svc2", R1, both)
    first = client(fig2, "c1", SVC2, requests=4)
    assert first["errors"] == 0 and len(first["served"]) == 1, first
    bound = INSTANCE_OF[next(iter(first["served"]))]
    down_host = "e2" if bound == "10.0.0.22" else "e3"
    wait_until(lambda: "type=ff" in _groups(SWITCH_OF[down_host]), 10,
               f"no fast-failover group at {SWITCH_OF[down_host]}")
    backup = (both - {bound}).pop()
    # the backup must reach c1 without the controller: ARP goes to the controller in this
    # pipeline, so its neighbour entry for c1 must be there already (docs/dataplanes.md)
    assert fig2.ping("e3" if down_host == "e2" else "e2", "10.0.0.1") is not None
    _fail_over(fig2, SVC2, down_host, backup)
    wait_shares(fig2, "svc2", R1, both, timeout=30)
    # failover turned off on svc2 (PUT again, same dataplane): its groups go with their
    # entries; svc1's (bucket, failover on) stay, each named by an entry (none left unused)
    theirs = {b: _named(b, both) for b in SWITCH_OF.values()}
    assert any(theirs.values()), f"no entry sends svc2's packets to a group: {theirs}"
    svc = fig2.rest("GET", "/services/svc2")[1]
    svc["failover"] = False
    assert fig2.rest("PUT", "/services/svc2", svc)[0] == 200
    wait_until(lambda: not any(theirs[b] & set(_ff(b)) for b in theirs), 10,
               lambda: f"svc2's groups {theirs} not deleted: "
                       f"{ {b: _ff(b) for b in theirs} }")
    # svc1's entries and groups may be re-sent meanwhile (its backups follow e2 coming back),
    # so an instant's dump can show a group between its entries' delete and add: wait for it
    for bridge in theirs:
        wait_until(lambda b=bridge: _named(b) == set(_ff(b)), 10,
                   lambda b=bridge: f"{b}: groups {_ff(b)}, named {_named(b)}")


def _reaches(lab: Lab, dbids: set[str]) -> bool:
    """True when 12 new connections of c1 to svc1 all succeed and reach exactly `dbids`."""
    seen = client(lab, "c1", SVC1, requests=12)
    return seen["errors"] == 0 and {INSTANCE_OF[i] for i in seen["served"]} == dbids


@pytest.mark.parametrize("fig2", [{**EDGES, "config": HERE / "fig2_failover_learn.toml"}],
                         indirect=True)
@pytest.mark.heavy  # the second framework runs the reactive and bucket cases (time budget)
def test_learn_switch_fails_over_without_the_controller(fig2: Lab) -> None:
    """learn: e2's link down with the controller stopped: every new connection decided to e2
    reaches e3 from 100 ms on, and e3's replies come back from the D-SID (its table-2 reply
    entry: the learned ones name e2); the link restored, e2 serves again; the groups and the
    reply entries are still in the switches after reconciliation."""
    both = {"10.0.0.21", "10.0.0.31"}
    wait_shares(fig2, "svc1", R1, both)
    wait_until(lambda: "type=ff" in _groups("r2") and "type=ff" in _groups("r3"), 10,
               lambda: f"no fast-failover groups: r2 {_groups('r2')!r}")
    wait_until(lambda: _reaches(fig2, both), 15,
               "c1's new connections do not reach both instances")
    rows = _fail_over(fig2, SVC1, "e2", "10.0.0.31")
    assert any(INSTANCE_OF.get(r.get("instance", "")) == "10.0.0.21" for r in rows), \
        "e2 served nothing before its link went down: the failover was not exercised"
    wait_shares(fig2, "svc1", R1, both, timeout=30)  # e2 located again, decided again
    runs = _stat(fig2, "reconcile_runs")
    wait_until(lambda: _stat(fig2, "reconcile_runs") >= runs + 4, 15, "no reconciliation ran")
    for bridge in ("r1", "r2", "r3"):
        ours = [f for f in dump_flows(bridge) if f["cookie"] >> 48 == 0xDC0F]
        assert [f for f in ours if f["table"] == 2], f"{bridge} lost the backups' reply entries"
    for bridge in ("r2", "r3"):
        assert "type=ff" in _groups(bridge), f"{bridge} lost its failover groups"
    wait_until(lambda: _reaches(fig2, both), 15,
               "c1's new connections do not reach both instances again")


@pytest.mark.heavy  # a comparison for the docs; the failover tests above cover the feature
@pytest.mark.parametrize("fig2", [{**EDGES, "config": HERE / "fig2_bucket.toml"}],
                         indirect=True)
def test_without_failover_for_comparison(fig2: Lab) -> None:
    """The same failure without `failover`: with the controller running, it hears of the port
    and moves e2's buckets; with the controller stopped, nothing moves them and every request
    to e2's buckets fails until it runs again. Measured for docs/dataplanes.md; asserted only
    that the running controller moves them within STOPPED_S and the stopped one does not."""
    both = {"10.0.0.21", "10.0.0.31"}
    for stop in (False, True):
        wait_shares(fig2, "svc1", R1, both, timeout=30)
        wait_until(lambda: _new_flows_follow_the_decision(both), 15,
                   "r1 does not send new flows to both instances")
        rows, down_at, cont_at = _link_failure(fig2, SVC1, "e2", stop=stop)
        print(f"no failover, controller {'stopped' if stop else 'running'}, {SVC1}: "
              f"{_summary(rows, down_at, cont_at, '10.0.0.31')}")
        late = [r for r in rows if down_at + STOPPED_S - 1.0 <= r["t"] < cont_at]
        moved = [INSTANCE_OF.get(r.get("instance", "")) == "10.0.0.31" for r in late]
        assert late and (not all(moved) if stop else all(moved)), late

"""UDP through the `conntrack` dataplane on Figure 2, with real datagrams: svc2 is a UDP
service (its own tracker zone) whose instances on e2 and e3 are UDP responders naming
themselves (udpflows.py). New UDP flows reach the decided instances with no packet-in, every
reply comes from the D-SID's port (never a D-BID), and held UDP flows keep their instance
across a decision change and a controller SIGKILL and restart, without a gap over MAX_GAP_S.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from controller.intents import TABLE_DECISION, CookieKind
from mininet_tests.harness import Lab
from mininet_tests.processes import HostProcess, wait_until
from mininet_tests.restarts import duplicates, snapshot, stat, table_differences, wait_away
from mininet_tests.test_dataplane import _entries
from mininet_tests.test_fig2 import EDGES, R1, SVC2, set_load, wait_shares

HERE = Path(__file__).parent
TOOL = HERE / "udpflows.py"
CONFIG = HERE / "fig2_conntrack_udp.toml"
ZONE = 100 << 8 | 2  # svc2's D-SID 10.0.100.2: the zone is its low 16 bits
INSTANCE_OF = {"svc2@e2": "10.0.0.22", "svc2@e3": "10.0.0.32"}
BOTH = set(INSTANCE_OF.values())
REPLY_FROM = [f"{SVC2}:8000"]  # the only source a client may see
FLOWS = 30  # held UDP flows, each its own source port
PERIOD_S = 0.15  # each held flow sends a datagram this often
MAX_GAP_S = 2.0  # a held flow unanswered this long counts as broken (13 datagrams lost)
AWAY_S = 12.0  # how long the killed controller stays away
RECONCILE_S = 2.0  # reconcile_interval_s in fig2_conntrack_udp.toml
SPORTS = itertools.count(20000, 100)  # each new_flows call's first source port (even)


class HeldFlows:
    """FLOWS held UDP flows from c1 to svc2 (udpflows.py hold), and what they observed."""

    def __init__(self, lab: Lab) -> None:
        self.path = lab.artifacts / "held-udp.json"
        argv = [sys.executable, str(TOOL), "hold", "--dsid", SVC2, "--count", str(FLOWS),
                "--period", str(PERIOD_S), "--report", str(self.path)]
        self.proc: HostProcess = lab.popen("c1", argv, "udp-hold", ready=r"^ready \d+",
                                           timeout=30)
        self.seq = 0

    def report(self) -> dict[str, Any]:
        """A fresh report (SIGUSR1, then wait for the file's next `seq`)."""
        self.proc.popen.send_signal(signal.SIGUSR1)

        def fresh() -> dict[str, Any] | None:
            data = json.loads(self.path.read_text()) if self.path.exists() else None
            return data if data and data["seq"] > self.seq else None
        data: dict[str, Any] = wait_until(fresh, 10, "udpflows hold wrote no report")
        self.seq = data["seq"]
        return data


def responders(lab: Lab) -> None:
    """A UDP responder on each svc2 D-BID's port 8000 (the demo service, TCP, stays for the
    D-MA's stats and the load control)."""
    for name, dbid in INSTANCE_OF.items():
        host = name.split("@")[1]
        lab.popen(host, [sys.executable, str(TOOL), "serve", "--bind", dbid, "--name", name],
                  f"udp-{dbid}", ready=r"^serving ")


def new_flows(lab: Lab, count: int = 16) -> dict[str, Any]:
    """`count` new UDP flows from c1 (ingress r1), one datagram each: what answered them.
    Each call's source ports are its own (below the ephemeral range the held flows use): a
    port an earlier call used would be that flow again to the connection tracker, still
    committed to the instance it went to then (CI: 1 of 16 'new' flows reached e2 after the
    decision had left it)."""
    first = next(SPORTS)
    out = lab.host_cmd("c1", f"{sys.executable} {TOOL} once --dsid {SVC2} --count {count} "
                             f"--first-sport {first}")
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert lines, f"udpflows once printed {out!r}"
    found: dict[str, Any] = lines[-1]
    return found


def assert_new_flows_reach(lab: Lab, dbids: set[str]) -> None:
    """New UDP flows are all answered, by exactly `dbids`, from the D-SID's port."""
    seen = new_flows(lab)
    assert seen["failed"] == 0 and {INSTANCE_OF[i] for i in seen["served"]} == dbids, seen
    assert sorted(seen["sources"]) == REPLY_FROM, seen


def commits_to(dbids: set[str]) -> bool:
    """True when r1's svc2 buckets commit new UDP flows to exactly `dbids`."""
    decision = [f for f in _entries("r1", CookieKind.DECISION, TABLE_DECISION)
                if SVC2 in f["match"].values()]
    targets = {m.group(1) for f in decision for a in f["actions"]
               for m in [re.search(r"nat\(dst=([0-9.]+)\)", a)] if m}
    return bool(decision) and targets == dbids


def assert_kept(held: HeldFlows, first: dict[str, Any], since: float) -> dict[str, Any]:
    """Every held flow answered after `since` (waiting up to 10 s), only ever by its first
    instance (the one of `first`), only from the D-SID's port, never unanswered > MAX_GAP_S."""
    def answered() -> dict[str, Any] | None:
        report = held.report()
        return report if all((f["last_reply_at"] or 0) > since for f in report["flows"]) \
            else None
    report = wait_until(answered, 10, f"held UDP flows unanswered since {since}")
    was = {f["id"]: f["instance"] for f in first["flows"]}
    moved = [f for f in report["flows"] if f["instances"] != [was[f["id"]]]]
    assert not moved, f"{len(moved)} held flows moved, e.g. {moved[:2]}"
    assert report["sources"] == REPLY_FROM, report["sources"]
    slow = [f for f in report["flows"] if f["max_gap_s"] > MAX_GAP_S]
    assert not slow, f"{len(slow)} held flows unanswered > {MAX_GAP_S} s, e.g. {slow[:2]}"
    return report


def conntrack(zone: int = ZONE) -> list[str]:
    """The tracker's entries of a zone."""
    out = subprocess.run(["ovs-appctl", "dpctl/dump-conntrack", f"zone={zone}"],
                         capture_output=True, text=True, timeout=20, check=True).stdout
    return [line for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize("fig2", [{**EDGES, "config": CONFIG}], indirect=True)
def test_held_udp_flows_survive_a_decision_change_and_a_controller_kill(fig2: Lab) -> None:
    """30 held UDP flows on both instances: none moves or goes unanswered > MAX_GAP_S when the
    decision moves every new flow to e3, nor while the controller is SIGKILLed, away AWAY_S
    (new flows are decided by the switch alone then) and restarted (tables as before); new
    flows reach the decided instances with no packet-in; every reply is from the D-SID."""
    fig2.fast_reconnect()
    responders(fig2)
    wait_shares(fig2, "svc2", R1, BOTH)
    wait_until(lambda: commits_to(BOTH), 10, "r1 does not commit new UDP flows to e2 and e3")
    punted = stat(fig2, "packet_in_dsid")
    assert_new_flows_reach(fig2, BOTH)
    held = HeldFlows(fig2)
    first = held.report()
    assert first["unanswered"] == 0 and {INSTANCE_OF[i] for i in first["served"]} == BOTH, \
        {k: v for k, v in first.items() if k != "flows"}
    assert len([e for e in conntrack() if "udp," in e and "mark=" in e]) >= FLOWS

    set_load(fig2, "10.0.0.22", 10.0)
    wait_shares(fig2, "svc2", R1, {"10.0.0.32"})
    wait_until(lambda: commits_to({"10.0.0.32"}), 10, "r1 does not commit new flows to e3")
    assert_new_flows_reach(fig2, {"10.0.0.32"})
    assert_kept(held, first, time.time())
    assert stat(fig2, "packet_in_dsid") == punted, "new UDP flows reached the controller"

    before = snapshot(fig2)
    assert fig2.stop_controller(signal.SIGKILL) is not None
    killed = time.time()
    assert_new_flows_reach(fig2, {"10.0.0.32"})  # the switch decides with no controller
    wait_away(max(0.0, AWAY_S - (time.time() - killed)))
    fig2.restart_controller()
    fig2.wait_connected()
    wait_shares(fig2, "svc2", R1, {"10.0.0.32"})
    wait_until(lambda: commits_to({"10.0.0.32"}), 10, "r1 does not commit new flows to e3")
    punted = stat(fig2, "packet_in_dsid")
    assert_new_flows_reach(fig2, {"10.0.0.32"})

    def differences() -> list[str]:
        after = snapshot(fig2)
        return table_differences(before, after, newcomer="10.0.0.2") + duplicates(after)
    wait_until(lambda: not differences(), RECONCILE_S + 4.0,
               lambda: "switch tables differ from before the kill:\n" + "\n".join(differences()))
    report = assert_kept(held, first, time.time())
    assert stat(fig2, "packet_in_dsid") == punted, "new UDP flows reached the restarted controller"
    (fig2.artifacts / "udp-summary.json").write_text(json.dumps(
        {k: v for k, v in report.items() if k != "flows"}) + "\n")
    set_load(fig2, "10.0.0.22", 0.0)

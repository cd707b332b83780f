"""The per-ingress binding cap on Figure 2 with real OVS and real TCP: an ingress holding its
cap of bindings serves further new connections statelessly (controller/dataplane/overflow.py),
never refusing one, with replies from the D-SID and no binding past the cap."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from controller.intents import CookieKind
from mininet_tests.flowdump import dump_flows, dump_flows_text
from mininet_tests.harness import Lab
from mininet_tests.processes import wait_until
from mininet_tests.restarts import HeldConnections, all_alive_since, damage, stat
from mininet_tests.test_fig2 import EDGES, R1, SVC1, affinity_entries, client, wait_shares

CONFIG = Path(__file__).with_name("fig2_cap.toml")
CAP = 5  # [limits] affinity_per_ingress in fig2_cap.toml
BOTH = {"10.0.0.21", "10.0.0.31"}
HELD = 3  # a held connection holds one of an instance's 4 workers (demo service capacity)


def bound_at(lab: Lab, dpid: int) -> int:
    """How many bindings the controller holds at switch `dpid`, over every service."""
    rows = lab.rest("GET", "/bindings")[1]
    return sum(1 for b in rows if b.get("source") == "controller" and b["ingress"] == dpid)


def record_failure(lab: Lab, held: HeldConnections, marks: dict[str, float],
                   seen: Any) -> None:
    """On a failure, save what it takes to explain it (diag-fail.json, dp-*.txt, flows-now-*):
    the held connections (ports, instance, gaps, reasons), the phase times, the counters, the
    instances' states and transitions, every bridge's table with its counters and r1's
    datapath flows (the cache OVS forwards with)."""
    out: dict[str, Any] = {"marks": marks, "seen": seen}
    for name, get in (("held", lambda: held.report(timeout=5.0)),
                      ("stats", lambda: lab.rest("GET", "/stats")[1]),
                      ("instances", lambda: [lab.rest("GET", f"/instances/{i['dbid']}")[1]
                                             for i in lab.rest("GET", "/instances")[1]])):
        try:
            out[name] = get()
        except Exception as exc:  # diagnostics must not hide the failure
            out[name] = f"unavailable: {exc!r}"
    (lab.artifacts / "diag-fail.json").write_text(json.dumps(out, indent=1, default=str))
    for bridge in sorted(lab.bridges):
        try:
            (lab.artifacts / f"flows-now-{bridge}.txt").write_text(dump_flows_text(bridge))
        except RuntimeError as exc:
            (lab.artifacts / f"flows-now-{bridge}.txt").write_text(repr(exc))
    done = subprocess.run(["ovs-appctl", "dpctl/dump-flows", "-m"], capture_output=True,
                          text=True, timeout=10, check=False)
    (lab.artifacts / "dp-flows.txt").write_text(done.stdout + done.stderr)


def state(lab: Lab) -> tuple[Any, ...]:
    """What to show when a check fails: the counters and r1's table-0 service entries."""
    return (lab.rest("GET", "/stats")[1], [
        (f["priority"], f["match"], f["actions"], f["n_packets"]) for f in dump_flows("r1")
        if f["table"] == 0 and f["priority"] >= 1000])


@pytest.mark.parametrize("fig2", [{**EDGES, "config": CONFIG}], indirect=True)
def test_past_the_cap_new_connections_are_served_statelessly(fig2: Lab) -> None:
    """c1 fills r1's cap of 5 bindings (5 requests: bindings outlive their connections for the
    idle timeout, 30 s), then opens 3 held connections and 20 more requests: every connection
    succeeds, talking only to the D-SID (replies rewritten), the held ones keep their instance
    and keep streaming, no binding is added, and the stateless ones hardly reach the
    controller. A failure saves its diagnostics (`record_failure`)."""
    wait_shares(fig2, "svc1", R1, BOTH)
    first = client(fig2, "c1", SVC1, requests=CAP)
    assert first["errors"] == 0 and first["peers"] == {SVC1: CAP}, first
    assert bound_at(fig2, R1) == CAP
    marks = {"held": time.time()}
    held = HeldConnections(fig2, "c1", SVC1, count=HELD)
    marks["ready"] = time.time()
    seen: Any = None
    try:
        time.sleep(1.0)  # OVS revalidates the datapath flows cached before the overflow entries
        punted = stat(fig2, "packet_in_dsid")
        (fig2.artifacts / "diag-before.txt").write_text(repr(state(fig2)))
        marks["requests"] = time.time()
        seen = client(fig2, "c1", SVC1, requests=20)
        marks["served"] = time.time()
        (fig2.artifacts / "diag-after.txt").write_text(repr((seen, state(fig2))))
        punted = stat(fig2, "packet_in_dsid") - punted
        assert seen["errors"] == 0, (seen, state(fig2))
        assert seen["peers"] == {SVC1: 20}, seen  # every reply came from the D-SID
        report = held.report()
        assert report["states"] == {"open": HELD}, damage(report)
        assert report["moved"] == 0, damage(report)
        # lines come every 0.2 s: each held connection still streams after the requests
        wait_until(lambda: all_alive_since(held.report(), marks["served"]), 3.0,
                   lambda: f"held connections stalled: {damage(held.report(), 1.0)}",
                   interval=0.3)
    except BaseException:
        record_failure(fig2, held, marks, seen)
        raise
    assert bound_at(fig2, R1) == CAP
    assert len(affinity_entries("r1", CookieKind.AFFINITY_FWD)) == CAP
    assert affinity_entries("r1", CookieKind.OVERFLOW)
    assert affinity_entries("r1", CookieKind.OVERFLOW_REV)
    assert stat(fig2, "overflow_on") == 1
    assert stat(fig2, "stateless_flows") >= 1  # flows that found r1 full before its overflow
    # entries were in: the others never reach the controller
    assert punted <= 2, (f"{punted} packet-ins for 20 connections past the cap", state(fig2))

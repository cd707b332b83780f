"""Instance life cycle in Mininet: operator drain through dyncastctl."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from controller.intents import CookieKind
from mininet_tests.harness import Lab
from mininet_tests.processes import bin_path
from mininet_tests.test_fig2 import (
    EDGES,
    INSTANCE_OF,
    R1,
    SVC1,
    affinity_entries,
    assert_held_to_the_end,
    client,
    set_load,
    start_hold,
    wait_shares,
)


def dyncastctl(lab: Lab, *args: str) -> str:
    """Run the operator CLI against the lab's controller; fail on a non-zero exit."""
    assert lab.controller is not None
    done = subprocess.run([bin_path("dyncastctl"), "--controller", lab.controller.url, *args],
                          capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("fig2", [EDGES], indirect=True)
def test_operator_drain_stops_new_flows_and_lets_existing_ones_finish(fig2: Lab) -> None:
    """After `dyncastctl drain`, no new flow reaches the instance while a connection it was
    already serving completes on it; `undrain` gives it new flows again."""
    wait_shares(fig2, "svc1", R1, {"10.0.0.21", "10.0.0.31"})
    holder, first = start_hold(fig2, 8)
    drained = INSTANCE_OF[first]
    other = "10.0.0.31" if drained == "10.0.0.21" else "10.0.0.21"
    out = dyncastctl(fig2, "drain", drained)
    assert "draining" in out, out
    wait_shares(fig2, "svc1", R1, {other})
    seen = client(fig2, "c1", SVC1, requests=6)
    assert seen["errors"] == 0 and {INSTANCE_OF[i] for i in seen["served"]} == {other}, seen
    states = json.loads(dyncastctl(fig2, "--json", "instances"))
    assert {i["dbid"]: i["state"] for i in states}[drained] == "draining"
    assert_held_to_the_end(holder, first, 8)
    dyncastctl(fig2, "undrain", drained)
    wait_shares(fig2, "svc1", R1, {"10.0.0.21", "10.0.0.31"})


FORWARDER = {"config": Path(__file__).with_name("fig2_forwarder.toml"), "edges": True}


@pytest.mark.parametrize("fig2", [FORWARDER], indirect=True)
def test_forwarder_ingress_binds_at_the_forwarder_and_keeps_bindings(fig2: Lab) -> None:
    """r2 is a D-Forwarder for r1: c2's new flows follow r1's decision, their bindings sit at
    r2, and a held connection keeps its instance when r1's decision moves."""
    wait_shares(fig2, "svc1", R1, {"10.0.0.21", "10.0.0.31"})
    rows = fig2.rest("GET", "/decisions/svc1")[1]
    assert {r["ingress"] for r in rows} == {1, 3, 4}  # no decision kept at the forwarder
    assert next(r for r in rows if r["ingress"] == R1)["forwarders"] == [2]
    holder, first = start_hold(fig2, 8, host="c2")
    pinned = INSTANCE_OF[first]
    other = "10.0.0.31" if pinned == "10.0.0.21" else "10.0.0.21"
    set_load(fig2, pinned, 10.0)
    wait_shares(fig2, "svc1", R1, {other})
    seen = client(fig2, "c2", SVC1, requests=4)
    assert seen["errors"] == 0 and {INSTANCE_OF[i] for i in seen["served"]} == {other}, seen
    bindings = fig2.rest("GET", "/bindings/svc1")[1]
    assert {b["ingress"] for b in bindings} == {2} and len(bindings) == 5
    assert affinity_entries("r2", CookieKind.AFFINITY_FWD) and not affinity_entries(
        "r1", CookieKind.AFFINITY_FWD)
    assert_held_to_the_end(holder, first, 8)

"""The per-ingress binding cap on Figure 2 with real OVS and real TCP: an ingress holding its
cap of bindings serves further new connections statelessly (controller/dataplane/overflow.py),
never refusing one, with replies from the D-SID and no binding past the cap."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from controller.intents import CookieKind
from mininet_tests.harness import Lab
from mininet_tests.restarts import HeldConnections, damage, stat
from mininet_tests.test_fig2 import EDGES, R1, SVC1, affinity_entries, client, wait_shares

CONFIG = Path(__file__).with_name("fig2_cap.toml")
CAP = 5  # [limits] affinity_per_ingress in fig2_cap.toml
BOTH = {"10.0.0.21", "10.0.0.31"}


def bound_at(lab: Lab, dpid: int) -> int:
    """How many bindings the controller holds at switch `dpid`, over every service."""
    rows = lab.rest("GET", "/bindings")[1]
    return sum(1 for b in rows if b.get("source") == "controller" and b["ingress"] == dpid)


@pytest.mark.parametrize("fig2", [{**EDGES, "config": CONFIG}], indirect=True)
def test_past_the_cap_new_connections_are_served_statelessly(fig2: Lab) -> None:
    """12 held connections and 20 requests from c1 with a cap of 5 at r1: every connection
    succeeds, talking only to the D-SID (its replies are rewritten), both instances serve,
    the held ones keep their instance; r1 holds at most 5 bindings and the overflow entries."""
    wait_shares(fig2, "svc1", R1, BOTH)
    held = HeldConnections(fig2, "c1", SVC1, count=12)
    time.sleep(1.0)  # OVS revalidates the datapath flows cached before the overflow entries
    punted = stat(fig2, "packet_in_dsid")
    seen = client(fig2, "c1", SVC1, requests=20)
    punted = stat(fig2, "packet_in_dsid") - punted
    assert seen["errors"] == 0, seen
    assert seen["peers"] == {SVC1: 20}, seen  # every reply came from the D-SID
    assert set(seen["served"]) == {"svc1@e2", "svc1@e3"}, seen
    time.sleep(2.0)  # the held connections stream on past the requests
    report = held.report()
    assert report["states"] == {"open": 12}, damage(report)
    assert report["moved"] == 0, damage(report)
    assert bound_at(fig2, R1) == CAP
    assert len(affinity_entries("r1", CookieKind.AFFINITY_FWD)) == CAP
    assert affinity_entries("r1", CookieKind.OVERFLOW)
    assert affinity_entries("r1", CookieKind.OVERFLOW_REV)
    assert stat(fig2, "overflow_on") == 1
    assert stat(fig2, "stateless_flows") >= 1  # flows that found r1 full, before its
    # overflow entries were in: the others never reach the controller
    assert punted <= 2, f"{punted} packet-ins for 20 connections past the cap"

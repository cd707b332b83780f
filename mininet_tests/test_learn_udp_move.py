"""`learn` + UDP: held flows moved off an instance whose access link went down get every reply
from the D-SID. Before the fix, for about 0.5 s after the move, replies of the moved flows
reached the client from the new instance's D-BID (the revalidator pass after the move's second
table change has no packets to account, so the moved flow's cached datapath flow reaches the
new instance without learning its reply entry; docs/dataplanes.md, pitfall 14; the model:
tests/test_learn_move_cache.py): every moved flow got such replies in 4 of 4 runs (os-ken;
16, 15, 15 and 15 flows). Now each flow the switch's latest read showed on the lost instance
gets its new instance's forward and reply entries with the move (controller/dataplane/
relearn.py, `rehomed`); the test waits until the read shows every held flow. Measured since:
no moved flow got a D-BID reply in 5 of 5 runs (os-ken 3, Ryu 2); with those entries turned
off (`REHOME_MAX = 0`) 10 of 13 did.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mininet_tests.harness import Lab
from mininet_tests.processes import wait_until
from mininet_tests.test_conntrack_udp import BOTH, REPLY_FROM, HeldFlows, responders
from mininet_tests.test_failover import _link, _switch_side
from mininet_tests.test_fig2 import EDGES, R1, wait_shares

HERE = Path(__file__).parent
CONFIG = HERE / "fig2_learn_udp.toml"
AFTER_S = 4.0  # how long the moved flows are watched after e2's link went down


@pytest.mark.heavy  # the datapath's cache, framework-independent (CI's time budget)
@pytest.mark.parametrize("fig2", [{**EDGES, "config": CONFIG}], indirect=True)
def test_learn_udp_flows_moved_off_a_dead_instance_hear_only_the_dsid(fig2: Lab) -> None:
    """30 held UDP flows on e2 and e3; e2's access link goes down: the flows on e2 move to
    e3, and every reply any flow receives comes from the D-SID's port."""
    fig2.fast_reconnect()
    responders(fig2)
    wait_shares(fig2, "svc2", R1, BOTH)
    held = HeldFlows(fig2)
    first = held.report()
    on_e2 = {f["id"] for f in first["flows"] if f["instance"] == "svc2@e2"}
    assert on_e2 and first["sources"] == REPLY_FROM, first["sources"]
    sports = {f["sport"] for f in first["flows"]}
    read = lambda: {b["flow"]["sport"] for b in fig2.rest("GET", "/bindings/svc2")[1]  # noqa: E731
                    if b["source"] == "switch" and b["kind"] == "learned"}
    wait_until(lambda: sports <= read(), 10,  # the switch's periodic read shows every flow
               lambda: f"/bindings shows {sorted(read())} of the held {sorted(sports)}")
    intf = _switch_side(fig2, "e2")
    _link(intf, False)
    try:
        time.sleep(AFTER_S)  # the flows' traffic, watched (not a wait for a state)
        report = held.report()
    finally:
        _link(intf, True)
    moved = [f for f in report["flows"] if f["id"] in on_e2]
    from_dbid = [f for f in moved if set(f["sources"]) != set(REPLY_FROM)]
    (fig2.artifacts / "learn-udp-move.json").write_text(json.dumps(
        {"moved": len(moved), "with_dbid_replies": len(from_dbid),
         "sources": report["sources"]}) + "\n")
    assert all(f["instances"] == ["svc2@e2", "svc2@e3"] for f in moved), moved[:2]
    assert not from_dbid, f"{len(from_dbid)} of {len(moved)} moved flows got replies from " \
                          f"a D-BID, e.g. {from_dbid[:1]}"

"""A held TCP connection moved off a lost instance is reset at its client, not left waiting.

Figure 2, `reactive` (mininet_tests/fig2.toml): c1 holds connections to svc1, each receiving a
line every 0.2 s (holdconns.py), spread over e2 and e3. e2's access link goes down: e2 is
`down` and its connections move to e3, which holds none of them. A second later each such
client gets two empty ACKs from the D-SID; its answer reaches e3, whose reset reaches it from
the D-SID (controller/dataplane/affinity.py `moved_nudge`, dataplane/nudges.py). Before, a
client that only reads waited in silence until its keepalive, or for good, and when e2's link
came back e2's retransmissions reached it from e2's D-BID, which its stack refused. The
connections on e3 are untouched.

The same with svc1 on `learn` (fig2_learn.toml): the switch holds each connection's entries;
those its latest read showed on e2 get e3's entries with the move and their clients the same
nudges (controller/dataplane/relearn.py, `rehomed` and `told`). Before, the client was not told,
and e3's reset to its own answer, if any, reached it from e3's D-BID. The test waits until the
read shows every held connection.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from mininet_tests.harness import Lab
from mininet_tests.processes import wait_until
from mininet_tests.test_failover import _link, _switch_side
from mininet_tests.test_restart import serve

HERE = Path(__file__).parent
COUNT = 24
RESET_WITHIN_S = 15.0  # a bound on a hang, not a target (the move follows the port's status)


@pytest.mark.parametrize("fig2", [
    {"config": HERE / "fig2.toml"},
    pytest.param({"config": HERE / "fig2_learn.toml"}, marks=pytest.mark.heavy, id="learn"),
], indirect=True)
def test_a_held_connection_moved_off_a_lost_instance_is_reset_at_its_client(fig2: Lab) -> None:
    """e2's link goes down: every connection c1 held on e2 ends with a reset within a bound
    (none still waiting), every one on e3 keeps receiving, and the controller raised
    nothing."""
    held = serve(fig2, COUNT)  # (instances with room for every held connection)
    first = held.report()
    if fig2.rest("GET", "/services/svc1")[1].get("dataplane") == "learn":
        sports = {c["sport"] for c in first["connections"]}
        read = lambda: {b["flow"]["sport"] for b in fig2.rest(  # noqa: E731
            "GET", "/bindings/svc1")[1] if b["source"] == "switch" and b["kind"] == "learned"}
        wait_until(lambda: sports <= read(), 10,  # the switch's periodic read shows them all
                   lambda: f"/bindings shows {sorted(read())} of the held {sorted(sports)}")
    on = {name: {c["id"] for c in first["connections"] if c["instance"] == name}
          for name in ("svc1@e2", "svc1@e3")}
    assert on["svc1@e2"] and on["svc1@e3"], first["connections"][:3]
    assert all(c["state"] == "open" for c in first["connections"]), first["connections"][:3]
    intf = _switch_side(fig2, "e2")
    _link(intf, False)
    down_at = time.time()
    try:
        def ended() -> dict[str, Any] | None:
            report = held.report()
            left = [c for c in report["connections"]
                    if c["id"] in on["svc1@e2"] and c["state"] == "open"]
            return None if left else report
        report = wait_until(ended, RESET_WITHIN_S, lambda: "connections moved off e2 still "
                            "open: " + str([c for c in held.report()["connections"]
                                            if c["id"] in on["svc1@e2"]
                                            and c["state"] == "open"][:3]))
        time.sleep(1.0)
        after = held.report()
    finally:
        _link(intf, True)
    moved = [c for c in report["connections"] if c["id"] in on["svc1@e2"]]
    assert all("reset" in str(c["reason"]).lower() for c in moved), moved[:3]
    kept = [c for c in after["connections"] if c["id"] in on["svc1@e3"]]
    assert all(c["state"] == "open" and c["instances"] == ["svc1@e3"]
               and (c["last_line_at"] or 0) > down_at + 0.5 for c in kept), kept[:3]
    held.stop()

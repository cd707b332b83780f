"""A SYN flood at a D-SID: the switch's punt meter keeps the controller answering.

One client host floods svc1's D-SID with TCP SYNs (hping3, each from a new source port, so each
is a new flow the ingress would send to the controller) for 10 s. Meanwhile the REST API keeps
answering, another client's new connection is placed within 2 s, and the meter's drop count
(GET /stats `punt_meter_drops`, read from the switches' meter statistics) grows above 0.
"""

from __future__ import annotations

import shutil
import time

import pytest

from mininet_tests.harness import Lab
from mininet_tests.processes import wait_until
from mininet_tests.test_fig2 import EDGES, R1, SVC1, client, wait_shares

FLOOD_S = 10


@pytest.mark.parametrize("fig2", [EDGES], indirect=True)
def test_syn_flood_leaves_the_controller_answering(fig2: Lab) -> None:
    """During a 10 s SYN flood from c2 at svc1's D-SID: REST answers within 1 s each time, c1's
    new flows are served within 2 s, and the punt meter's drops are counted."""
    assert shutil.which("hping3"), "hping3 is not installed (scripts/setup.sh installs it)"
    wait_shares(fig2, "svc1", R1, {"10.0.0.21", "10.0.0.31"})
    assert client(fig2, "c1", SVC1)["errors"] == 0  # before: c1 knows the D-SID's MAC
    flood = fig2.popen("c2", ["timeout", str(FLOOD_S), "hping3", "--quiet", "-S", "-p", "8000",
                              "-i", "u50", SVC1], "hping3")
    started = time.monotonic()
    time.sleep(1.0)  # the flood is on
    rest_s: list[float] = []
    placed_s: list[float] = []
    while time.monotonic() - started < FLOOD_S - 2.5 and flood.popen.poll() is None:
        t0 = time.monotonic()
        status, _ = fig2.rest("GET", "/stats")
        rest_s.append(time.monotonic() - t0)
        assert status == 200
        t0 = time.monotonic()
        seen = client(fig2, "c1", SVC1, requests=1)
        placed_s.append(time.monotonic() - t0)
        assert seen["errors"] == 0, seen
        assert set(seen["served"]) <= {"svc1@e2", "svc1@e3"}, seen
    assert len(placed_s) >= 3, f"only {len(placed_s)} samples: {flood.log()[-500:]}"
    assert max(rest_s) < 1.0, rest_s
    assert max(placed_s) < 2.0, placed_s
    drops = wait_until(lambda: fig2.rest("GET", "/stats")[1]["punt_meter_drops"], 10,
                       lambda: f"no meter drops counted: {fig2.rest('GET', '/stats')[1]}")
    assert drops > 0
    flood.popen.wait(FLOOD_S + 5)
    print(f"flood: REST max {max(rest_s) * 1000:.0f} ms over {len(rest_s)} calls; new flow "
          f"served max {max(placed_s) * 1000:.0f} ms over {len(placed_s)}; meter drops {drops}")

"""Link delay measured by the controller, and delay-aware choice where netem can add delay."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mininet_tests.harness import Lab
from mininet_tests.processes import wait_until
from mininet_tests.test_fig2 import R1, shares, wait_shares

DELAY_CONFIG = {"config": Path(__file__).with_name("fig2_delay.toml"), "edges": True}


def measured(lab: Lab) -> dict[tuple[int, int], float | None]:
    """Measured delay (ms) of every link direction the controller knows."""
    return {(lk["src"]["dpid"], lk["dst"]["dpid"]): lk["delay_ms"]
            for lk in lab.rest("GET", "/topology")[1]["links"]}


def test_measured_link_delays_are_small_and_sane(fig2: Lab) -> None:
    """With no delay element, every link's measured delay is present, non-negative and small
    (LLDP transit minus half of each control round trip; here only software latency)."""
    wait_until(lambda: len(measured(fig2)) == 6 and None not in measured(fig2).values(), 20,
               lambda: f"delays not measured yet: {measured(fig2)}")
    delays = measured(fig2)
    assert all(0.0 <= d < 50.0 for d in delays.values() if d is not None), delays


@pytest.mark.parametrize("fig2", [DELAY_CONFIG], indirect=True)
def test_delay_aware_choice_where_netem_exists(fig2: Lab) -> None:
    """40 ms of real delay on r3's uplink makes e3 dear from r1: new flows go to e2."""
    wait_shares(fig2, "svc1", R1, {"10.0.0.21", "10.0.0.31"})
    done = subprocess.run(["tc", "qdisc", "add", "dev", "r3-eth10", "root", "netem", "delay",
                           "40ms"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"tc netem is not available on this machine ({done.stderr.strip()}); "
                    "delay-aware choice is covered by unit tests here")
    wait_until(lambda: (measured(fig2).get((3, 4)) or 0) > 20, 20,
               lambda: f"delay on r3->x0 not seen: {measured(fig2)}")
    wait_shares(fig2, "svc1", R1, {"10.0.0.21"})
    assert shares(fig2, "svc1", R1) == {"10.0.0.21": 1.0}

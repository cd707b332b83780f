"""A switch's groups are reconciled, never wiped (controller/dataplane/groupaudit.py), with real
OVS on Figure 2: the controller runs with failover on for svc1 (bucket) and svc2 (reactive),
c1 holds connections to svc1, another application's groups are added by hand; the controller
is stopped and started again with failover off for svc1. Its fast-failover groups then leave
r2 and r3 (`ovs-ofctl -O OpenFlow13 dump-groups`), deleted by the group read (not by anything
else: `reconcile_groups_removed`), while svc2's stay, each named by an entry, the foreign
groups survive, and every held connection stayed open on its instance.
Config: mininet_tests/fig2_failover.toml.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time

import pytest

from controller.dataplane.failover import group_ids
from controller.dataplane.labels import preferred
from mininet_tests.harness import Lab
from mininet_tests.processes import wait_until
from mininet_tests.restarts import stat
from mininet_tests.test_failover import FAILOVER, _ff, _named
from mininet_tests.test_restart import assert_unharmed, serve

HELD = 40  # connections c1 holds to svc1 (on both instances)
SVC1_AT = {"r2": "10.0.0.21", "r3": "10.0.0.31"}  # svc1's instance at each site's switch
SVC2_AT = {"r2": "10.0.0.22", "r3": "10.0.0.32"}
FOREIGN = (7, 200_000)  # another application's group ids, below and above Dyncast's range
SETTLE_S = 45.0  # held entries wait for their instances (at most 30 s), then a read (2 s)


def _groups_of(dbid: str) -> set[int]:
    """The two fast-failover groups of an instance (its label: derived from the D-BID)."""
    return set(group_ids(preferred(dbid)))


def _add_foreign(bridge: str, group_id: int) -> None:
    subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "add-group", bridge,
                    f"group_id={group_id},type=ff,bucket=watch_port:1,actions=output:1"],
                   check=True)


def _failover_off(text: str, service: str) -> str:
    """The configuration text with `failover = true` turned off in `service`'s table."""
    parts = text.split("[[service]]")
    for i, part in enumerate(parts):
        if re.search(rf'^name = "{service}"$', part, re.M):
            parts[i] = part.replace("failover = true", "failover = false")
            return "[[service]]".join(parts)
    raise AssertionError(f"no service {service} in the configuration")


@pytest.mark.parametrize("fig2", [FAILOVER | {"edges": False}], indirect=True)
def test_restart_with_failover_off_removes_its_groups_only(fig2: Lab) -> None:
    """Stopped with failover on, started with it off for svc1: svc1's groups go, svc2's and
    the foreign ones stay, and no held connection broke or moved."""
    conns = serve(fig2, HELD)
    for bridge in SVC1_AT:
        want = _groups_of(SVC1_AT[bridge]) | _groups_of(SVC2_AT[bridge])
        wait_until(lambda b=bridge, w=want: w <= set(_ff(b)), 15,
                   lambda b=bridge: f"{b}: fast-failover groups {_ff(b)}")
        for gid in FOREIGN:
            _add_foreign(bridge, gid)
    assert fig2.controller is not None
    assert fig2.stop_controller(signal.SIGTERM) == 0
    config = fig2.controller.secured_config
    config.write_text(_failover_off(config.read_text(), "svc1"))
    since = fig2.restart_controller()
    fig2.wait_connected()

    def settled() -> bool:
        return not any(_groups_of(SVC1_AT[b]) & set(_ff(b)) for b in SVC1_AT)
    wait_until(settled, SETTLE_S, lambda: f"svc1's groups still held: "
               f"{ {b: sorted(_groups_of(SVC1_AT[b]) & set(_ff(b))) for b in SVC1_AT} }")
    assert stat(fig2, "reconcile_groups_removed") >= 4, "not deleted by the group read"
    for bridge in SVC1_AT:
        held = set(_ff(bridge))
        assert set(FOREIGN) <= held, f"{bridge} lost another application's group: {held}"
        assert _groups_of(SVC2_AT[bridge]) <= held, f"{bridge} lost svc2's groups: {held}"
        wait_until(lambda b=bridge: _named(b) == set(_ff(b)) - set(FOREIGN), 10,
                   lambda b=bridge: f"{b}: groups {_ff(b)}, named {_named(b)}")
    assert_unharmed(conns, since=time.time(), timeout=15.0)
    assert stat(fig2, "errors") == 0
    print(f"failover off after a restart: svc1's groups gone within {time.time() - since:.1f} s"
          f" of the restart (bounded by the held entries' wait); {HELD} held connections "
          "unharmed; foreign groups kept")

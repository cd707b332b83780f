"""A switch's groups are reconciled, never wiped (controller/dataplane/groupaudit.py), with real
OVS on Figure 2: the controller runs with failover on for svc1 (bucket) and svc2 (reactive),
c1 holds connections to svc1, another application's groups are added by hand (two of them
inside 32-131,071, where Dyncast's ids were before they carried a prefix); the controller is
stopped, svc2's groups are copied under their unprefixed ids with its entries pointed at the
copies (as a process before 2026-12 left them), and it is started again with failover off for
svc1. Its fast-failover groups then leave r2 and r3 (`ovs-ofctl -O OpenFlow13 dump-groups`),
deleted by the group read (not by anything else: `reconcile_groups_removed`), as do the
unprefixed copies once svc2's entries name its own groups again; svc2's groups stay, each
named by an entry, the foreign groups survive, and every held connection stayed open on its
instance. Config: mininet_tests/fig2_failover.toml.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time

import pytest

from controller.dataplane.failover import DEFAULT_GROUP_PREFIX, group_ids
from controller.dataplane.labels import preferred
from mininet_tests.flowdump import dump_flows
from mininet_tests.harness import Lab
from mininet_tests.processes import wait_until
from mininet_tests.restarts import stat
from mininet_tests.test_failover import FAILOVER, _ff, _groups, _named
from mininet_tests.test_restart import assert_unharmed, serve

HELD = 40  # connections c1 holds to svc1 (on both instances)
SVC1_AT = {"r2": "10.0.0.21", "r3": "10.0.0.31"}  # svc1's instance at each site's switch
SVC2_AT = {"r2": "10.0.0.22", "r3": "10.0.0.32"}
# another application's group ids: below, inside (40, 100) and above 32-131,071, the ids of
# Dyncast's groups before they carried a prefix (the reconciler then deleted 40 and 100)
FOREIGN = (7, 40, 100, 200_000)
SETTLE_S = 45.0  # held entries wait for their instances (at most 30 s), then a read (2 s)


def _groups_of(dbid: str) -> set[int]:
    """The two fast-failover groups of an instance (its label: derived from the D-BID; the
    config leaves `group_id_prefix` at its default)."""
    return set(group_ids(preferred(dbid), DEFAULT_GROUP_PREFIX))


def _as_an_earlier_process(bridge: str, gid: int) -> int:
    """Copy group `gid` under the unprefixed id a process before 2026-12 gave it and point the
    entries naming `gid` at the copy (as that process left them); the copy's id."""
    old = gid & 0xFFFFFF
    line = next(x for x in _groups(bridge).splitlines() if f"group_id={gid}," in x)
    spec = re.sub(r"bucket_id:\d+,", "", line.strip()).replace(f"group_id={gid},",
                                                               f"group_id={old},")
    subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "add-group", bridge, spec], check=True)
    named = [f for f in dump_flows(bridge) if f"group:{gid}" in f["actions"]]
    assert named, f"{bridge}: no entry names group {gid}"
    for flow in named:
        match = ",".join(k if v == "" else f"{k}={v}" for k, v in flow["match"].items())
        subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "mod-flows", "--strict", bridge,
                        f"table={flow['table']},priority={flow['priority']},{match},"
                        f"actions=group:{old}"], check=True)
    return old


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
    the foreign ones stay (those inside the old unprefixed range too), svc2's unprefixed
    copies go once its entries are moved off them, and no held connection broke or moved."""
    conns = serve(fig2, HELD)
    for bridge in SVC1_AT:
        want = _groups_of(SVC1_AT[bridge]) | _groups_of(SVC2_AT[bridge])
        wait_until(lambda b=bridge, w=want: w <= set(_ff(b)), 15,
                   lambda b=bridge: f"{b}: fast-failover groups {_ff(b)}")
        for gid in FOREIGN:
            _add_foreign(bridge, gid)
    assert fig2.controller is not None
    assert fig2.stop_controller(signal.SIGTERM) == 0
    earlier = {b: {_as_an_earlier_process(b, g) for g in _groups_of(SVC2_AT[b])}
               for b in SVC2_AT}
    config = fig2.controller.secured_config
    config.write_text(_failover_off(config.read_text(), "svc1"))
    since = fig2.restart_controller()
    fig2.wait_connected()

    def left() -> dict[str, list[int]]:
        return {b: sorted((_groups_of(SVC1_AT[b]) | earlier[b]) & set(_ff(b))) for b in SVC1_AT}
    wait_until(lambda: not any(left().values()), SETTLE_S,
               lambda: f"svc1's groups or svc2's unprefixed copies still held: {left()}")
    assert stat(fig2, "reconcile_groups_removed") >= 8, "not deleted by the group read"
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

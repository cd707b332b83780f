"""Instance life cycle in Mininet: reactivation of an inactive site under load, scale-in with
drain and stop, operator drain through dyncastctl, a D-Forwarder ingress, and a client that moves
to another switch in the middle of a connection."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from controller.intents import CookieKind
from mininet_tests.harness import Lab
from mininet_tests.processes import HostProcess, bin_path, wait_until
from mininet_tests.test_fig2 import (
    EDGES,
    INSTANCE_OF,
    R1,
    SVC1,
    affinity_entries,
    assert_held_to_the_end,
    client,
    held_lines,
    set_load,
    start_hold,
    wait_shares,
)

HERE = Path(__file__).parent
SITES = {"e2": "10.0.0.21", "e3": "10.0.0.31", "e4": "10.0.0.41"}  # svc1 instance per site
NAME_OF = {dbid: f"svc1@{host}" for host, dbid in SITES.items()}


def dyncastctl(lab: Lab, *args: str) -> str:
    """Run the operator CLI against the lab's controller; fail on a non-zero exit."""
    assert lab.controller is not None and lab.controller.creds is not None
    done = subprocess.run([bin_path("dyncastctl"), "--controller", lab.controller.url,
                           "--token-file", str(lab.controller.creds.token_file), *args],
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


def instance(lab: Lab, dbid: str) -> dict[str, Any]:
    """The controller's view of one instance (state, history, bindings...)."""
    status, body = lab.rest("GET", f"/instances/{dbid}")
    assert status == 200, body
    return dict(body)


def start_managed_site(lab: Lab, host: str, inactive: bool = False,
                       capacity: int = 4) -> HostProcess:
    """Run the D-MA of `host`'s svc1 instance with the command that starts it: the D-MA starts
    it now, or on `reactivate` when `inactive`; it stops it on `deactivate`."""
    dbid = SITES[host]
    argv = lab.demo_service_argv(dbid, NAME_OF[dbid], capacity=capacity)
    extra = ["--start", f"{dbid}={shlex.join(argv)}"]
    if inactive:
        extra += ["--inactive", dbid]
    return lab.start_dma(host, {SVC1: dbid}, interval=0.5, extra=extra)


REACTIVATE = {"config": HERE / "fig2_reactivate.toml", "third_site": True}


@pytest.mark.heavy  # test_scaling_bursts' reactivation under a burst runs under every framework
@pytest.mark.parametrize("fig2", [REACTIVATE], indirect=True)
def test_inactive_site_is_reactivated_under_load_and_takes_new_flows(fig2: Lab) -> None:
    """Both active instances loaded past the threshold: the controller triggers the inactive
    third site's D-MA, which starts it; it becomes active and takes new flows, and no
    connection opened before changes instance."""
    start_managed_site(fig2, "e2")
    start_managed_site(fig2, "e3")
    spare = start_managed_site(fig2, "e4", inactive=True)
    wait_shares(fig2, "svc1", R1, {"10.0.0.21", "10.0.0.31"})
    assert instance(fig2, "10.0.0.41")["state"] == "inactive"
    holds = [start_hold(fig2, 15, name=f"hold{i}") for i in range(4)]
    assert {first for _, first in holds} == {"svc1@e2", "svc1@e3"}, holds
    wait_until(lambda: instance(fig2, "10.0.0.41")["state"] == "active", 30,
               lambda: f"e4 not reactivated: {instance(fig2, '10.0.0.41')}")
    steps = [(h["from"], h["to"]) for h in instance(fig2, "10.0.0.41")["history"]]
    assert steps[-2:] == [("inactive", "activating"), ("activating", "active")], steps
    assert "command reactivate 10.0.0.41" in spare.log()
    wait_until(lambda: "svc1@e4" in client(fig2, "c1", SVC1, requests=4)["served"], 20,
               "no new flow reached the reactivated instance")
    for proc, first in holds:
        assert_held_to_the_end(proc, first, 15)
    assert fig2.rest("GET", "/stats")[1]["affinity_moves"] == 0


SCALE_IN = {"config": HERE / "fig2_scalein.toml", "third_site": True}


@pytest.mark.heavy  # core logic, framework-independent (CI's time budget: one framework runs it)
@pytest.mark.parametrize("fig2", [SCALE_IN], indirect=True)
def test_low_load_drains_then_stops_the_least_useful_instance(fig2: Lab) -> None:
    """With load low everywhere, one instance is drained: no new flow reaches it, every
    connection it served completes on it before the drain deadline, then its D-MA stops it
    and it becomes inactive."""
    dmas = {SITES[h]: start_managed_site(fig2, h, capacity=20) for h in ("e2", "e3", "e4")}
    wait_until(lambda: all(instance(fig2, d)["state"] == "active" for d in dmas), 20,
               "the three instances did not all become active")
    holds = [start_hold(fig2, 12, name=f"hold{i}") for i in range(6)]
    draining = lambda: [d for d in dmas if instance(fig2, d)["state"] == "draining"]  # noqa: E731
    wait_until(draining, 20, "no instance was drained for scale-in")
    (victim,) = draining()
    on_victim = [(p, f) for p, f in holds if f == NAME_OF[victim]]
    assert on_victim, f"no held connection on the drained {victim}: {[f for _, f in holds]}"
    served = client(fig2, "c1", SVC1, requests=6)
    assert served["errors"] == 0 and NAME_OF[victim] not in served["served"], served
    for proc, first in holds:
        assert_held_to_the_end(proc, first, 12)
    wait_until(lambda: instance(fig2, victim)["state"] == "inactive", 30,
               lambda: f"{victim} not stopped: {instance(fig2, victim)}")
    assert f"command deactivate {victim}" in dmas[victim].log()
    events = [h["event"] for h in instance(fig2, victim)["history"]]
    assert events[-2:] == ["drain", "report_inactive"], events
    assert "scale-in" in instance(fig2, victim)["history"][-2]["reason"]
    assert fig2.rest("GET", "/stats")[1]["affinity_moves"] == 0


@pytest.mark.parametrize("fig2", [EDGES], indirect=True)
def test_client_moved_to_another_switch_keeps_its_instance(fig2: Lab) -> None:
    """c1 moves from r1 to r2 in the middle of a long-lived connection: the binding follows it
    to the new ingress and the connection completes on its instance."""
    wait_shares(fig2, "svc1", R1, {"10.0.0.21", "10.0.0.31"})
    holder, first = start_hold(fig2, 10)
    wait_until(lambda: len(held_lines(holder)) >= 5, 10, "the held connection streams")
    fig2.move_host("c1", "r2", 12)
    wait_until(lambda: {b["ingress"] for b in fig2.rest("GET", "/bindings/svc1")[1]} == {2},
               15, lambda: f"binding still at {fig2.rest('GET', '/bindings/svc1')[1]}")
    assert affinity_entries("r2", CookieKind.AFFINITY_FWD)
    assert_held_to_the_end(holder, first, 10)
    again = client(fig2, "c1", SVC1, requests=2)
    assert again["errors"] == 0, again

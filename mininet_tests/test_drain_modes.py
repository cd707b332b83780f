"""Drains where the switches keep affinity, in Mininet: a deactivated `learn` (or `bucket`)
instance keeps serving a connection the switch learned (or pinned) for it until the connection
ends, and only then does its D-MA get told to stop it; with a deadline, the switches' entries
to it are deleted when it passes and it is stopped then (controller/dataplane/drains.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from controller.intents import CookieKind
from mininet_tests.harness import Lab
from mininet_tests.processes import wait_until
from mininet_tests.test_fig2 import (
    INSTANCE_OF,
    R1,
    SVC1,
    affinity_entries,
    assert_held_to_the_end,
    client,
    held_lines,
    start_hold,
    wait_shares,
)
from mininet_tests.test_lifecycle import dyncastctl, instance, start_managed_site
from mininet_tests.test_scaling_bursts import rows_of, timed

HOLD_S = 16.0
LEARN_SYN_S = 2.0  # `learn`: a decision change this soon after a live connection's SYN may
# re-learn it elsewhere (OVS re-translates the SYN's cached flow: docs/dataplanes.md, pitfall 12)
HERE = Path(__file__).parent
LEARN = {"config": HERE / "fig2_drain_learn.toml"}
BUCKET = {"config": HERE / "fig2_drain_bucket.toml"}
CONNTRACK = {"config": HERE / "fig2_drain_conntrack.toml"}
REUSE = {"config": HERE / "fig2_reuse_learn.toml", "edges": True}
HELD_KIND = {"learn": CookieKind.LEARNED_FWD, "bucket": CookieKind.PIN}  # what holds a flow
HOST_OF = {"10.0.0.21": "e2", "10.0.0.31": "e3"}


def serves(lab: Lab, dbid: str) -> bool:
    """True when the instance process answers on its own address (asked from its host)."""
    out = lab.host_cmd(HOST_OF[dbid], f"curl -s -m 2 http://{dbid}:8000/stats")
    return out.lstrip().startswith("{")


def tracked_to(lab: Lab, dbid: str) -> list[dict[str, Any]]:
    """The live connections /bindings shows the tracker holding for `dbid` (conntrack)."""
    return [b for b in lab.rest("GET", "/bindings/svc1")[1]
            if b["source"] == "tracker" and b.get("live") and b["dbid"] == dbid]


# all `heavy`: the life cycle is the core's, framework-independent (CI's time budget; the
# second framework's conntrack encoding is test_conntrack's)
@pytest.mark.parametrize("fig2", [pytest.param(LEARN, id="learn", marks=pytest.mark.heavy),
                                  pytest.param(BUCKET, id="bucket", marks=pytest.mark.heavy),
                                  pytest.param(CONNTRACK, id="conntrack",
                                               marks=pytest.mark.heavy)], indirect=True)
def test_deactivated_instance_is_stopped_only_after_its_held_connection(fig2: Lab) -> None:
    """learn, bucket, conntrack: `deactivate` an instance serving a held connection: no new
    flow reaches it, the connection streams from it to its end (the switch holds it: a learned
    entry, a pin of its moving bucket, or its tracker's entry, read by the controller) with the
    instance process alive and no stop sent meanwhile; then its D-MA stops it and it becomes
    inactive."""
    dmas = {d: start_managed_site(fig2, h) for d, h in (("10.0.0.21", "e2"),
                                                         ("10.0.0.31", "e3"))}
    wait_until(lambda: all(instance(fig2, d)["state"] == "active" for d in dmas), 20,
               "the two instances did not both become active")
    wait_shares(fig2, "svc1", R1, set(dmas))
    started = time.monotonic()
    holder, first = start_hold(fig2, HOLD_S)
    victim = INSTANCE_OF[first]
    (other,) = set(dmas) - {victim}
    dataplane = fig2.rest("GET", "/services/svc1")[1]["dataplane"]
    learned = affinity_entries("r1", CookieKind.LEARNED_FWD)
    assert bool(learned) == (dataplane == "learn"), learned
    if dataplane == "learn":  # past the known gap right after a connection's SYN, which is
        time.sleep(LEARN_SYN_S)  # not this test's subject (docs/dataplanes.md, `learn`)
    assert "draining" in dyncastctl(fig2, "deactivate", victim)
    wait_shares(fig2, "svc1", R1, {other})
    if dataplane == "conntrack":
        wait_until(lambda: tracked_to(fig2, victim), 5, "/bindings shows no tracked connection")
    else:
        kind = HELD_KIND[dataplane]
        wait_until(lambda: affinity_entries("r1", kind), 5, f"r1 holds no {kind.name} entry")
    seen: dict[str, Any] = {}

    def only_other() -> bool:
        """New connections reach only the live instance (bucket: from SYN_DELAY_S into the
        move, controller/dataplane/rules.py)."""
        seen.update(client(fig2, "c1", SVC1, requests=4))
        return seen["errors"] == 0 and {INSTANCE_OF[i] for i in seen["served"]} == {other}

    wait_until(only_other, 0.1 if dataplane == "learn" else 5, lambda: f"new flows: {seen}")
    while time.monotonic() - started < HOLD_S - 3:  # the connection is still held
        assert instance(fig2, victim)["state"] == "draining", instance(fig2, victim)
        assert "command deactivate" not in dmas[victim].log()
        assert serves(fig2, victim), f"{victim} stopped under a held connection"
        assert held_lines(holder)[-1].get("line") == first, held_lines(holder)[-1:]
        time.sleep(2)
    assert_held_to_the_end(holder, first, HOLD_S)
    wait_until(lambda: instance(fig2, victim)["state"] == "inactive", 30,
               lambda: f"{victim} not stopped after its connection ended: "
                       f"{instance(fig2, victim)}")
    assert f"command deactivate {victim}" in dmas[victim].log()
    events = [h["event"] for h in instance(fig2, victim)["history"]]
    assert events[-2:] == ["drain", "report_inactive"], events
    assert not serves(fig2, victim)
    assert "command deactivate" not in dmas[other].log()


def entries_to(bridge: str, label: int) -> list[dict[str, Any]]:
    """The learned entries and pins a switch holds for flows to the instance with `label`."""
    return [e for kind in (CookieKind.LEARNED_FWD, CookieKind.PIN)
            for e in affinity_entries(bridge, kind) if e["cookie"] & 0xFFFF_FFFF_FFFF == label]


@pytest.mark.parametrize("fig2", [pytest.param(LEARN, id="learn", marks=pytest.mark.heavy),
                                  pytest.param(BUCKET, id="bucket")], indirect=True)
def test_deadline_takes_switch_held_flows_off_a_deactivated_instance(fig2: Lab) -> None:
    """learn, bucket: `deactivate --deadline 4` under a held connection: until the deadline the
    switch keeps it on the instance and no stop is sent; at the deadline the switch's entries
    to the instance are deleted (counted in `drain_deadline_moves`) and its D-MA stops it."""
    dmas = {d: start_managed_site(fig2, h) for d, h in (("10.0.0.21", "e2"),
                                                         ("10.0.0.31", "e3"))}
    wait_until(lambda: all(instance(fig2, d)["state"] == "active" for d in dmas), 20,
               "the two instances did not both become active")
    wait_shares(fig2, "svc1", R1, set(dmas))
    holder, first = start_hold(fig2, 40)
    victim = INSTANCE_OF[first]
    label = instance(fig2, victim)["label"]
    if fig2.rest("GET", "/services/svc1")[1]["dataplane"] == "learn":  # past the known gap
        time.sleep(LEARN_SYN_S)  # right after a SYN, as the test above (docs/dataplanes.md)
    began = time.monotonic()
    dyncastctl(fig2, "deactivate", victim, "--deadline", "4")
    wait_until(lambda: entries_to("r1", label), 3, "r1 holds no entry to the instance")
    while time.monotonic() - began < 3:
        assert "command deactivate" not in dmas[victim].log(), "stopped before its deadline"
        assert held_lines(holder)[-1].get("line") == first, held_lines(holder)[-1:]
        time.sleep(0.5)
    wait_until(lambda: instance(fig2, victim)["state"] == "inactive", 15,
               lambda: f"{victim} not stopped after its deadline: {instance(fig2, victim)}")
    assert time.monotonic() - began >= 4
    assert f"command deactivate {victim}" in dmas[victim].log()
    assert not entries_to("r1", label)
    assert fig2.rest("GET", "/stats")[1]["drain_deadline_moves"] >= 1
    wait_until(lambda: holder.popen.poll() is not None, 10,
               "the held connection still runs on a stopped instance")


@pytest.mark.heavy  # test_health's killed-instance test reuses bound ports everywhere
@pytest.mark.parametrize("fig2", [REUSE], indirect=True, ids=["learn"])
def test_learn_new_connection_reusing_a_drained_instances_source_port_is_decided_afresh(
        fig2: Lab) -> None:
    """learn: c1 makes short requests from chosen source ports; the instance serving some of
    them (and a held connection) is drained while r1 still holds the entries it learned for
    those closed connections: new connections from the same ports all reach the other instance
    (the switch decides every SYN afresh), and the held connection completes on the drained one."""
    wait_shares(fig2, "svc1", R1, set(HOST_OF))
    holder, first = start_hold(fig2, 15)
    drained = INSTANCE_OF[first]
    (other,) = set(HOST_OF) - {drained}
    label = instance(fig2, drained)["label"]
    ports = [str(p) for p in range(41001, 41011)]
    before = rows_of(timed(fig2, "c1", "ports", "--sports", ",".join(ports)), 30)
    assert [r for r in before if "error" in r] == [], before
    reused = sorted(r["sport"] for r in before if r["instance"] == first)
    assert len(reused) >= 3, before

    def learned_to_drained() -> set[int]:
        return {int(e["match"].get("tp_src", 0)) for e in entries_to("r1", label)}

    assert set(reused) <= learned_to_drained()
    assert fig2.rest("POST", f"/instances/{drained}/drain", {"deadline_s": 60})[0] == 200
    wait_shares(fig2, "svc1", R1, {other})
    assert set(reused) <= learned_to_drained()  # the closed flows' entries are still held
    again = rows_of(timed(fig2, "c1", "reuse", "--sports", ",".join(map(str, reused))), 30)
    assert [r for r in again if "error" in r] == [], again
    assert [r["sport"] for r in again] == reused, again
    assert {INSTANCE_OF[r["instance"]] for r in again} == {other}, again
    assert not set(reused) & learned_to_drained()  # learned anew, to the other instance
    assert instance(fig2, drained)["state"] == "draining"
    assert_held_to_the_end(holder, first, 15)

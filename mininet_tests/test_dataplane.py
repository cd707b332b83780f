"""The dataplanes on Figure 2, with real traffic: `reactive` sees one packet-in per new
connection; in `learn` and `bucket` new flows reach the decided instance without a packet-in,
long-lived flows keep their instance across a decision change, and in overlay mode the
instance itself answers on the D-SID."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.dataplane.rules import PRIO_BUCKET_SYN
from controller.intents import (
    COOKIE_APP,
    TABLE_AFFINITY,
    TABLE_DECISION,
    TABLE_INSTANCE,
    CookieKind,
)
from mininet_tests.flowdump import dump_flows
from mininet_tests.harness import Lab
from mininet_tests.processes import wait_until
from mininet_tests.test_fig2 import (
    EDGES,
    INSTANCE_OF,
    R1,
    SVC1,
    assert_held_to_the_end,
    client,
    set_load,
    start_hold,
    wait_shares,
)

HERE = Path(__file__).parent
BOTH = {"10.0.0.21", "10.0.0.31"}


def _stat(lab: Lab, name: str) -> int:
    return int(lab.rest("GET", "/stats")[1].get(name, 0))


@pytest.mark.parametrize("fig2", [EDGES], indirect=True)
def test_reactive_new_connection_reaches_the_controller_once(fig2: Lab) -> None:
    """reactive: a new TCP connection's SYN is the only packet of it the controller sees (its
    ACK and request used to follow the SYN's cached datapath flow there too, 1-1.6 each).

    Linux may give a connection the source port of one that has closed (the server closes
    first, so the client keeps no TIME_WAIT): that connection has the same 5-tuple, so it
    follows its predecessor's entries to the same instance, with no packet-in. So the bindings
    made are counted against the 5-tuples the client used, not against its connections."""
    wait_shares(fig2, "svc1", R1, {"10.0.0.21", "10.0.0.31"})
    before = fig2.rest("GET", "/stats")[1]
    seen = client(fig2, "c1", SVC1, requests=100, concurrency=4)
    after = fig2.rest("GET", "/stats")[1]
    new, punted = (after.get(k, 0) - before.get(k, 0) for k in ("new_flows", "packet_in_dsid"))
    moved = {k: after[k] - before.get(k, 0) for k in after
             if isinstance(after[k], int) and after[k] != before.get(k, 0)}
    tuples = seen["source_ports"]
    assert seen["errors"] == 0 and sum(seen["served"].values()) == 100, seen
    assert tuples >= 90 and new == tuples, (seen, moved)
    assert punted - new <= 10, f"{punted - new} extra packet-ins for {new} new connections"


def _entries(bridge: str, kind: CookieKind, table: int | None = None) -> list[dict]:
    return [f for f in dump_flows(bridge) if f["cookie"] >> 56 == COOKIE_APP
            and (f["cookie"] >> 48) & 0xFF == kind and (table is None or f["table"] == table)]


def _reg0(flow: dict) -> int | None:
    """The label an entry loads into reg0, or None."""
    for act in flow["actions"]:
        found = re.match(r"(?:set_field|load):(\w+)->(?:reg0|NXM_NX_REG0\[\])", act)
        if found:
            return int(found.group(1), 0)
    return None


def _new_flows_follow_the_decision(dbids: set[str]) -> bool:
    """True when r1 sends new TCP connections by its decision over `dbids`: every bucket it is
    moving (its entry learns pins to the old instance) has its SYN entry for the new one, which
    comes SYN_DELAY_S after the move began, and the buckets send new connections to exactly
    `dbids` (a decision the controller has taken but not yet installed does not count)."""
    decision = _entries("r1", CookieKind.DECISION, TABLE_DECISION)
    syns = [f for f in decision if f["priority"] == PRIO_BUCKET_SYN]
    rest = [f for f in decision if f["priority"] != PRIO_BUCKET_SYN]
    pinning = [f for f in rest if any(a.startswith("learn(") for a in f["actions"])]
    if sorted(f["match"]["tp_src"] for f in pinning) != sorted(f["match"]["tp_src"]
                                                               for f in syns):
        return False
    instances = _entries("r1", CookieKind.INSTANCE, TABLE_INSTANCE)
    labels = set()
    for dbid in dbids:
        mine = {int(f["match"]["reg0"], 0) for f in instances
                if f"set_field:{dbid}->ip_dst" in f["actions"]}
        if len(mine) != 1:
            return False
        labels |= mine
    steering = syns + [f for f in rest if f not in pinning]
    return bool(steering) and {_reg0(f) for f in steering} == labels


def _steer_and_keep(lab: Lab, follows: Callable[[set[str]], bool] | None = None) -> None:
    """New flows reach the decided instances with no packet-in for them; a held connection
    keeps its instance when the decision moves away from it. `follows(dbids)`: true once the
    switch sends new flows to exactly `dbids` (bucket mode: SYN_DELAY_S after a move began)."""
    wait_shares(lab, "svc1", R1, BOTH)
    if follows is not None:
        wait_until(lambda: follows(BOTH), 10, "r1 does not send new flows to both instances")
    before = _stat(lab, "packet_in_dsid")
    seen = client(lab, "c1", SVC1, requests=12)
    assert seen["errors"] == 0 and {INSTANCE_OF[i] for i in seen["served"]} == BOTH, seen
    assert seen["peers"] == {SVC1: 12}, seen
    holder, first = start_hold(lab, 12)
    pinned = INSTANCE_OF[first]
    other = (BOTH - {pinned}).pop()
    set_load(lab, pinned, 10.0)
    wait_shares(lab, "svc1", R1, {other})
    if follows is not None:
        wait_until(lambda: follows({other}), 10, f"r1 does not send new flows to {other}")
    after = client(lab, "c1", SVC1, requests=6)
    assert after["errors"] == 0 and {INSTANCE_OF[i] for i in after["served"]} == {other}, after
    assert_held_to_the_end(holder, first, 12)
    assert _stat(lab, "packet_in_dsid") == before, "new flows to the D-SID reached the controller"


@pytest.mark.parametrize("fig2", [{**EDGES, "config": HERE / "fig2_learn.toml"}], indirect=True)
def test_learn_mode_switch_learns_affinity_without_packet_in(fig2: Lab) -> None:
    """learn: every new flow gets its own entry learned in the switch; /bindings reads them
    back; nothing goes through the controller. Its 4 s idle timeout is within OVS's datapath
    idle limit: the controller said so in its log when it started."""
    assert fig2.controller is not None
    log = fig2.controller.log_path.read_text(errors="replace")
    assert re.search(r"dyncast: service svc1: dataplane 'learn' with "
                     r"affinity\.idle_timeout 4 s", log), fig2.controller.log_tail()
    _steer_and_keep(fig2)
    assert _entries("r1", CookieKind.LEARNED_FWD, TABLE_AFFINITY)
    assert _entries("r1", CookieKind.LEARNED_REV, TABLE_AFFINITY)
    wait_until(lambda: any(b.get("source") == "switch" for b in
                           fig2.rest("GET", "/bindings/svc1")[1]), 10,
               "learned entries not read back into /bindings")


@pytest.mark.parametrize("fig2", [{**EDGES, "config": HERE / "fig2_bucket.toml"}],
                         indirect=True)
def test_bucket_mode_keeps_affinity_with_bounded_state(fig2: Lab) -> None:
    """bucket: rules per bucket, not per flow; a moved bucket pins its live flows first, so
    the held connection keeps its instance; the pins are the only per-flow entries."""
    _steer_and_keep(fig2, follows=_new_flows_follow_the_decision)
    assert not _entries("r1", CookieKind.LEARNED_FWD)
    assert _stat(fig2, "bucket_moves_started") > 0
    pins = _entries("r1", CookieKind.PIN, TABLE_AFFINITY)
    assert len(pins) <= 2 + 12 + 6, pins  # the held flow and the flows seen while moving


OVERLAY = {"config": HERE / "fig2_overlay.toml", "overlay": True}


@pytest.mark.parametrize("fig2", [OVERLAY], indirect=True)
def test_overlay_instance_answers_on_the_dsid(fig2: Lab) -> None:
    """overlay: no address translation; the ingress labels the flow to its instance's switch;
    the instance answers on the D-SID; a held connection keeps its instance."""
    for host, dbid in (("e2", "10.0.0.21"), ("e3", "10.0.0.31")):
        fig2.popen(host, fig2.demo_service_argv("0.0.0.0", f"svc1@{host}"), "service",
                   ready=r"^serving ")
        fig2.start_dma(host, {SVC1: dbid})
    _steer_and_keep(fig2)
    local = fig2.host_cmd("c1", f"curl -s http://{SVC1}:8000/")
    assert '"local": "10.0.100.1"' in local, local  # the instance's own socket is the D-SID
    actions = " ".join(" ".join(f["actions"]) for f in
                       _entries("r1", CookieKind.INSTANCE, TABLE_INSTANCE))
    assert "push_mpls" in actions and "10.0.0.21" not in actions, actions

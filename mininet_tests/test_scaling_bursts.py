"""Issue 17 in Mininet: overload made of short requests reactivates the spare site, lock-step
bursts are not herded onto one instance, and a new connection reusing the source port of a
drained instance's still-bound flow does not reach it.

Judged by what clients saw (mininet_tests/timedrequests.py: one line per request with when it
started and which instance served it) and what /instances, /bindings and /stats say; the
fixtures fail each test on any controller exception or OpenFlow error.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from mininet_tests.harness import Lab
from mininet_tests.processes import HostProcess, wait_until
from mininet_tests.test_fig2 import (
    EDGES,
    INSTANCE_OF,
    R1,
    R2,
    SVC1,
    assert_held_to_the_end,
    start_hold,
    wait_shares,
)
from mininet_tests.test_lifecycle import NAME_OF, SITES, instance

HERE = Path(__file__).parent
TIMED = HERE / "timedrequests.py"


def timed(lab: Lab, host: str, name: str, *args: str) -> HostProcess:
    """Start timedrequests.py in `host` against svc1 with `args`."""
    return lab.popen(host, [sys.executable, str(TIMED), "--dsid", SVC1, *args], name,
                     ready=r"^ready")


def rows_of(proc: HostProcess, timeout: float) -> list[dict[str, Any]]:
    """Wait for the script to end; its per-request lines (failing if it did not finish)."""
    code = proc.popen.wait(timeout=timeout)
    lines = [json.loads(x) for x in proc.log().splitlines() if x.startswith("{")]
    assert code == 0 and lines and "done" in lines[-1], f"exit {code}: {proc.log()[-1500:]}"
    return lines[:-1]


def start_site(lab: Lab, host: str, capacity: int, service_ms: float,
               inactive: bool = False) -> HostProcess:
    """The D-MA of `host`'s svc1 instance, which starts it (now, or on `reactivate`)."""
    dbid = SITES[host]
    argv = lab.demo_service_argv(dbid, NAME_OF[dbid], capacity=capacity, service_ms=service_ms)
    extra = ["--start", f"{dbid}={shlex.join(argv)}"] + (["--inactive", dbid] if inactive else [])
    return lab.start_dma(host, {SVC1: dbid}, interval=0.5, extra=extra)


def stat(lab: Lab, name: str) -> int:
    """One /stats counter (0 while it was never counted)."""
    return int(lab.rest("GET", "/stats")[1].get(name, 0))


OVERLOAD = {"config": HERE / "fig2_overload.toml", "third_site": True}
HOLD_S = 4.0  # fig2_overload.toml
WAVES, WAVE, PERIOD = 8, 8, 2.5  # 8 requests of 1 s at once every 2.5 s, 20 s in all


@pytest.mark.heavy  # the core's life cycle, framework-independent: the first framework runs it
@pytest.mark.parametrize("fig2", [OVERLOAD], indirect=True)
def test_short_requests_at_twice_the_capacity_reactivate_the_spare(fig2: Lab) -> None:
    """Waves of eight 1-second requests, one every 2.5 s, against two instances of capacity 2
    (each wave is 200 % of their capacity): each instance swings between full with a queue and
    empty, never above the threshold for all of hold_s, yet the service's mean load is; the
    spare e4 is active within hold_s + 3 s of the first wave and then serves new requests; a
    connection held since before the overload stays on its instance to the end."""
    for host in ("e2", "e3"):
        start_site(fig2, host, capacity=2, service_ms=1000)
    start_site(fig2, "e4", capacity=2, service_ms=1000, inactive=True)
    wait_shares(fig2, "svc1", R1, {"10.0.0.21", "10.0.0.31"})
    assert instance(fig2, "10.0.0.41")["state"] == "inactive"
    seconds = WAVES * PERIOD + 4
    holder, first = start_hold(fig2, seconds)
    began = time.time() + 1.0
    load = timed(fig2, "c1", "overload", "--burst", str(WAVE), "--rounds", str(WAVES),
                 "--period", str(PERIOD), "--start-at", f"{began:.3f}")
    wait_until(lambda: instance(fig2, "10.0.0.41")["state"] == "active", HOLD_S + 15,
               lambda: f"e4 not reactivated: {instance(fig2, '10.0.0.41')}")
    history = instance(fig2, "10.0.0.41")["history"]
    steps = [(h["from"], h["to"]) for h in history]
    assert steps[-2:] == [("inactive", "activating"), ("activating", "active")], steps
    triggered, active = history[-2]["at"] - began, history[-1]["at"] - began
    print(f"reactivation triggered {triggered:.1f} s, active {active:.1f} s after the overload"
          f" ({history[-2]['reason']})")
    assert active <= HOLD_S + 3, (triggered, active, history)
    rows = rows_of(load, seconds + 20)
    assert [r for r in rows if "error" in r] == [], rows
    assert {r["instance"] for r in rows if r["t"] < began + HOLD_S} == {"svc1@e2", "svc1@e3"}
    after = Counter(r["instance"] for r in rows if r["t"] > history[-1]["at"] + 0.5)
    assert after["svc1@e4"] >= 0.2 * sum(after.values()), after
    assert_held_to_the_end(holder, first, seconds)
    assert fig2.rest("GET", "/stats")[1]["affinity_moves"] == 0


BURSTS = {"extra_clients": 1}
ROUNDS, BURST = 10, 3


@pytest.mark.heavy  # the core's life cycle, framework-independent: the first framework runs it
@pytest.mark.parametrize("fig2", [BURSTS], indirect=True)
def test_lock_step_bursts_are_not_herded(fig2: Lab) -> None:
    """Three clients (c1, c3 at r1; c2 at r2) each fire 3 requests at the same instant every
    second for 10 s against two equal instances with room (capacity 4, 700 ms requests: 79 %
    busy on average; a burst of 9 split evenly queues at most one request): in no one-second
    window does one instance take more than 80 % of the new flows. /decisions and /instances
    are sampled every 0.2 s into the artefact folder (snapshots.jsonl)."""
    for host in ("e2", "e3"):
        start_site(fig2, host, capacity=4, service_ms=700)
    wait_shares(fig2, "svc1", R1, {"10.0.0.21", "10.0.0.31"})
    wait_shares(fig2, "svc1", R2, {"10.0.0.21", "10.0.0.31"})
    start_at = time.time() + 2.5
    procs = [timed(fig2, host, "bursts", "--burst", str(BURST), "--rounds", str(ROUNDS),
                   "--start-at", f"{start_at:.3f}") for host in ("c1", "c2", "c3")]
    with open(fig2.artifacts / "snapshots.jsonl", "w") as out:  # evidence for a failure
        while any(p.popen.poll() is None for p in procs):
            snap = {"t": round(time.time() - start_at, 2),
                    "decisions": fig2.rest("GET", "/decisions/svc1")[1],
                    "instances": [{k: i.get(k) for k in ("dbid", "metrics",
                                                           "placed_since_report")}
                                  for i in fig2.rest("GET", "/instances")[1]]}
            out.write(json.dumps(snap) + "\n")
            time.sleep(0.2)
    rows = [r for p in procs for r in rows_of(p, ROUNDS + 20)]
    assert [r for r in rows if "error" in r] == [], rows
    windows: dict[int, Counter[str]] = defaultdict(Counter)
    for r in rows:
        windows[int(r["t"] - start_at + 0.5)][r["instance"]] += 1  # a burst is mid-window
    sizes = {w: sum(c.values()) for w, c in sorted(windows.items())}
    assert sizes == {w: 3 * BURST for w in range(ROUNDS)}, sizes  # lock-step, 9 per window
    print("new flows per window:", [dict(c) for _, c in sorted(windows.items())])
    herded = {w: dict(c) for w, c in windows.items() if max(c.values()) > 0.8 * sizes[w]}
    assert herded == {}, {w: dict(c) for w, c in sorted(windows.items())}


@pytest.mark.heavy  # framework-independent (the SYN guard); test_health's killed-instance
# test reuses bound ports under both frameworks
@pytest.mark.parametrize("fig2", [EDGES], indirect=True)
def test_new_connection_reusing_a_drained_instances_source_port_is_decided_afresh(
        fig2: Lab) -> None:
    """c1 makes short requests from chosen source ports, then the instance serving some of
    them (and a held connection) is drained while their bindings remain: new connections from
    those same ports all reach the other instance (a fresh decision each, counted as
    new_connections_rebound), and the held connection completes on the drained one."""
    wait_shares(fig2, "svc1", R1, {"10.0.0.21", "10.0.0.31"})
    holder, first = start_hold(fig2, 15)
    drained = INSTANCE_OF[first]
    other = "10.0.0.31" if drained == "10.0.0.21" else "10.0.0.21"
    ports = [str(p) for p in range(41001, 41011)]
    before = rows_of(timed(fig2, "c1", "ports", "--sports", ",".join(ports)), 30)
    assert [r for r in before if "error" in r] == [], before
    reused = sorted(r["sport"] for r in before if r["instance"] == first)
    assert len(reused) >= 3, before

    def bound_to_drained() -> set[int]:
        return {b["flow"]["sport"] for b in fig2.rest("GET", "/bindings/svc1")[1]
                if b.get("source") == "controller" and b["dbid"] == drained}

    assert set(reused) <= bound_to_drained()
    rebound = stat(fig2, "new_connections_rebound")
    assert fig2.rest("POST", f"/instances/{drained}/drain", {"deadline_s": 60})[0] == 200
    wait_shares(fig2, "svc1", R1, {other})
    assert set(reused) <= bound_to_drained()  # the closed flows are still bound to it
    again = rows_of(timed(fig2, "c1", "reuse", "--sports", ",".join(map(str, reused))), 30)
    assert [r for r in again if "error" in r] == [], again
    assert [r["sport"] for r in again] == reused, again
    assert {INSTANCE_OF[r["instance"]] for r in again} == {other}, again
    assert stat(fig2, "new_connections_rebound") - rebound >= len(reused)
    assert instance(fig2, drained)["state"] == "draining"
    assert_held_to_the_end(holder, first, 15)

"""Tools of the restart and reconnect tests: held connections seen from the test, the switches'
entries of ours as comparable keys, and a new-connection probe.

Boundary: drives mininet_tests/holdconns.py in a client host and reads flow tables and the
REST API through a Lab; it asserts nothing itself, the tests do.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from controller.intents import COOKIE_APP, CookieKind, cookie
from mininet_tests.flowdump import dump_flows
from mininet_tests.harness import Lab
from mininet_tests.processes import HostProcess, wait_until

HOLDCONNS = Path(__file__).with_name("holdconns.py")
PER_FLOW = {CookieKind.AFFINITY_FWD, CookieKind.AFFINITY_REV, CookieKind.LEARNED_FWD,
            CookieKind.LEARNED_REV, CookieKind.PIN}
# The decision table and the pins a bucket move makes follow the current decision, which may
# move on while the controller is away or after (a move under way completes; a bucket follows a
# new share); whether that broke a flow is what the held connections show.
FOLLOW_DECISION = {CookieKind.DECISION, CookieKind.PIN}
Key = tuple[int, int, int, tuple[tuple[str, str], ...], tuple[str, ...]]


class HeldConnections:
    """N held connections from one client host (holdconns.py), and what they observed."""

    def __init__(self, lab: Lab, host: str, dsid: str, count: int = 200) -> None:
        self.path = lab.artifacts / f"held-{host}.json"
        argv = [sys.executable, str(HOLDCONNS), "--dsid", dsid, "--count", str(count),
                "--report", str(self.path)]
        self.count = count
        self.proc: HostProcess = lab.popen(host, argv, "holdconns", ready=r"^ready \d+",
                                           timeout=60)
        self.seq = 0

    def report(self, timeout: float = 10.0) -> dict[str, Any]:
        """A fresh report (SIGUSR1, then wait for the file's next `seq`)."""
        self.proc.popen.send_signal(signal.SIGUSR1)

        def fresh() -> dict[str, Any] | None:
            data = json.loads(self.path.read_text()) if self.path.exists() else None
            return data if data and data["seq"] > self.seq else None
        data: dict[str, Any] = wait_until(fresh, timeout, "holdconns wrote no report")
        self.seq = data["seq"]
        return data

    def stop(self) -> dict[str, Any]:
        """End the tool (SIGTERM) and return its last report."""
        self.proc.popen.send_signal(signal.SIGTERM)
        self.proc.popen.wait(20)
        data: dict[str, Any] = json.loads(self.path.read_text())
        return data


def damage(report: dict[str, Any], stall_s: float | None = None) -> dict[str, Any]:
    """What went wrong for the held connections: broken ones (with reasons), counting, given
    `stall_s`, one that once received nothing for longer as broken too; and moved ones."""
    conns = report["connections"]
    broken = [c for c in conns if c["state"] != "open"
              or (stall_s is not None and c["max_gap_s"] > stall_s)]
    reasons = Counter(str(c["reason"] or (c["state"] if c["state"] != "open" else
                                          f"stalled > {stall_s:g} s")) for c in broken)
    return {"broken": len(broken), "moved": report["moved"], "reasons": dict(reasons),
            "examples": broken[:3], "served": report["served"],
            "max_gap_s": max((c["max_gap_s"] for c in conns), default=0.0)}


def all_alive_since(report: dict[str, Any], since: float) -> bool:
    """True when every held connection is open and received a line after `since`."""
    return all(c["state"] == "open" and (c["last_line_at"] or 0) > since
               for c in report["connections"])


def ours(bridge: str) -> list[dict[str, Any]]:
    """The entries of `bridge` with our cookie."""
    return [f for f in dump_flows(bridge) if f["cookie"] >> 56 == COOKIE_APP]


def key(flow: dict[str, Any]) -> Key:
    """What makes an entry the same entry: cookie, table, priority, match and actions."""
    return (flow["cookie"], flow["table"], flow["priority"],
            tuple(sorted(flow["match"].items())), tuple(flow["actions"]))


def kind_of(value: int) -> int:
    """The kind byte of one of our cookies."""
    return (value >> 48) & 0xFF


def snapshot(lab: Lab) -> dict[str, list[dict[str, Any]]]:
    """Our entries in every switch of the lab."""
    return {bridge: ours(bridge) for bridge in lab.bridges}


def table_differences(before: dict[str, list[dict[str, Any]]],
                      after: dict[str, list[dict[str, Any]]],
                      newcomer: str) -> list[str]:
    """How `after` differs from `before`, switch by switch, beyond what time explains.

    Allowed: an entry with a timeout that is gone (it idled out), with the reverse entry of a
    gone forward one (its binding was retired), new per-flow entries of flows from the
    address `newcomer` (the connections a test opened after `before`), and any change of the
    entries that follow the decision (FOLLOW_DECISION)."""
    problems = []
    for bridge, flows in after.items():
        old = {key(f): f for f in before.get(bridge, [])}
        new = {key(f): f for f in flows}
        gone_idents = {f["cookie"] & 0xFFFF_FFFF_FFFF for k, f in old.items()
                       if k not in new and f["idle_timeout"] + f["hard_timeout"] > 0}
        for k, f in old.items():
            if kind_of(f["cookie"]) in FOLLOW_DECISION:
                continue
            timed = f["idle_timeout"] + f["hard_timeout"] > 0
            retired = kind_of(f["cookie"]) == CookieKind.AFFINITY_REV and \
                f["cookie"] & 0xFFFF_FFFF_FFFF in gone_idents
            if k not in new and not timed and not retired:
                problems.append(f"{bridge}: missing {f['text']}")
        for k, f in new.items():
            fresh = kind_of(f["cookie"]) in PER_FLOW and newcomer in f["match"].values()
            if k not in old and not fresh and kind_of(f["cookie"]) not in FOLLOW_DECISION:
                problems.append(f"{bridge}: new {f['text']}")
    return problems


def duplicates(tables: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Entries of one switch with the same table, priority and match."""
    found = []
    for bridge, flows in tables.items():
        seen = Counter((f["table"], f["priority"], tuple(sorted(f["match"].items())))
                       for f in flows)
        found += [f"{bridge}: {k} x{n}" for k, n in seen.items() if n > 1]
    return found


def binding_mismatches(lab: Lab, tables: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Controller bindings without exactly one forward and one reverse entry at their ingress,
    and forward or reverse entries that belong to no listed binding there."""
    bridge_of = {d["dpid"]: n for n, d in lab.graph.nodes(data=True) if "dpid" in d}
    rows = [b for b in lab.rest("GET", "/bindings")[1] if b.get("source") == "controller"]
    wanted = Counter()
    for b in rows:
        for kind in (CookieKind.AFFINITY_FWD, CookieKind.AFFINITY_REV):
            wanted[(bridge_of[b["ingress"]], cookie(kind, b["id"]))] += 1
    held = Counter((bridge, f["cookie"]) for bridge, flows in tables.items() for f in flows
                   if kind_of(f["cookie"]) in (CookieKind.AFFINITY_FWD, CookieKind.AFFINITY_REV))
    problems = [f"binding entry {bridge} {ck:#x}: {held[(bridge, ck)]} in the switch"
                for (bridge, ck) in wanted if held[(bridge, ck)] != 1]
    problems += [f"orphan entry {bridge} {ck:#x} (x{n})" for (bridge, ck), n in held.items()
                 if (bridge, ck) not in wanted]
    return problems


def probe(lab: Lab, host: str, dsid: str, within: float) -> float | None:
    """Open new connections from `host` to `dsid` (each allowed 0.5 s) until one is served or
    `within` s passed; return the wall time the first one was served, or None."""
    script = (f"end=$(($(date +%s%N) + {int(within * 1e9)})); "
              f"while true; do if curl -sf -m 0.5 http://{dsid}:8000/ >/dev/null; then "
              "echo SERVED $(date +%s.%N); break; fi; "
              "if [ $(date +%s%N) -gt $end ]; then echo GAVE UP; break; fi; done")
    out = lab.host_cmd(host, script)
    found = re.search(r"SERVED ([0-9.]+)", out)
    return float(found.group(1)) if found else None


def stat(lab: Lab, name: str) -> int:
    """One counter of GET /stats (0 when absent)."""
    return int(lab.rest("GET", "/stats")[1].get(name, 0))


def repaired(lab: Lab, added: int, emptied: float, within: float) -> float:
    """Wait for the table audit to add entries back (`reconcile_added` above `added`) and return
    how long after `emptied` it was seen; fail after `within` s. This times the controller's
    repair alone: how soon a new connection is served after it also depends on the host's
    neighbour cache and the switch's datapath (a CI run's probe was served 2.4 s after a repair
    that came 0.7 s after del-flows)."""
    wait_until(lambda: stat(lab, "reconcile_added") > added, within,
               f"no entry re-added within {within} s of del-flows")
    return time.time() - emptied


def wait_away(seconds: float) -> None:
    """The controller stays away this long (a deliberate outage, not a wait for a state)."""
    time.sleep(seconds)

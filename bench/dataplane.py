"""Dataplane benchmark (issue 5): first-byte time, new connections per second and flow-table
size per affinity mode, all on the same Mininet network under the real controller.

    sudo .venv/bin/python bench/dataplane.py [--quick]

Figure 2 on userspace Open vSwitch; svc1 (D-SID 10.0.100.1:8000) with instances at e2
(10.0.0.21) and e3 (10.0.0.31), each a tiny epoll server (`bench/dataplane_proto.py serve`:
reply its name and close) so that the service itself costs next to nothing. The bench
registers the instances and reports their metrics itself (no D-MA, metrics never stale). The
client is c1 at r1. Modes, one after another on the same network, switched with
`PUT /dyncast/v1/services/svc1`:
- `static`: the floor, a pre-installed wildcard rewrite at r1 (ovs-ofctl, priority above ours)
  to e2 and back: no controller, no per-flow state;
- `reactive`, `learn`, `bucket`: the controller's dataplanes.
Per mode: the median connect()-to-first-byte time over N fresh sequential connections; the
new connections per second one epoll client sustains with 64 in flight, counting only those
answered by an instance of the decision; the packet-ins for the D-SID (`packet_in_dsid`); and
the entries at r1 while N concurrent connections are open (N = 100, 1000, 10000). Ratios are
against `static`, measured in the same run. Results: bench/results/dataplane.txt.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mininet_tests.flowdump import dump_flows  # noqa: E402
from mininet_tests.harness import Lab, require_root_and_ovs  # noqa: E402
from mininet_tests.processes import wait_until  # noqa: E402
from topologies.figure2 import Figure2Topo, configure, figure2_graph, hosts_of  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "dataplane.txt"
PROTO = ROOT / "bench" / "dataplane_proto.py"
DSID, PORT = "10.0.100.1", 8000
INSTANCES = {"e2": ("10.0.0.21", "i1"), "e3": ("10.0.0.31", "i2")}
MODES = ("static", "reactive", "learn", "bucket")
CONFIG = """
[controller]
store_url = "sqlite:///dyncast.db"
stale_after_s = 86400

[[service]]
name = "svc1"
dsid = "10.0.100.1"
protocol = "tcp"
port = 8000
buckets = 64
affinity = { key = "5-tuple", idle_timeout = IDLE, hard_timeout = 0 }
"""
STATIC = [  # at r1: every svc1 flow to e2 (r1 port 10 is the uplink), and back
    "table=0,priority=3000,tcp,nw_dst=10.0.100.1,tp_dst=8000,actions="
    "set_field:00:00:00:00:00:21->eth_dst,set_field:10.0.0.21->ip_dst,goto_table:1",
    "table=0,priority=3000,tcp,nw_src=10.0.0.21,tp_src=8000,actions="
    "set_field:02:dc:00:00:00:01->eth_src,set_field:10.0.100.1->ip_src,goto_table:1",
]

HOLD = r"""
import socket, struct, sys, time, selectors
n = int(sys.argv[1]); socks = []; sel = selectors.DefaultSelector()
for _ in range(n):
    s = socket.socket(); s.setblocking(False)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # exit: RST
    s.connect_ex(("10.0.100.1", 8000))
    sel.register(s, selectors.EVENT_WRITE); socks.append(s)
done, deadline = 0, time.time() + 60
while done < n and time.time() < deadline:
    for key, _ in sel.select(1):
        sel.unregister(key.fileobj)
        if key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            done += 1
print(f"open {done}", flush=True)
time.sleep(3600)
"""


def ofctl(*args: str) -> str:
    """Run ovs-ofctl (OpenFlow 1.3) and return its output."""
    done = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", *args], capture_output=True,
                          text=True, timeout=30, check=True)
    return done.stdout


def set_mode(lab: Lab, mode: str, idle: float) -> None:
    """Switch svc1 to `mode` (static: reactive underneath, overridden at r1)."""
    svc = lab.rest("GET", "/services/svc1")[1]
    svc["dataplane"] = "reactive" if mode == "static" else mode
    status, body = lab.rest("PUT", "/services/svc1", svc)
    assert status == 200, body
    for rule in STATIC:
        if mode == "static":
            ofctl("add-flow", "r1", rule)
        else:
            ofctl("--strict", "del-flows", "r1", rule.split(",actions=")[0])
    time.sleep(1.0)  # the new mode's entries installed
    wait_no_per_flow(idle)  # and the previous mode's bindings idled out (they keep affinity)


def client(lab: Lab, *args: str) -> dict[str, Any]:
    """Run the prototype's client in c1 and return its JSON."""
    out = lab.host_cmd("c1", f"{sys.executable} {PROTO} client {' '.join(args)}")
    line = next((x for x in out.splitlines() if x.startswith("{")), None)
    if line is None:
        raise RuntimeError(f"client printed: {out!r}")
    return dict(json.loads(line))


def svc_entries_at_r1() -> tuple[int, int]:
    """(all entries, per-flow entries) r1 holds for svc1: per-service, per-bucket and per-instance
    entries, plus per-flow ones (reactive bindings in table 0, learned entries and pins in 2)."""
    total = per_flow = 0
    for f in dump_flows("r1"):
        if f["table"] not in (0, 2, 3, 4) or f["priority"] in (0, 50000, 60000):
            continue
        total += 1
        if (f["table"] == 0 and f["priority"] == 2000) or f["table"] == 2:
            per_flow += 1
    return total, per_flow


def wait_no_per_flow(idle: float) -> None:
    """Wait until r1 holds no per-flow entry of svc1 (earlier runs' entries idle out), so that
    each measurement starts from the same switch state."""
    wait_until(lambda: svc_entries_at_r1()[1] == 0, idle + 15,
               "per-flow entries at r1 idled out", interval=0.5)


def table_size(lab: Lab, n: int, idle: float) -> tuple[int, int, int, int]:
    """Open n concurrent connections from c1; return (opened, entries at r1 then, of which
    per-flow, decision changes meanwhile)."""
    wait_no_per_flow(idle)
    changes0 = lab.rest("GET", "/stats")[1].get("decision_changes", 0)
    proc = lab.popen("c1", [sys.executable, "-c", HOLD, str(n)], f"hold{n}",
                     ready=r"^open ", timeout=90)
    found = re.search(r"^open (\d+)", proc.log(), re.MULTILINE)
    opened = int(found.group(1)) if found else 0
    time.sleep(1.0)
    total, per_flow = svc_entries_at_r1()
    changes = lab.rest("GET", "/stats")[1].get("decision_changes", 0) - changes0
    lab.stop_process(proc)
    wait_closed(lab)
    return opened, total, per_flow, changes


def wait_closed(lab: Lab) -> None:
    """Wait until c1's connections to the D-SID have closed (TIME-WAIT aside): their closing
    packets would otherwise still arrive under the next mode's entries."""
    states = " ".join(f"state {s}" for s in ("syn-sent", "established", "fin-wait-1",
                                              "fin-wait-2", "close-wait", "last-ack", "closing"))
    wait_until(lambda: not lab.host_cmd("c1", f"ss -Htn {states} dst {DSID}").strip(), 30,
               lambda: "c1's connections to the D-SID closed: " + lab.host_cmd(
                   "c1", f"ss -Htn {states} dst {DSID} | awk '{{print $1}}' | sort | uniq -c"),
               interval=0.5)


def measure(lab: Lab, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Everything for one mode."""
    set_mode(lab, mode, args.idle)
    pin0 = lab.rest("GET", "/stats")[1].get("packet_in_dsid", 0)
    lat = client(lab, "latency", "--n", str(args.n), "--gap", "0.005")
    wait_no_per_flow(args.idle)
    rate = client(lab, "rate", "--seconds", str(args.seconds), "--inflight", "64")
    wait_closed(lab)
    pin = lab.rest("GET", "/stats")[1].get("packet_in_dsid", 0) - pin0
    allowed = {"i1"} if mode == "static" else {"i1", "i2"}
    placed = sum(v for k, v in rate.get("served", {}).items() if k in allowed)
    row: dict[str, Any] = {
        "mode": mode, "first_byte_ms": round(1000 * statistics.median(lat["times"]), 3),
        "first_byte_errors": sum(lat["errors"].values()),
        "conn_per_s": round(rate.get("rate", 0)), "misplaced": rate.get("done", 0) - placed,
        "rate_errors": rate.get("errors"), "packet_in_dsid": pin, "entries": {}}
    for n in args.sizes:
        row["entries"][n] = table_size(lab, n, args.idle)
    return row


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 1 if a mode failed to work (errors, misplaced or no answers)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: small N, short rates")
    ap.add_argument("--n", type=int, default=300, help="connections for the first-byte median")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args(argv)
    args.sizes = [100, 1000, 10000]
    args.idle = 20  # held connections are idle: their entries must outlive the opening of N
    if args.quick:
        args.n, args.seconds, args.sizes, args.idle = 40, 1.0, [100], 5
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # tear the network down
    require_root_and_ovs()
    lab = Lab("bench-dataplane")
    rows: list[dict[str, Any]] = []
    try:
        config = lab.artifacts / "dataplane.toml"
        config.write_text(CONFIG.replace("IDLE", str(args.idle)))
        lab.graph = figure2_graph()
        ctl = lab.start_controller(config)
        lab.build_net(Figure2Topo(), ctl.ofp_port, configure=configure)
        lab.wait_topology()
        for host, (dbid, name) in INSTANCES.items():
            lab.popen(host, [sys.executable, str(PROTO), "serve", "--bind", dbid, "--name",
                             name], "serve", ready=r"^serving ")
            lab.rest("POST", "/instances", {"dsid": DSID, "dbid": dbid, "dma": "bench"})
            lab.rest("POST", "/metrics", {"dbid": dbid, "cpu": 0.0, "sessions": 0, "queue": 0,
                                          "capacity": 100})
        assert hosts_of(lab.graph, "client")
        wait_until(lambda: all(i["location"] and i["state"] == "active"
                               for i in lab.rest("GET", "/instances")[1]), 20,
                   "instances located and active")
        client(lab, "latency", "--n", "30", "--gap", "0.005")  # warm caches and ARP
        for mode in MODES:
            print(f"== {mode}", flush=True)
            rows.append(measure(lab, mode, args))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        problems = lab.close()
    report = render(rows, args)
    print(report)
    if not args.quick:
        RESULTS.write_text(report)
    broken = [r["mode"] for r in rows if r["first_byte_errors"] or r["misplaced"]
              or not r["conn_per_s"]]
    if problems or broken or len(rows) != len(MODES):
        print(f"FAILED: modes {broken}; teardown: {problems}")
        return 1
    return 0


def render(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The results table, ratios against `static`."""
    base = next((r for r in rows if r["mode"] == "static"), None)
    lines = [f"dataplane benchmark ({time.strftime('%Y-%m-%d %H:%M')}, Figure 2, userspace OVS, "
             f"{args.n} sequential connections, {args.seconds:g} s rate runs with 64 in flight)",
             "entries@N: all svc1 entries at r1 with N connections open (of which per-flow; "
             "decision changes meanwhile, if any), starting with no per-flow entry left",
             "mode      first-byte ms  vs static  conn/s  vs static  misplaced  packet-ins  "
             + "  ".join(f"{'entries@' + str(n):<34}" for n in args.sizes)]
    for r in rows:
        lat = r["first_byte_ms"] / base["first_byte_ms"] if base else float("nan")
        rate = r["conn_per_s"] / base["conn_per_s"] if base and base["conn_per_s"] else 0.0
        sizes = "  ".join(entries_cell(*r["entries"][n]) for n in args.sizes)
        lines.append(f"{r['mode']:<9} {r['first_byte_ms']:>13.3f}  {lat:>8.2f}x  "
                     f"{r['conn_per_s']:>6}  {rate:>8.2f}x  {r['misplaced']:>9}  "
                     f"{r['packet_in_dsid']:>10}  {sizes}")
    return "\n".join(lines) + "\n"


def entries_cell(opened: int, total: int, per_flow: int, changes: int) -> str:
    """One entries@N cell of the table."""
    note = f"{opened} open" + (f", {changes} changes" if changes else "")
    return f"{total:>6} ({per_flow} per-flow; {note})".ljust(34)


if __name__ == "__main__":
    sys.exit(main())

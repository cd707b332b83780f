"""Dataplane benchmark (issue 5): first-byte time, new connections per second and flow-table
size per affinity mode, all on the same Mininet network under the real controller.

    sudo .venv/bin/python bench/dataplane.py [--quick]

Figure 2 on userspace Open vSwitch; svc1 (D-SID 10.0.100.1:8000) with instances at e2
(10.0.0.21) and e3 (10.0.0.31), each a tiny epoll server (`bench/dataplane_hosts.py serve`:
reply its name and close) so that the service itself costs next to nothing. The bench
registers the instances and reports their metrics itself (no D-MA, metrics never stale). The
client is c1 at r1. Modes on the same network, switched with `PUT /dyncast/v1/services/svc1`,
in interleaved rounds (each round runs every mode once, in a shuffled order):
- `static`: the floor, a pre-installed wildcard rewrite at r1 (ovs-ofctl, priority above ours)
  to e2 and back: no controller, no per-flow state;
- `reactive`, `learn`, `bucket`, `conntrack`: the controller's dataplanes (`conntrack` keeps
  its per-connection state in Open vSwitch's connection tracker, not in r1's flow table).
Per mode and round: the median connect()-to-first-byte time over N fresh sequential
connections and the new connections per second one epoll client sustains with 64 in flight,
counting only those answered by an instance of the decision; the ratios against `static` are
taken per round and their median reported. Per mode: the packet-ins for the D-SID
(`packet_in_dsid`) and the entries at r1 while N concurrent connections are open (N = 100,
1000, 10000). Results: bench/results/dataplane.txt (and .json).
"""

from __future__ import annotations

import argparse
import json
import random
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

from bench.dataplane_hosts import DSID  # noqa: E402
from controller.dataplane.rules import OVS_MAX_IDLE_S  # noqa: E402
from mininet_tests.flowdump import dump_flows  # noqa: E402
from mininet_tests.harness import Lab, require_root_and_ovs  # noqa: E402
from mininet_tests.processes import wait_until  # noqa: E402
from topologies.figure2 import Figure2Topo, configure, figure2_graph, hosts_of  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "dataplane.txt"
HOSTS = ROOT / "bench" / "dataplane_hosts.py"
INSTANCES = {"e2": ("10.0.0.21", "i1"), "e3": ("10.0.0.31", "i2")}
MODES = ("static", "reactive", "learn", "bucket", "conntrack")
ZONE = 100 << 8 | 1  # svc1's tracker zone in `conntrack` mode: the low 16 bits of its D-SID
PER_FLOW_KINDS = {2, 3, 7, 8, 9}  # cookie kinds: reactive bindings, learned entries, pins
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

# no packet-in meter: the reactive mode punts every new connection (above 1000/s here), and the
# figures measure the dataplanes, not the flood guard (docs/channels.md)
[channel]
punt_pps = 0
"""
STATIC = [  # at r1: every svc1 flow to e2 (r1 port 10 is the uplink), and back
    "table=0,priority=3000,tcp,nw_dst=10.0.100.1,tp_dst=8000,actions="
    "set_field:00:00:00:00:00:21->eth_dst,set_field:10.0.0.21->ip_dst,goto_table:1",
    "table=0,priority=3000,tcp,nw_src=10.0.0.21,tp_src=8000,actions="
    "set_field:02:dc:00:00:00:01->eth_src,set_field:10.0.100.1->ip_src,goto_table:1",
]

HOLD = r"""
import socket, struct, sys, time, selectors
# Open n connections to the D-SID and hold them, at most 200 connecting at once: a burst of
# thousands of SYNs makes the kernel and the switch drop and retry them for up to a minute,
# and entries of connections opened first would idle out before the count.
n = int(sys.argv[1]); socks = []; sel = selectors.DefaultSelector()
started = done = 0
start = time.time()
deadline = start + 60
while done < n and time.time() < deadline:
    while started < n and started - done < 200:
        s = socket.socket(); s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # exit: RST
        s.connect_ex(("10.0.100.1", 8000))
        sel.register(s, selectors.EVENT_WRITE); started += 1
    for key, _ in sel.select(1):
        sel.unregister(key.fileobj)
        if key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            done += 1; socks.append(key.fileobj)
        else:
            key.fileobj.close(); started -= 1  # refused or reset: try another
print(f"open {done} in {time.time() - start:.1f}", flush=True)
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
    svc["affinity"]["idle_timeout"] = idle
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
    """Run a client of bench/dataplane_hosts.py in c1 and return its JSON."""
    out = lab.host_cmd("c1", f"{sys.executable} {HOSTS} {' '.join(args)}")
    line = next((x for x in out.splitlines() if x.startswith("{")), None)
    if line is None:
        raise RuntimeError(f"client printed: {out!r}")
    return dict(json.loads(line))


def svc_entries_at_r1() -> tuple[int, int]:
    """(all entries, per-flow entries) r1 holds for svc1: per-service, per-bucket and per-instance
    entries, plus per-flow ones (reactive bindings in table 0, learned entries and pins in 2,
    told by their cookie kind)."""
    total = per_flow = 0
    for f in dump_flows("r1"):
        if f["table"] not in (0, 2, 3, 4) or f["priority"] in (0, 50000, 60000):
            continue
        total += 1
        if (f["cookie"] >> 48) & 0xFF in PER_FLOW_KINDS:
            per_flow += 1
    return total, per_flow


def wait_no_per_flow(idle: float) -> None:
    """Wait until r1 holds no per-flow entry of svc1 (earlier runs' entries idle out), and
    empty svc1's connection-tracker zone (where `conntrack` keeps its per-flow state: closed
    connections linger there ~30-45 s, and a SYN reusing the 5-tuple of one is handled as a
    reopening), so that each measurement starts from the same switch state."""
    wait_until(lambda: svc_entries_at_r1()[1] == 0, idle + 15,
               "per-flow entries at r1 idled out", interval=0.5)
    subprocess.run(["ovs-appctl", "dpctl/flush-conntrack", f"zone={ZONE}"], check=True,
                   capture_output=True, timeout=30)


def table_size(lab: Lab, mode: str, n: int, idle: float) -> tuple[int, int, int, int, float]:
    """Open n concurrent connections from c1; return (opened, entries at r1 then, of which
    per-flow, decision changes meanwhile, seconds the opening took). Entries of connections
    opened more than `idle` s before the count have idled out (held connections are silent)."""
    wait_no_per_flow(idle)
    changes0 = lab.rest("GET", "/stats")[1].get("decision_changes", 0)
    proc = lab.popen("c1", [sys.executable, "-c", HOLD, str(n)], f"hold-{mode}-{n}",
                     ready=r"^open ", timeout=90)
    found = re.search(r"^open (\d+) in ([\d.]+)", proc.log(), re.MULTILINE)
    opened, took = (int(found.group(1)), float(found.group(2))) if found else (0, 0.0)
    time.sleep(1.0)
    total, per_flow = svc_entries_at_r1()
    changes = lab.rest("GET", "/stats")[1].get("decision_changes", 0) - changes0
    lab.stop_process(proc)
    wait_closed(lab)
    print(f"{mode} {n}: the instances' connections left open after the client's RSTs: "
          f"{server_connections(lab)}; restarting them", flush=True)
    start_servers(lab)
    return opened, total, per_flow, changes, took


SERVERS: dict[str, Any] = {}  # host -> its instance's server process


def server_connections(lab: Lab) -> dict[str, int]:
    """Established connections each instance's host holds on the service port."""
    return {h: int(lab.host_cmd(h, "ss -Htn state established '( sport = :8000 )' | wc -l"))
            for h in INSTANCES}


LEFT_STATES = ("established", "syn-recv", "fin-wait-1", "fin-wait-2", "close-wait", "last-ack",
               "closing")  # a connection the instance still believes open (not TIME-WAIT)


def start_servers(lab: Lab) -> None:
    """(Re)start each instance's server, with no connection left. Most of the RSTs a held
    client sends when it is killed never reach the servers (7,152 of 10,000 connections were
    still open at e2 after `static`'s), and a killed server leaves its connections to the
    client behind as FIN-WAIT-1 orphans (1,971 at e2 and 2,805 at e3 after `bucket`'s 10,000),
    which answer a SYN reusing their client port with a challenge ACK instead of a SYN-ACK.
    The client resets them and connects a second later, in every mode since the `conntrack`
    pipeline passes a known connection's invalid packets (docs/benchmarks.md), but that
    second would count against the mode measured next; so they are destroyed (`ss -K`)."""
    for host, (dbid, name) in INSTANCES.items():
        if host in SERVERS:
            lab.stop_process(SERVERS[host])
        SERVERS[host] = lab.popen(host, [sys.executable, str(HOSTS), "serve", "--bind", dbid,
                                         "--name", name], "serve", ready=r"^serving ")
    states = " ".join(f"state {s}" for s in LEFT_STATES)
    for host in INSTANCES:
        lab.host_cmd(host, f"ss -K -Htn {states} '( sport = :8000 )' > /dev/null")
    left = {h: lab.host_cmd(h, f"ss -Htn {states} '( sport = :8000 )' | wc -l").strip()
            for h in INSTANCES}
    assert set(left.values()) == {"0"}, f"connections left at the instances: {left}"


def wait_closed(lab: Lab) -> None:
    """Wait until c1's connections to the D-SID have closed (TIME-WAIT aside): their closing
    packets would otherwise still arrive under the next mode's entries."""
    states = " ".join(f"state {s}" for s in ("syn-sent", "established", "fin-wait-1",
                                              "fin-wait-2", "close-wait", "last-ack", "closing"))
    wait_until(lambda: not lab.host_cmd("c1", f"ss -Htn {states} dst {DSID}").strip(), 30,
               lambda: "c1's connections to the D-SID closed: " + lab.host_cmd(
                   "c1", f"ss -Htn {states} dst {DSID} | awk '{{print $1}}' | sort | uniq -c"),
               interval=0.5)


def one_round(lab: Lab, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """One round of `mode`: the first-byte median and the connection rate."""
    set_mode(lab, mode, args.idle_rate)
    pin0 = lab.rest("GET", "/stats")[1].get("packet_in_dsid", 0)
    lat = client(lab, "latency", "--n", str(args.n), "--gap", "0.005")
    wait_no_per_flow(args.idle_rate)
    rate = client(lab, "rate", "--seconds", str(args.seconds), "--inflight", "64")
    wait_closed(lab)
    pin = lab.rest("GET", "/stats")[1].get("packet_in_dsid", 0) - pin0
    allowed = {"i1"} if mode == "static" else {"i1", "i2"}
    placed = sum(v for k, v in rate.get("served", {}).items() if k in allowed)
    return {"first_byte_ms": round(1000 * statistics.median(lat["times"]), 3),
            "first_byte_errors": sum(lat["errors"].values()),
            "conn_per_s": round(rate.get("rate", 0)), "misplaced": rate.get("done", 0) - placed,
            "rate_errors": rate.get("errors"), "packet_in_dsid": pin}


def measure(lab: Lab, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every mode: `rounds` interleaved rounds (each runs every mode once, in a shuffled order,
    so that a slow spell of the shared machine hits every mode), then the table sizes."""
    rows: dict[str, dict[str, Any]] = {
        m: {"mode": m, "rounds": [], "first_byte_errors": 0, "misplaced": 0,
            "packet_in_dsid": 0, "entries": {}} for m in MODES}
    shuffle = random.Random(1)
    for r in range(args.rounds):
        order = list(MODES)
        shuffle.shuffle(order)
        for mode in order:
            print(f"== round {r + 1}: {mode}", flush=True)
            got = one_round(lab, mode, args)
            print(json.dumps(got), flush=True)
            row = rows[mode]
            row["rounds"].append(got)
            for key in ("first_byte_errors", "misplaced", "packet_in_dsid"):
                row[key] += got[key]
    for mode in MODES:
        print(f"== entries: {mode}", flush=True)
        set_mode(lab, mode, args.idle)
        for n in args.sizes:
            rows[mode]["entries"][n] = table_size(lab, mode, n, args.idle)
    return [rows[m] for m in MODES]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 1 if a mode failed to work (errors, misplaced or no answers)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: small N, short rates")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of every mode")
    ap.add_argument("--n", type=int, default=100,
                    help="connections per round for the first-byte median")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000],
                    help="connections held open for the table sizes")
    args = ap.parse_args(argv)
    args.idle = 20  # held connections are idle: their entries must outlive the opening of N
    # Rate runs reuse source ports from 1024 up: a learned entry must outlive OVS's datapath
    # flow cache (max-idle), or a reused 5-tuple meets a stale one (docs/dataplanes.md,
    # pitfall 13).
    args.idle_rate = OVS_MAX_IDLE_S + 2
    if args.quick:
        args.rounds, args.n, args.seconds, args.idle = 1, 40, 1.0, 5
        args.sizes = args.sizes if "--sizes" in (argv or sys.argv) else [100]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # tear the network down
    require_root_and_ovs()
    lab = Lab("bench-dataplane")
    rows: list[dict[str, Any]] = []
    try:
        config = lab.artifacts / "dataplane.toml"
        config.write_text(CONFIG.replace("IDLE", str(args.idle_rate)))
        lab.graph = figure2_graph()
        ctl = lab.start_controller(config)
        lab.build_net(Figure2Topo(), ctl.ofp_port, configure=configure)
        lab.wait_topology()
        start_servers(lab)
        for dbid, _ in INSTANCES.values():
            lab.rest("POST", "/instances", {"dsid": DSID, "dbid": dbid, "dma": "bench"})
            lab.rest("POST", "/metrics", {"dbid": dbid, "cpu": 0.0, "sessions": 0, "queue": 0,
                                          "capacity": 100})
        assert hosts_of(lab.graph, "client")
        wait_until(lambda: all(i["location"] and i["state"] == "active"
                               for i in lab.rest("GET", "/instances")[1]), 30,
                   lambda: "instances located and active: " + json.dumps(
                       [{k: i.get(k) for k in ("dbid", "location", "state")}
                        for i in lab.rest("GET", "/instances")[1]]))
        client(lab, "latency", "--n", "30", "--gap", "0.005")  # warm caches and ARP
        rows = measure(lab, args)
    finally:
        problems = lab.close()
    report = render(rows, args) if rows else ""
    print(report)
    if not args.quick and rows:
        RESULTS.write_text(report)
        RESULTS.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    broken = [r["mode"] for r in rows if r["first_byte_errors"] or r["misplaced"]
              or not all(x["conn_per_s"] for x in r["rounds"])]
    if problems or broken or len(rows) != len(MODES):
        print(f"FAILED: modes {broken}; teardown: {problems}")
        return 1
    return 0


def ratios(rows: list[dict[str, Any]], mode: str, key: str) -> list[float]:
    """Per-round ratio of `key` for `mode` against `static` in the same round."""
    base = next(r for r in rows if r["mode"] == "static")["rounds"]
    mine = next(r for r in rows if r["mode"] == mode)["rounds"]
    return [m[key] / b[key] if b[key] else float("nan") for m, b in zip(mine, base, strict=True)]


def ratio_cell(values: list[float]) -> str:
    """Median ratio, and the range over rounds when there are several."""
    mid = f"{statistics.median(values):.2f}x"
    if len(values) < 2:
        return mid
    return f"{mid} ({min(values):.2f}-{max(values):.2f})"


def render(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The results table: medians over rounds; ratios against `static`, per round."""
    lines = [f"dataplane benchmark ({time.strftime('%Y-%m-%d %H:%M')}, Figure 2, userspace OVS, "
             f"{args.rounds} interleaved round{'s' if args.rounds != 1 else ''} of every mode, "
             f"each {args.n} sequential "
             f"connections and a {args.seconds:g} s rate run with 64 in flight)",
             "first byte and conn/s: median over rounds; vs static: median of the per-round "
             "ratios (range over rounds)",
             "entries@N: all svc1 entries at r1 with N connections open (of which per-flow; "
             "seconds the opening took; decision changes meanwhile, if any), starting with no "
             f"per-flow entry left; idle timeout {args.idle} s",
             f"{'mode':<9} {'first-byte ms':>13}  {'vs static':<20} {'conn/s':>6}  "
             f"{'vs static':<20} misplaced  packet-ins  "
             + "  ".join(f"{'entries@' + str(n):<40}" for n in args.sizes)]
    for r in rows:
        fb = statistics.median(x["first_byte_ms"] for x in r["rounds"])
        cps = round(statistics.median(x["conn_per_s"] for x in r["rounds"]))
        sizes = "  ".join(entries_cell(*r["entries"][n]) for n in args.sizes)
        fb_vs = ratio_cell(ratios(rows, r["mode"], "first_byte_ms"))
        cps_vs = ratio_cell(ratios(rows, r["mode"], "conn_per_s"))
        lines.append(f"{r['mode']:<9} {fb:>13.3f}  {fb_vs:<20} {cps:>6}  {cps_vs:<20} "
                     f"{r['misplaced']:>9}  {r['packet_in_dsid']:>10}  {sizes}")
    return "\n".join(lines) + "\n"


def entries_cell(opened: int, total: int, per_flow: int, changes: int, took: float) -> str:
    """One entries@N cell of the table."""
    note = f"{opened} open in {took:.0f} s" + (f", {changes} changes" if changes else "")
    return f"{total:>6} ({per_flow} per-flow; {note})".ljust(40)


if __name__ == "__main__":
    sys.exit(main())

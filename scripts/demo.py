"""The Dyncast demo on the draft's Figure 2 (run by scripts/demo.sh, as root, in .venv).

Builds Figure 2 in Mininet on userspace Open vSwitch, starts the controller, the demo service
instances and their D-MAs at edge 2 and edge 3, and clients at D-Router 1 and 2. It prints each
ingress's decision with its cost breakdown and where the clients' flows went; then it loads the
instance serving a long-lived connection and shows new flows moving while the old one stays.
Everything it starts is torn down at the end (by pid, bridge name and link name).

    scripts/demo.sh [--dataplane reactive|learn|bucket] [--overlay]

--dataplane picks who keeps affinity (see the README's Dataplanes); --overlay runs the draft's
overlay sub-mode: the instances answer on the D-SID themselves (it is on their loopback) and
the ingress steers by MPLS label, with no address translation (implies --dataplane learn
unless bucket is given).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mininet_tests.harness import Lab, require_root_and_ovs  # noqa: E402
from mininet_tests.processes import bin_path, wait_until  # noqa: E402
from topologies.figure2 import Figure2Topo, configure, figure2_graph, hosts_of  # noqa: E402

SERVICES = {"svc1": "10.0.100.1", "svc2": "10.0.100.2"}
INGRESS = {1: "r1 (D-Router 1)", 2: "r2 (D-Router 2)"}
CLIENTS = ["c1", "c2", "c3", "c4"]


def table(rows: list[list[str]], header: list[str]) -> str:
    """A plain-text table with aligned columns."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    line = "  ".join("-" * w for w in widths)
    fmt = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True))  # noqa: E731
    return "\n".join([fmt(header), line, *(fmt(r) for r in rows)])


def decisions_table(lab: Lab) -> str:
    """Each ingress's decision per service with the cost breakdown of every instance."""
    rows = []
    for d in lab.rest("GET", "/decisions")[1]:
        if d["ingress"] not in INGRESS:
            continue
        for c in d["candidates"]:
            rows.append([INGRESS[d["ingress"]], d["service"], c["dbid"], c["state"],
                         _num(c["network_ms"]), _num(c["compute_ms"]), _num(c["cost"]),
                         f"{c['share'] * 100:.0f}%", c["reason"]])
    return table(rows, ["ingress", "service", "instance (D-BID)", "state", "network ms",
                        "compute ms", "cost", "new flows", "why"])


def _num(value: float | None) -> str:
    """A number with one decimal, or '-'."""
    return "-" if value is None else f"{value:.1f}"


def run_clients(lab: Lab, requests: int) -> str:
    """Every client makes `requests` new connections to each service; tabulate who served."""
    rows = []
    for host in CLIENTS:
        ingress = lab.graph.nodes[host]["switch"]
        for name, dsid in SERVICES.items():
            out = lab.host_cmd(host, f"{bin_path('dyncast-client')} --url http://{dsid}:8000/ "
                                     f"--requests {requests} --concurrency 2")
            summary = json.loads(out.strip().splitlines()[-1]).get("summary", {})
            served = ", ".join(f"{k} x{v}" for k, v in sorted(summary.get("served", {}).items()))
            lat = summary.get("latency_ms") or {}
            rows.append([host, ingress, name, served or "-", str(summary.get("errors", "?")),
                         _num(lat.get("mean")), _num(lat.get("p95"))])
    return table(rows, ["client", "ingress", "service", "served by", "errors", "mean ms",
                        "p95 ms"])


def shares_at(lab: Lab, service: str, dpid: int) -> dict[str, float]:
    """Shares of new flows for a service at one ingress."""
    for d in lab.rest("GET", f"/decisions/{service}")[1]:
        if d["ingress"] == dpid:
            return {c["dbid"]: c["share"] for c in d["candidates"] if c["share"] > 0}
    return {}


def set_dataplane(lab: Lab, dataplane: str, overlay: bool) -> None:
    """Switch both services to `dataplane` (and overlay) through the REST API."""
    for name in SERVICES:
        svc = lab.rest("GET", f"/services/{name}")[1]
        svc.update(dataplane=dataplane, overlay=overlay)
        status, body = lab.rest("PUT", f"/services/{name}", svc)
        if status != 200:
            raise RuntimeError(f"PUT /services/{name}: {status} {body}")


def start_edges(lab: Lab, overlay: bool) -> None:
    """Demo services and D-MAs at e2 and e3; in overlay mode each instance listens on its
    D-SID (on the host's loopback) and its D-MA reads its stats there."""
    for host in hosts_of(lab.graph, "edge"):
        if not overlay:
            lab.start_edge(host)
            continue
        for svc in sorted(lab.graph.nodes[host]["dbids"]):
            dsid = SERVICES[svc]
            lab.popen(host, lab.demo_service_argv(dsid, f"{svc}@{host}"), f"service-{svc}",
                      ready=r"^serving ")
        lab.start_dma(host, {SERVICES[s]: d for s, d in lab.graph.nodes[host]["dbids"].items()},
                      stats_on_dsid=True)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return 0 when every step did what it should."""
    ap = argparse.ArgumentParser(prog="scripts/demo.sh", description="The Figure 2 demo.")
    ap.add_argument("--dataplane", choices=("reactive", "learn", "bucket"), default=None)
    ap.add_argument("--overlay", action="store_true")
    args = ap.parse_args(argv)
    dataplane = args.dataplane or ("learn" if args.overlay else "reactive")
    if args.overlay and dataplane == "reactive":
        ap.error("--overlay needs --dataplane learn or bucket")
    require_root_and_ovs()
    lab = Lab("demo")
    ok = True
    try:
        print(f"== starting the controller, Figure 2 (userspace OVS), instances and D-MAs "
              f"(dataplane {dataplane}{', overlay' if args.overlay else ''})")
        lab.graph = figure2_graph(extra_clients=2)
        ctl = lab.start_controller(ROOT / "examples" / "dyncast.toml")
        lab.build_net(Figure2Topo(extra_clients=2), ctl.ofp_port,
                      configure=lambda net: configure(net, lab.graph, args.overlay))
        for host in hosts_of(lab.graph, "edge"):
            lab.add_mgmt_link(host, lab.graph.nodes[host]["mgmt"])
        lab.wait_topology()
        if dataplane != "reactive":
            set_dataplane(lab, dataplane, args.overlay)
        start_edges(lab, args.overlay)
        all_active = lambda: all(i["state"] == "active" and i["location"]  # noqa: E731
                                 for i in lab.rest("GET", "/instances")[1])
        wait_until(lambda: len(lab.rest("GET", "/instances")[1]) == 4 and all_active(), 30,
                   "instances registered, reporting and located")
        print(f"controller log: {ctl.log_path}")
        assert ctl.creds is not None
        print(f"credentials (agent keys, tokens; docs/security.md): {ctl.creds.folder}; "
              f"dyncastctl --token-file {ctl.creds.token_file}\n")
        print("== decisions per ingress (cost = network ms + compute ms; shares by "
              "(best/cost)^4 within 30 % of the best)")
        print(decisions_table(lab), "\n")
        print("== clients: 8 new connections each to each service")
        print(run_clients(lab, 8), "\n")

        print("== a long-lived connection from c1 to svc1, then its instance gets loaded")
        holder = lab.popen("c1", [bin_path("dyncast-client"), "--url", "http://10.0.100.1:8000/",
                                  "--hold", "15"], "hold", ready=r'"line"')
        first = json.loads(holder.log().splitlines()[0])["line"]
        dbid = {"svc1@e2": "10.0.0.21", "svc1@e3": "10.0.0.31"}[first]
        host = "e2" if dbid == "10.0.0.21" else "e3"
        print(f"c1's long-lived connection is served by {first} ({dbid}); "
              f"setting extra_load=6 on it")
        target = "10.0.100.1" if args.overlay else dbid  # in overlay it listens on the D-SID
        lab.host_cmd(host, f"curl -s -X POST -d '{{\"extra_load\": 6}}' "
                           f"http://{target}:8000/load")
        start = time.monotonic()
        wait_until(lambda: dbid not in shares_at(lab, "svc1", 1), 20,
                   "the decision at r1 to move away from the loaded instance")
        print(f"decision at r1 moved away from {dbid} after {time.monotonic() - start:.1f} s "
              "(next D-MA report)\n")
        print(decisions_table(lab), "\n")
        print("== clients again: new flows follow the new decision")
        print(run_clients(lab, 8), "\n")
        holder.popen.wait(timeout=30)
        lines = [json.loads(x) for x in holder.log().splitlines() if x.startswith('{"line"')]
        kept = {x["line"] for x in lines}
        ok = kept == {first}
        print(f"== the long-lived connection received {len(lines)} lines, all from "
              f"{', '.join(sorted(kept))}: affinity {'held' if ok else 'BROKEN'}")
        stats = lab.rest("GET", "/stats")[1]
        print("controller counters:", ", ".join(f"{k}={v}" for k, v in sorted(stats.items())))
    finally:
        problems = lab.close()
        if problems:
            ok = False
            print("teardown problems:\n" + "\n".join(problems))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

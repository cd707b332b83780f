"""What the controller saw during a steering run, against what was at the sites (issue 22).

Boundary: bench only. `Tracer` polls the controller's REST API (`/instances`, `/decisions`)
every POLL_S while a run's clients send (bench/steering_sweep.py `--trace`), and keeps each
site's report, the flows placed since and the decisions' costs and shares. `analyse` sets them
against the clients' records: a request is taken to be at its site from its scheduled start
until its answer (so the network's part and the TCP handshake count as being there), keep-alive
requests included. It says:

- how far the controller's count of requests at each site (its last report aged as the core
  ages it, plus the flows placed since that it counts as still there) was from the requests
  there at the same moment;
- for the requests sent to each site, how many requests the *other* sites held when each
  arrived: whether a site with a free worker was passed over.

    sudo .venv/bin/python bench/steering_sweep.py --scenarios hot-site --policies dyncast \\
        --loads 0.6 --seeds 1 --duration 15 --tag trace --trace
    .venv/bin/python bench/steering_trace.py --tag trace  # the analysis of the saved traces
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.steering_net import NETWORKS, SERVICE  # noqa: E402
from controller.model import Metrics  # noqa: E402
from controller.selection.placements import hold_s, still_there  # noqa: E402

POLL_S = 0.1  # how often the controller is asked while the clients send
RESULTS = ROOT / "bench" / "results"


def trace_path(tag: str) -> Path:
    """Where the traces of a sweep tagged `tag` are saved."""
    return RESULTS / ("steering-trace-" + tag + ".json")


class Tracer:
    """Polls one controller during one run (a thread; `stop` ends it and returns the polls)."""

    def __init__(self, rest: Any, dbids: dict[str, str], base_delay_ms: float) -> None:
        self.rest = rest  # Lab.rest
        self.site_of = dbids  # D-BID -> site host
        self.base_delay_ms = base_delay_ms  # the service's (a report without service_ms)
        self.polls: list[dict[str, Any]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="trace", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(POLL_S):
            at = time.time()
            try:
                instances = self.rest("GET", "/instances")[1]
                decisions = self.rest("GET", f"/decisions/{SERVICE}")[1]
            except Exception:  # a missed poll is counted, not fatal
                self.errors += 1
                continue
            self.polls.append({"at": at, "sites": self._sites(instances, at),
                               "decisions": self._decisions(decisions)})

    def _sites(self, instances: list[dict[str, Any]], at: float) -> dict[str, Any]:
        out = {}
        for inst in instances:
            site, m = self.site_of.get(inst["dbid"]), inst.get("metrics") or {}
            if site is None or inst.get("service") != SERVICE:
                continue
            reported_at = inst.get("metrics_at")
            age = None if reported_at is None else at - reported_at
            out[site] = {"sessions": m.get("sessions"), "queue": m.get("queue"),
                         "capacity": m.get("capacity"), "service_ms": m.get("service_ms"),
                         "placed": inst.get("placed_since_report", 0),
                         "age_s": None if age is None else round(age, 3),
                         "seen": seen_count(m, age, inst.get("placed_since_report", 0),
                                            self.base_delay_ms)}
        return out

    def _decisions(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"ingress": d["ingress"], "computed_at": d["computed_at"],
                 "candidates": {self.site_of.get(c["dbid"], c["dbid"]):
                                [c["network_ms"], c["compute_ms"], c["share"]]
                                for c in d["candidates"]}} for d in rows]

    def stop(self) -> list[dict[str, Any]]:
        """End the polling; the polls made."""
        self._stop.set()
        self._thread.join()
        return self.polls


def seen_count(report: dict[str, Any], age_s: float | None, placed: int,
               base_delay_ms: float) -> int | None:
    """The requests the controller counts at a site: its last report aged to now as the core
    ages it (controller/selection/placements.py: `still_there`, each request holding a worker
    for the reported service time), plus the flows placed since that are likely still there
    (GET /instances `placed_since_report`). None without a raw report."""
    if report.get("sessions") is None or report.get("score") is not None:
        return None
    metrics = Metrics(sessions=report["sessions"], queue=report.get("queue") or 0,
                      capacity=report.get("capacity") or 1, service_ms=report.get("service_ms"),
                      processing_delay_ms=report.get("processing_delay_ms"))
    left = still_there(metrics, age_s, hold_s(metrics, base_delay_ms))
    return (metrics.sessions + metrics.queue if left is None else left) + placed


def at_site(requests: list[dict[str, Any]], site: str, when: float) -> int:
    """Requests of `site` from their scheduled start to their answer at `when` (s after the
    clients' start)."""
    return sum(1 for r in requests
               if r["inst"] == site and r["t"] <= when < r["t"] + r["ms"] / 1000.0)


def view_error(trace: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per site: the controller's count (report + placed since) minus the requests there, over
    the polls while the clients sent: median, the share within one request, the polls."""
    start, requests = trace["start_at"], answered(trace)
    diffs: dict[str, list[int]] = {}
    for poll in trace["polls"]:
        when = poll["at"] - start
        if not 0.0 <= when <= trace["duration_s"]:
            continue
        for site, s in poll["sites"].items():
            if s["seen"] is not None:
                diffs.setdefault(site, []).append(s["seen"] - at_site(requests, site, when))
    return {site: {"median": statistics.median(d),
                   "within_one": sum(abs(x) <= 1 for x in d) / len(d), "polls": len(d)}
            for site, d in sorted(diffs.items())}


def answered(trace: dict[str, Any]) -> list[dict[str, Any]]:
    """The requests of a trace that were answered by a named instance."""
    return [r for r in trace["requests"] if r["ms"] is not None and r["inst"]]


def passed_over(trace: dict[str, Any], capacity: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Per site: its fresh requests, and for each other site the share of them that arrived
    while that site held fewer requests than its workers (a free worker)."""
    requests = answered(trace)
    out: dict[str, dict[str, Any]] = {}
    for site in sorted({r["inst"] for r in requests if not r["ka"]}):
        mine = [r for r in requests if r["inst"] == site and not r["ka"]]
        free = {other: sum(at_site(requests, other, r["t"]) < workers for r in mine) / len(mine)
                for other, workers in sorted(capacity.items()) if other != site}
        ahead = Counter(at_site(requests, site, r["t"]) - 1 for r in mine)
        out[site] = {"requests": len(mine), "other_free": free,
                     "ahead_median": statistics.median(sorted(ahead.elements()))}
    return out


def run_record(run: dict[str, Any], polls: list[dict[str, Any]], start_at: float,
               records: list[dict[str, Any]], errors: int) -> dict[str, Any]:
    """One run's trace as saved: which run, the polls, and the clients' requests."""
    keys = ("network", "scenario", "policy", "target_load", "seed", "duration_s")
    return {**{k: run.get(k) for k in keys}, "start_at": start_at, "poll_errors": errors,
            "polls": polls,
            "requests": [{"t": r["t"], "ms": r["ms"], "inst": r["inst"], "src": r["src"],
                          "ka": "conn" in r} for r in records]}


def lines(traces: list[dict[str, Any]]) -> list[str]:
    """The analysis of saved traces, one block per run."""
    out = []
    for tr in traces:
        net = NETWORKS[tr["network"]]()
        capacity = {s.host: s.capacity for s in net.sites}
        out.append(f"== {tr['network']} {tr['scenario']} load {tr['target_load']:g} seed "
                   f"{tr['seed']} {tr['policy']}: {len(tr['polls'])} polls "
                   f"({tr['poll_errors']} failed), {len(answered(tr))} requests answered")
        for site, v in view_error(tr).items():
            out.append(f"  view of {site}: controller minus actual, median {v['median']:+g}; "
                       f"within one request at {v['within_one']:.0%} of {v['polls']} polls")
        for site, v in passed_over(tr, capacity).items():
            free = ", ".join(f"{o} {share:.0%}" for o, share in v["other_free"].items())
            out.append(f"  {v['requests']} fresh requests to {site} (median {v['ahead_median']:g}"
                       f" ahead of each there); arrived while another site had a free worker: "
                       f"{free}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the analysis of the traces saved under a tag."""
    ap = argparse.ArgumentParser(prog="steering_trace", description=__doc__.splitlines()[0])
    ap.add_argument("--tag", required=True, help="the sweep's --tag (with --trace)")
    args = ap.parse_args(argv)
    path = trace_path(args.tag)
    if not path.exists():
        ap.error(f"--tag: no {path.relative_to(ROOT)} (run the sweep with --trace)")
    traces = json.loads(path.read_text())["runs"]
    short = problems(traces)
    if short:
        print("steering_trace: not analysed: " + "; ".join(short), file=sys.stderr)
        return 1
    print("\n".join(lines(traces)))
    return 0


def problems(traces: list[dict[str, Any]]) -> list[str]:
    """What makes a trace unfit to analyse: a failed poll, or a site of its network the
    controller was never seen counting during the run."""
    out = []
    for tr in traces:
        name = f"{tr['scenario']} load {tr['target_load']:g} seed {tr['seed']} {tr['policy']}"
        if tr["poll_errors"]:
            out.append(f"{name}: {tr['poll_errors']} polls failed")
        missing = {s.host for s in NETWORKS[tr["network"]]().sites} - set(view_error(tr))
        if missing:
            out.append(f"{name}: no view of {sorted(missing)}")
    return out


if __name__ == "__main__":
    sys.exit(main())

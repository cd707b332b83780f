"""Metric reports per second accepted cluster-wide (issue 21) with 1, 2 and 3 members.

No switches and no Mininet: N members (`dyncast-manager`, Figure 2's configuration, cluster
on, authentication on) on one fresh PostgreSQL schema each round. Three D-MA threads, each
an agent of its own reporting for an instance it registered, POST signed single reports as
fast as they are answered, each to the members in turn (a D-MA's reports spread over the
members). Reported: reports accepted per second cluster-wide for each N, and its ratio to one
member, over `--rounds` rounds (range). Asserted preconditions: every report accepted (200,
counted); every member applies every change the others accepted (`changes_applied`; how long
after the D-MAs stopped is reported: the backlog each member works through); then a report to
an idle cluster is seen by every member within 2 s; after all was applied, every member holds
the same latest metrics (every field) for every instance: the last accepted report, whatever
order each member applied them in (`instances_disagreeing` 0; per member, how many of the
others' reports were older than the one held: `older_reports_not_applied`). Load average
before and after; the members' CPU seconds.
Results: bench/results/cluster_reports.{txt,json}.

    DYNCAST_TEST_PG_URL=... .venv/bin/python bench/cluster_reports.py [--seconds 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents.credset import CredentialSet  # noqa: E402
from mininet_tests.processes import ControllerProcess, wait_until  # noqa: E402
from mininet_tests.test_cluster import member_config  # noqa: E402
from tests.pgschema import fresh_schema  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MEMBERS = ("m1", "m2", "m3")
DSID = "10.0.100.1"  # Figure 2's svc1
DMAS = {"dma1": "10.0.0.21", "dma2": "10.0.0.22", "dma3": "10.0.0.23"}


def report(dbid: str, k: int) -> dict[str, Any]:
    """A D-MA's `k`th report: no two alike within a batch the feed publishes (PostgreSQL
    delivers identical notifications of one transaction once)."""
    return {"dbid": dbid, "cpu": k % 997 / 1000, "sessions": k % 8, "queue": 0,
            "capacity": 10}


def stat(proc: ControllerProcess, name: str) -> Any:
    """One of a member's /stats counters."""
    return proc.rest("GET", "/stats")[1].get(name, 0)


def cpu_s(pid: int) -> float:
    """A process's user + system CPU seconds so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(n: int, seconds: float, folder: Path, creds: CredentialSet) -> dict[str, Any]:
    """N members; the D-MAs report for `seconds`; the rate and the checks."""
    with fresh_schema("bench") as url:
        procs = [ControllerProcess(folder / m, member_config(folder / m, url, m), creds=creds)
                 for m in MEMBERS[:n]]
        try:
            for proc in procs:
                proc.start()
            for agent, dbid in DMAS.items():
                reg = {"dsid": DSID, "dbid": dbid, "dma": agent}
                assert procs[0].rest("POST", "/instances", reg)[0] == 201
            for proc in procs:  # registered everywhere (through the change feed)
                proc.owners.update(procs[0].owners)
                wait_until(lambda p=proc: all(p.rest("GET", f"/instances/{d}")[0] == 200
                                              for d in DMAS.values()), 10,
                           "an instance registered at m1 reaching every member")
            counts: dict[str, list[int]] = {a: [0, 0] for a in DMAS}  # accepted, refused
            at_member = [0] * n  # reports accepted at each member
            stop = time.perf_counter() + seconds
            cpu0 = sum(cpu_s(p.popen.pid) for p in procs if p.popen)

            def dma(agent: str, dbid: str) -> None:
                k = 0
                while time.perf_counter() < stop:
                    proc = procs[k % n]
                    status, body = proc.rest("POST", "/metrics", report(dbid, k))
                    ok = status == 200 and body.get("accepted") == 1
                    counts[agent][0 if ok else 1] += 1
                    at_member[k % n] += ok
                    k += 1

            start = time.perf_counter()
            threads = [threading.Thread(target=dma, args=item) for item in DMAS.items()]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            took = time.perf_counter() - start
            cpu = sum(cpu_s(p.popen.pid) for p in procs if p.popen) - cpu0
            accepted = sum(c[0] for c in counts.values())
            refused = sum(c[1] for c in counts.values())
            # every member applied every change the others accepted (the registrations at
            # m1, the reports at each): how long after the D-MAs stopped
            want = [3 * (i > 0) + accepted - at_member[i] for i in range(n)]
            wait_until(lambda: [stat(p, "changes_applied") for p in procs] == want, 60.0,
                       f"every member applying the others' changes ({want})",
                       )
            drained = time.perf_counter() - start - took
            views = [[json.dumps(p.rest("GET", f"/instances/{d}")[1].get("metrics"),
                                 sort_keys=True) for p in procs] for d in DMAS.values()]
            disagree = sum(len(set(v)) > 1 for v in views)  # asserted 0 (a problem in main)
            stale = [stat(p, "reports_stale") for p in procs]
            last = {**report(DMAS["dma1"], 0), "sessions": 99}
            assert procs[-1].rest("POST", "/metrics", last)[0] == 200
            seen_at = time.perf_counter()
            for proc in procs:
                wait_until(lambda p=proc: (p.rest("GET", f"/instances/{last['dbid']}")[1]
                                           .get("metrics") or {}).get("sessions") == 99, 2.0,
                           "a report at an idle cluster reaching every member within 2 s")
            seen = time.perf_counter() - seen_at
            errors = [e for p in procs for e in p.log_errors()]
        finally:
            for proc in procs:
                proc.stop()
    return {"members": n, "accepted": accepted, "refused": refused, "seconds": round(took, 2),
            "per_s": round(accepted / took, 1), "members_cpu_s": round(cpu, 2),
            "all_applied_after_s": round(drained, 2), "instances_disagreeing": disagree,
            "older_reports_not_applied": stale,
            "idle_report_seen_everywhere_s": round(seen, 3), "errors": errors}


def main() -> int:
    """Run the rounds; write the results; exit 1 if a precondition failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 round of 1 s, no results file written")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds = 1.0, 1
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-cluster-reports-") as tmp:
        creds = CredentialSet(Path(tmp) / "creds")
        for agent in DMAS:
            creds.signer(agent)  # the keys exist before the members read the agents table
        for r in range(args.rounds):
            for n in (1, 2, 3):
                rows.append({"round": r, **run(n, args.seconds, Path(tmp) / f"r{r}n{n}",
                                                creds)})
                print(json.dumps(rows[-1]), flush=True)
    summary: dict[str, Any] = {}
    for n in (1, 2, 3):
        rates = [x["per_s"] for x in rows if x["members"] == n]
        ratios = [x["per_s"] / y["per_s"] for x in rows for y in rows
                  if x["members"] == n and y["members"] == 1 and x["round"] == y["round"]]
        summary[str(n)] = {"per_s_median": statistics.median(rates), "per_s_range": [
            min(rates), max(rates)], "ratio_to_1_range": [round(min(ratios), 2),
                                                          round(max(ratios), 2)]}
    problems = [f"round {x['round']}, {x['members']} members: {x['refused']} refused"
                for x in rows if x["refused"]] + [e for x in rows for e in x["errors"]] + [
        f"round {x['round']}, {x['members']} members: {x['instances_disagreeing']} instance(s) "
        "with different latest metrics at different members" for x in rows
        if x["instances_disagreeing"]]
    out = {"summary": summary, "rows": rows, "seconds": args.seconds, "rounds": args.rounds,
           "load_before": [round(x, 2) for x in load_before],
           "load_after": [round(x, 2) for x in os.getloadavg()],
           "framework": os.environ.get("DYNCAST_FRAMEWORK", "ryu"), "problems": problems,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if args.quick:
        print(f"quick run: {len(rows)} runs, problems: {problems or 'none'}")
        return 1 if problems else 0
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cluster_reports.json").write_text(json.dumps(out, indent=1) + "\n")
    text = "".join(
        f"{n} member(s): {s['per_s_median']:.0f} reports/s accepted cluster-wide (range "
        f"{s['per_s_range'][0]:.0f}-{s['per_s_range'][1]:.0f}; x{s['ratio_to_1_range'][0]}-"
        f"{s['ratio_to_1_range'][1]} of 1 member)\n" for n, s in summary.items())
    agree = sum(not x["instances_disagreeing"] for x in rows)
    text += (f"members holding the same latest metrics for every instance after all was "
             f"applied: {agree} of {len(rows)} runs; others' reports older than the one "
             f"held (not applied): {sum(sum(x['older_reports_not_applied']) for x in rows)}\n")
    text += (f"{args.rounds} rounds of {args.seconds:.0f} s, 3 signed D-MA threads, "
             f"{out['framework']}, {out['date']}; load average {out['load_before']} before, "
             f"{out['load_after']} after; problems: {problems or 'none'}\n")
    (RESULTS / "cluster_reports.txt").write_text(text)
    print(text, end="")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

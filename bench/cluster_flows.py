"""New-flow setups per second with 1, 2 and 3 cluster members on 16 emulated switches
(issue 21: does it scale with members?).

No root and no Mininet: N members (`dyncast-manager`, cluster on, authentication on, one fresh
PostgreSQL schema each run) and 16 emulated OpenFlow 1.3 switches (bench/cluster_switch.py),
each connected to EVERY member as `ovs-vsctl set-controller BR tcp:A tcp:B tcp:C` does. The
switches keep the roles as Open vSwitch does (generation ids, stale refusals, SET_ASYNC), send
each new flow's PACKET_IN (a TCP SYN of a new 5-tuple to the service's D-SID, as
bench/cbench.py) to every connection that should get it, and count a setup only when the
switch's MASTER answered it correctly (forward and reverse affinity FLOW_MODs and the
PACKET_OUT, checked as cbench checks them). A slave's write is refused (OFPBRC_IS_SLAVE).

Asserted before measuring: every switch has exactly one master, the member the rendezvous rule
(`controller.cluster.mastership.master_of`) names; every member knows every switch, host and
instance at its place (the instances registered and reported at member m1 only, shared through
the change feed) and holds a decision sharing new flows between both local instances at every
ingress. Asserted while measuring: no slave or equal connection wrote anything, no master
changed, every request was answered correctly, no member counted an error (what the members
sent while the roles were being given is reported). Reported per
member count: setups/s accepted cluster-wide (median and range over `--rounds` rounds), the
ratio to 1 member in the same round, the members' CPU (each, and per setup), the generator's
CPU, load averages (bench/cluster_flows_report.py). Results:
bench/results/cluster_flows.{txt,json}.

    DYNCAST_TEST_PG_URL=... .venv/bin/python bench/cluster_flows.py [--rounds 5]
    DYNCAST_TEST_PG_URL=... .venv/bin/python bench/cluster_flows.py --quick   # smoke, no file
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents.credset import CredentialSet  # noqa: E402
from bench.cbench import controller_toml  # noqa: E402
from bench.cluster_flows_report import cpu_split, summarise, text_report  # noqa: E402
from bench.cluster_reports import cpu_s  # noqa: E402
from bench.cluster_switch import ClusterGenerator  # noqa: E402
from bench.emuswitch import INSTANCE_PORTS, Scenario  # noqa: E402
from controller.cluster.mastership import master_of  # noqa: E402
from mininet_tests.processes import ControllerProcess  # noqa: E402
from tests.pgschema import fresh_schema  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MEMBERS = ("m1", "m2", "m3")
AGENT = "cbench"


def config_text(url: str, sc: Scenario, member: str, rest_port: int) -> str:
    """bench/cbench.py's service on PostgreSQL, as cluster member `member` (the cluster's
    default timing: heartbeat 0.5 s, lease 1.5 s); no periodic table audit."""
    return "# written by bench/cluster_flows.py\n" + controller_toml(url, sc) + f"""
[cluster]
enabled = true
member_id = "{member}"
advertise = "http://127.0.0.1:{rest_port}"
"""


def wait(gen: ClusterGenerator, ok: Callable[[], bool], timeout: float, what: str) -> None:
    """Answer the members (pump the switches) until `ok()`, or raise TimeoutError."""
    end = time.monotonic() + timeout
    while not ok():
        if gen.lost:
            raise ConnectionError("; ".join(gen.lost))
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        gen.pump(0.2)


def get(proc: ControllerProcess, path: str) -> Any:
    status, body = proc.rest("GET", path)
    return body if status == 200 else None


def wait_rest(proc: ControllerProcess, ok: Callable[[Any], bool], timeout: float,
              what: str) -> None:
    """Poll GET /cluster (no switches yet) until `ok(body)`, or raise TimeoutError."""
    end = time.monotonic() + timeout
    while not ok(get(proc, "/cluster") or {}):
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.1)


def rule_masters(gen: ClusterGenerator, names: tuple[str, ...]) -> bool:
    """Every switch has exactly one master, the member the rule names."""
    return all(ks == [names.index(master_of(dpid, names) or "")]
               for dpid, ks in gen.master_members().items())


def set_up(gen: ClusterGenerator, procs: list[ControllerProcess], sc: Scenario) -> None:
    """Roles as the rule says; every member: the switches, hosts, instances, decisions."""
    names = MEMBERS[:len(procs)]
    gen.handshake(port_desc=1, timeout=30)
    wait(gen, lambda: rule_masters(gen, names), 30, "one master per switch, the rule's")
    dpids = {sc.dpid(s) for s in range(sc.switches)}
    for proc in procs:
        wait(gen, lambda p=proc: {s["dpid"] for s in (get(p, "/topology") or {}).get(
            "switches", []) if s["ports"]} >= dpids, 30, "every switch's ports at every member")
    gen.announce()
    want_hosts = sc.switches * (sc.clients + len(INSTANCE_PORTS))
    for proc in procs:
        wait(gen, lambda p=proc: len((get(p, "/topology") or {}).get("hosts", [])) >= want_hosts,
             30, "every host learned by every member")
    first = procs[0]
    for _, dbid in sc.instances():
        status, body = first.rest("POST", "/instances", {"dsid": sc.dsid, "dbid": dbid,
                                                          "dma": AGENT})
        assert status == 201, (status, body)
    reports = [{"dbid": dbid, "cpu": 0.1, "sessions": 0, "queue": 0, "capacity": 8,
                "active": True} for _, dbid in sc.instances()]
    status, body = first.rest("POST", "/metrics", {"reports": reports})
    assert status == 200, (status, body)
    where = {dbid: (sc.dpid(s), INSTANCE_PORTS[k % 2]) for k, (s, dbid) in
             enumerate(sc.instances())}

    def attached(p: ControllerProcess) -> bool:
        rows = get(p, "/instances") or []
        at = {r["dbid"]: (r["location"]["dpid"], r["location"]["port"]) for r in rows
              if r.get("location") and r.get("metrics")}
        return at == where

    def decided(p: ControllerProcess) -> bool:
        rows = get(p, "/decisions/bench") or []
        usable = {r["ingress"] for r in rows if sum(
            1 for c in r.get("candidates", []) if c.get("share", 0) > 0) == len(INSTANCE_PORTS)}
        return usable >= dpids

    for proc in procs:
        wait(gen, lambda p=proc: attached(p), 30,
             "every instance attached at its switch, with metrics, at every member")
        wait(gen, lambda p=proc: decided(p), 30,
             "a decision sharing new flows between both local instances at every ingress, at "
             "every member")


def run(n: int, args: argparse.Namespace, folder: Path, creds: CredentialSet) -> dict[str, Any]:
    """N members, the switches connected to all; set up, probe, measure; the figures and the
    problems found."""
    sc = Scenario(args.switches)
    problems: list[str] = []
    out: dict[str, Any] = {"members": n}
    with fresh_schema("benchflows") as url:
        procs = []
        for m in MEMBERS[:n]:
            (folder / m).mkdir(parents=True, exist_ok=True)
            proc = ControllerProcess(folder / m, folder / m / "member.toml", creds=creds)
            proc.config.write_text(config_text(url, sc, m, proc.rest_port))  # type: ignore[union-attr]
            procs.append(proc)
        gen: ClusterGenerator | None = None
        try:
            for proc in procs:
                proc.start()
            for proc in [] if args.connect_early else procs:  # to an established cluster
                wait_rest(proc, lambda b: sum(m["live"] for m in b.get("members", [])) == n,
                          30, f"{n} live members in every member's view")
            gen = ClusterGenerator([("127.0.0.1", p.ofp_port) for p in procs], sc, "dyncast")
            set_up(gen, procs, sc)
            gen.probe()
            # what the members did while the roles were given (reported, not asserted)
            changes, odd = gen.master_changes(), len(gen.odd_writes)
            errors0 = [(get(p, "/stats") or {}).get("errors", 0) for p in procs]
            out["setup"] = {
                "slave_writes_refused": sum(1 for w in gen.odd_writes if w[3] > 0),
                "writes_as_equal": sum(1 for w in gen.odd_writes if w[3] < 0),
                "stale_role_requests": sum(gen.stale_refused.values()),
                "member_errors": errors0,
                "odd_writes": [[round(t - gen.connected_at, 3), MEMBERS[k], d, typ]
                               for t, k, d, typ in gen.odd_writes]}
            gen.setups_by_member.clear()
            pids = [p.popen.pid for p in procs if p.popen]
            marks: list[tuple[list[float], float]] = []

            def clock() -> float:
                per = [cpu_s(pid) for pid in pids]
                marks.append((per, time.process_time()))
                return sum(per)

            ph = gen.measure("throughput", args.switches, args.window, args.warmup, args.loops,
                             args.duration, clock)
            (c0, g0), (c1, g1) = marks[0], marks[-1]
            t = ph.tally
            setups = t.correct
            out.update({
                "setups_per_s": round(ph.rate, 1),
                "loop_rates": [round(x, 1) for x in ph.loop_rates],
                "seconds": round(ph.seconds, 2), "setups": setups,
                "member_cpu_share": [round((b - a) / ph.seconds, 2) for a, b in zip(c0, c1,
                                                                                    strict=True)],
                "members_cpu_us_per_setup": round((sum(c1) - sum(c0)) / setups * 1e6, 1)
                if setups else None,
                "generator_cpu_share": round((g1 - g0) / ph.seconds, 2),
                "answered_by_member": [gen.setups_by_member[k] for k in range(n)],
                "switches_by_member": [sum(ks == [k] for ks in gen.master_members().values())
                                       for k in range(n)],
                "p50_ms": round(ph.latency(0.5), 2), "p99_ms": round(ph.latency(0.99), 2),
                "masters": {f"{d:016x}": [MEMBERS[k] for k in ks]
                            for d, ks in gen.master_members().items()},
            })
            if t.incorrect or t.unexpected or t.unanswered:
                problems.append(f"{t.incorrect} incorrect, {t.unexpected} unexpected, "
                                f"{t.unanswered} unanswered ({dict(t.reasons.most_common(3))})")
            if len(gen.odd_writes) != odd:
                problems.append(f"while measuring, writes by a slave (refused) or an equal: "
                                f"{gen.odd_writes[odd:odd + 5]}")
            if gen.master_changes() != changes or not rule_masters(gen, MEMBERS[:n]):
                problems.append("a master changed during the measurement")
            errors1 = [(get(p, "/stats") or {}).get("errors", 0) for p in procs]
            if errors1 != errors0:
                problems.append(f"members' errors counted while measuring: {errors0} -> "
                                f"{errors1}")
        except Exception as exc:  # reported as a problem of this run; the others go on
            problems.append(f"{type(exc).__name__}: {exc}")
        finally:
            for proc in procs:  # stopped while the switches are connected (store flushed)
                proc.stop(30)
            if gen is not None:
                gen.close()
            out["log_errors"] = [f"{p.artifacts.name}: {e}" for p in procs
                                 for e in p.log_errors()]
    out["problems"] = problems
    return out


def main() -> int:
    """Run the rounds; write the results; exit 1 if a precondition or check failed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--switches", type=int, default=16)
    ap.add_argument("--window", type=int, default=64, help="new flows in flight per switch")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--loops", type=int, default=4)
    ap.add_argument("--duration", type=float, default=1.5, help="seconds per timed loop")
    ap.add_argument("--members", type=int, nargs="+", default=[1, 2, 3], choices=[1, 2, 3])
    ap.add_argument("--connect-early", action="store_true",
                    help="connect the switches once the members answer, not once each sees "
                         "the others live: the last may still be joining (what the others "
                         "send meanwhile is reported under 'while the roles were being given')")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 4 switches, 1 round of 0.5 s per member count, no file")
    ap.add_argument("--rewrite", action="store_true",
                    help="run nothing: recompute the summary and the text of the results file "
                         "from bench/results/cluster_flows.json's rows")
    args = ap.parse_args()
    if args.rewrite:
        saved = json.loads((RESULTS / "cluster_flows.json").read_text())
        saved.update(summary=summarise(saved["rows"]), cpu_split=cpu_split(saved["rows"]))
        (RESULTS / "cluster_flows.json").write_text(json.dumps(saved, indent=1) + "\n")
        (RESULTS / "cluster_flows.txt").write_text(text_report(saved))
        print(text_report(saved), end="")
        return 0
    if args.quick:
        args.switches, args.rounds, args.warmup, args.loops, args.duration = 4, 1, 0.3, 1, 0.5
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-cluster-flows-") as tmp:
        creds = CredentialSet(Path(tmp) / "creds")
        creds.key_file(AGENT, max_instances=1000)
        for r in range(args.rounds):
            for n in args.members:
                rows.append({"round": r, **run(n, args, Path(tmp) / f"r{r}n{n}", creds)})
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "masters"}),
                      flush=True)
    problems = [f"round {x['round']}, {x['members']} member(s): {p}" for x in rows
                for p in x["problems"]]
    out = {"summary": summarise(rows), "cpu_split": cpu_split(rows), "rows": rows,
           "switches": args.switches,
           "window": args.window, "warmup": args.warmup, "loops": args.loops,
           "duration": args.duration, "rounds": args.rounds, "quick": args.quick,
           "load_before": [round(x, 2) for x in load_before],
           "load_after": [round(x, 2) for x in os.getloadavg()],
           "framework": os.environ.get("DYNCAST_FRAMEWORK", "ryu"), "problems": problems,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    text = text_report(out)
    print(text, end="")
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "cluster_flows.json").write_text(json.dumps(out, indent=1) + "\n")
        (RESULTS / "cluster_flows.txt").write_text(text)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

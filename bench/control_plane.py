"""Metric intake under load: N instances reporting through the REST API of a real controller.

dyncast-manager runs apps/dyncast_app.py on loopback ports (started as bench/cbench.py starts
it, pinned to one CPU, the bench on another); four emulated OpenFlow 1.3 switches in a ring
(bench/control_plane_net.py, on bench/emuswitch.py) connect, carry its LLDP between them,
present the N instance hosts and time an echo every 20 ms each. The instances sit in services
of 100; every one is registered and reported once before the phases, and the run stops (exit 1)
unless every instance is located at its switch, every link of the ring is seen and every
decision (each service at each switch) gives some instance a share.

Phases, each `--duration` s, the D-MAs being processes with one keep-alive connection each:
- idle: no reports; the latency baseline of GET /decisions/{service} and GET /decisions;
- batch: D-MAs of 50 instances each POST their 50 reports as one batch, `--rate` reports/s
  in all (the API's batch form);
- single: one report per POST, `--rate` reports/s from 4 D-MAs (what dyncast-dma sends);
- burst: one batch of 10,000 reports (the most the API accepts), while the probes go on.
Meanwhile a prober GETs /decisions/{service} (a service in turn) every 50 ms, and every fifth
time /decisions (all). Measured: reports accepted per second, POST and GET latency, the worst
echo delay the switches saw (until their thread read the reply, and until the kernel received
it; with --log-dir, the echoes over 50 ms listed in echoes-N.txt), the controller's CPU
share (/proc/<pid>/stat) and peak RSS.

    .venv/bin/python bench/control_plane.py           # 100, 1,000, 5,000 instances
    .venv/bin/python bench/control_plane.py --quick   # 100 instances, < 60 s; exit 1 on failure
    DYNCAST_STALL_MS=30 .venv/bin/python bench/control_plane.py --log-dir DIR  # stalls logged
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cbench import cpus, free_port, loadavg, machine, proc_cpu, process, stop, tail  # noqa: E402
from bench.control_plane_net import Http, Layout, Ring, post_reports, report_body  # noqa: E402
from bench.control_plane_report import (  # noqa: E402
    HEADER,
    TARGET_RATE,
    Phase,
    missing,
    q,
    row,
    verdicts,
)

RESULTS = ROOT / "bench" / "results"
DMA_BATCH = 50  # instances per D-MA in the batch phase
SINGLE_DMAS = 4
BURST = 10_000


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def config(tmp: Path, layout: Layout) -> Path:
    """The services, a fresh SQLite store; metrics never go stale during the run."""
    services = "".join(f"""
[[service]]
name = "{name}"
dsid = "{dsid}"
protocol = "tcp"
port = 8000
affinity = {{ key = "5-tuple", idle_timeout = 30, hard_timeout = 0 }}
""" for name, dsid in (layout.service(k) for k in range(layout.services)))
    cfg = tmp / f"control_plane-{layout.instances}.toml"
    db = tmp / f"dyncast-{layout.instances}.db"  # a fresh store: nothing restored
    db.unlink(missing_ok=True)
    # auth off: its emulated D-MAs are worker processes that each report a slice of every
    # instance (the slices differ per phase), which no agent table can grant; the gate's cost
    # is a SHA-256 and an HMAC of each body (bench/cbench.py and the Mininet tests run with it)
    cfg.write_text(f"""# written by bench/control_plane.py
[security]
auth = false
[controller]
store_url = "sqlite:///{db}"
stale_after_s = 3600
{services}""")
    return cfg


def wait(what: str, check: Any, timeout: float = 60.0) -> Any:
    """Call `check()` until it returns a true value, or raise naming `what` and its last value."""
    end = time.monotonic() + timeout
    value = None
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {str(value)[:300]}")


def set_up(http: Http, ring: Ring, layout: Layout) -> None:
    """Switches, links, hosts, instances, one report each; then assert the preconditions."""
    n, sw = layout.instances, layout.switches
    wait("every switch's ports and the ring's links", lambda: (
        t := http.call("GET", "topology")[1]) and len(t["switches"]) == sw
        and len(t["links"]) >= sw and t)
    ring.do(lambda: ring.announce_hosts(layout))
    wait("every instance host to be located", lambda: len(
        http.call("GET", "topology")[1]["hosts"]) >= n)
    for i in range(n):
        dbid, _, _, k = layout.instance(i)
        status, body, _ = http.call("POST", "instances", json_body(
            {"dsid": layout.service(k)[1], "dbid": dbid, "dma": "control_plane"}))
        assert status == 201, f"registering {dbid}: {status} {body}"
    for part in range(0, n, DMA_BATCH):
        dbids = [layout.instance(i)[0] for i in range(part, min(n, part + DMA_BATCH))]
        status, body, _ = http.call("POST", "metrics", report_body(dbids, 0))
        assert status == 200 and body["accepted"] == len(dbids), (status, body)
    bad = problems(layout, http.call("GET", "instances")[1], http.call("GET", "decisions")[1])
    assert not bad, "; ".join(bad)


def problems(layout: Layout, insts: list[dict[str, Any]],
             rows: list[dict[str, Any]]) -> list[str]:
    """What breaks the preconditions: an instance not registered, not active or not located
    at its switch; a decision (a service at a switch) missing or giving no instance a share;
    a candidate without a path."""
    out = []
    where = {layout.instance(i)[0]: layout.instance(i)[2] + 1 for i in range(layout.instances)}
    if len(insts) != layout.instances:
        out.append(f"{len(insts)} of {layout.instances} instances registered")
    lost = [i["dbid"] for i in insts
            if (i["location"] or {}).get("dpid") != where.get(i["dbid"])]
    if lost:
        out.append(f"{len(lost)} instances not attached at their switch, e.g. {lost[:3]}")
    if any(i["state"] != "active" for i in insts):
        out.append("an instance is not active")
    have = {(r["service"], r["ingress"]) for r in rows
            if any(c.get("share", 0) > 0 for c in r["candidates"])}
    want = {(layout.service(k)[0], s + 1) for k in range(layout.services)
            for s in range(layout.switches)}
    if missing := sorted(want - have):
        out.append(f"{len(missing)} decisions without a share, e.g. {missing[:3]}")
    nopath = [c["dbid"] for r in rows for c in r["candidates"] if c.get("network_ms") is None]
    if nopath:
        out.append(f"{len(nopath)} candidates without a path, e.g. {nopath[:3]}")
    return out


def json_body(value: object) -> bytes:
    import json
    return json.dumps(value).encode()


def probe(port: int, layout: Layout, stop_at: threading.Event, ph: Phase) -> None:
    """GET /decisions/{service} every 50 ms (a service in turn), every fifth time /decisions."""
    http = Http(port)
    rng = random.Random(15)
    k = 0
    while not stop_at.is_set():
        k += 1
        name = layout.service(rng.randrange(layout.services))[0]
        status, _, took = http.call("GET", f"decisions/{name}", decode=False)
        assert status == 200, status
        ph.get_svc_s.append(took)
        if k % 5 == 0:
            status, _, took = http.call("GET", "decisions", decode=False)
            assert status == 200, status
            ph.get_all_s.append(took)
        stop_at.wait(0.05)


Plan = tuple[list[tuple[bytes, int]], float]  # a D-MA's bodies (and report counts), POSTs/s


def dma_plans(layout: Layout, mode: str, rate: float) -> list[Plan]:
    """Per D-MA process: its bodies (with their report counts) and its POSTs per second."""
    dbids = [layout.instance(i)[0] for i in range(layout.instances)]
    if mode == "batch":
        groups = [dbids[i:i + DMA_BATCH] for i in range(0, len(dbids), DMA_BATCH)]
        workers = min(4, len(groups))
        plans = []
        for w in range(workers):
            mine = groups[w::workers]
            bodies = [(report_body(g, r), len(g)) for r in (1, 2) for g in mine]
            share = sum(len(g) for g in mine) / len(dbids)
            plans.append((bodies, rate * share / (sum(len(g) for g in mine) / len(mine))))
        return plans
    plans = []
    for w in range(SINGLE_DMAS):
        mine = dbids[w::SINGLE_DMAS]
        plans.append(([(report_body([d], r), 1) for r in (1, 2) for d in mine],
                      rate / SINGLE_DMAS))
    return plans


def run_dmas(ph: Phase, port: int, plans: list[Plan], duration: float) -> None:
    """Run a D-MA process per plan for `duration` s; add what they saw to `ph`."""
    out: Any = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=post_reports, args=(port, bodies, rate, duration,
                                                                out))
             for bodies, rate in plans]
    for p in procs:
        p.start()
    results = [out.get(timeout=duration + 120) for _ in procs]
    for p in procs:
        p.join()
    for accepted, refused, latencies, _ in results:
        ph.accepted += accepted
        ph.refused += refused
        ph.post_s += latencies
    ph.seconds = max(r[3] for r in results)


def pin() -> tuple[int | None, str]:
    """With two CPUs or more: the controller's CPU (the first), this process and its children
    on the others; and a line saying so."""
    avail = cpus()
    if len(avail) < 2:
        return None, "no CPU pinning (one CPU)"
    os.sched_setaffinity(0, set(avail[1:]))
    return avail[0], f"controller pinned to CPU {avail[0]}, the bench to CPUs {avail[1:]}"


def publish(text: str, out: Path | None) -> None:
    """Print a results text and write it to `out` (if any)."""
    print("\n" + text, end="")
    if out is not None:
        out.write_text(text)
        print(f"(written to {out})")


def run_phase(name: str, port: int, pid: int, layout: Layout, ring: Ring,
              args: argparse.Namespace) -> Phase:
    """One phase: the probes, the echoes and CPU throughout; the D-MAs if it has any."""
    ph = Phase(name, layout.instances, target=0.0 if name == "idle" else args.rate)
    done = threading.Event()
    prober = threading.Thread(target=probe, args=(port, layout, done, ph), daemon=True)
    cpu = proc_cpu(pid)
    ring.measure_echoes()
    cpu0, t0 = cpu(), time.perf_counter()
    prober.start()
    peak = rss_mb(pid)
    if name in ("batch", "single"):
        run_dmas(ph, port, dma_plans(layout, name, args.rate), args.duration)
    elif name == "burst":
        ph.target = float(BURST)
        dbids = [layout.instance(i % layout.instances)[0] for i in range(BURST)]
        status, body, took = Http(port).call("POST", "metrics", report_body(dbids, 3))
        assert status == 200, (status, str(body)[:200])
        ph.accepted, ph.post_s, ph.seconds = body["accepted"], [took], took
        time.sleep(0.5)  # the recompute that follows
    else:
        time.sleep(args.duration)
        ph.seconds = args.duration
    peak = max(peak, rss_mb(pid))
    done.set()
    prober.join(30.0)
    ph.cpu = (cpu() - cpu0) / (time.perf_counter() - t0)
    echoes = ring.measure_echoes()
    ph.echo_worst_s = echoes.worst(time.perf_counter())
    ph.echo_p99_s = q(echoes.delays, 0.99) / 1000.0
    ph.wire_worst_s = echoes.worst_arrived(time.time())
    ph.wire_p99_s = q(echoes.arrived, 0.99) / 1000.0
    ph.bench_gap_s = echoes.gap
    if args.log_dir is not None:  # the slow echoes, to line up with the controller's log
        with (args.log_dir / f"echoes-{layout.instances}.txt").open("a") as f:
            f.writelines(f"{name} xid {x:#x} sent {t:.3f} at socket +{(a - t) * 1000:.1f} ms "
                         f"read +{(r - t) * 1000:.1f} ms\n" for x, t, a, r in echoes.slow)
    ph.echoes, ph.rss_mb = len(echoes.delays), peak
    return ph


@dataclass
class Running:
    """A controller started for N instances, its ring of switches connected, set up."""

    layout: Layout
    proc: Any
    ring: Ring
    http: Http
    ws_port: int
    log: Path


@contextlib.contextmanager
def running(n: int, args: argparse.Namespace, tmp: Path, ctl_cpu: int | None
            ) -> Iterator[Running]:
    """Start a controller, connect the ring, set up N instances (asserting the
    preconditions); stop them all on exit. Raises with the log's tail on a failure."""
    layout = Layout(n)
    of_port, ws_port = free_port(), free_port()
    log = tmp / f"controller-{n}.log"
    cmd = [sys.executable, "-m", "apps.manager", "--framework", args.framework,
           "--ofp-tcp-listen-port", str(of_port), "--wsapi-host", "127.0.0.1",
           "--wsapi-port", str(ws_port), "--dyncast-config", str(config(tmp, layout)),
           str(ROOT / "apps" / "dyncast_app.py")]
    with process(cmd, log, ROOT, ctl_cpu) as proc:
        ring: Ring | None = None
        try:
            wait("the controller to listen", lambda: proc.poll() is None and _listening(of_port))
            ring = Ring(of_port, layout.switches)
            ring.start()
            http = Http(ws_port)
            wait("the REST API", lambda: _answers(http))
            t = time.perf_counter()
            set_up(http, ring, layout)
            print(f"  {n} instances set up in {time.perf_counter() - t:.1f} s", flush=True)
            yield Running(layout, proc, ring, http, ws_port, log)
        except Exception as exc:
            raise RuntimeError(f"N={n}: {type(exc).__name__}: {exc}\n--- log tail:\n"
                               f"{tail(log)}") from exc
        finally:
            if ring is not None:
                ring.stop()
            stop(proc, 60.0)


def checked(run: Running, phases: list[Phase], failures: list[str]) -> None:
    """After the phases: no error or dropped report in /stats, no switch lost, a figure in
    every phase; what fails goes to `failures`."""
    n = run.layout.instances
    stats = run.http.call("GET", "stats")[1]
    if stats.get("errors") or stats.get("reports_dropped"):
        failures.append(f"N={n}: errors {stats.get('errors')}, reports dropped "
                        f"{stats.get('reports_dropped')}: {tail(run.log)}")
    if run.ring.lost:
        failures.append(f"N={n}: {'; '.join(run.ring.lost)}")
    failures += [f"N={n} {ph.name}: {text}" for ph in phases for text in missing(ph)]


def bench_n(n: int, args: argparse.Namespace, tmp: Path, ctl_cpu: int | None,
            failures: list[str]) -> list[Phase]:
    """Start a controller, connect the ring, set up N instances, run the phases."""
    phases: list[Phase] = []
    try:
        with running(n, args, tmp, ctl_cpu) as run:
            for name in ("idle", "batch", "single", "burst"):
                ph = run_phase(name, run.ws_port, run.proc.pid, run.layout, run.ring, args)
                phases.append(ph)
                print("  " + row(ph), flush=True)
            checked(run, phases, failures)
    except RuntimeError as exc:
        failures.append(str(exc))
    return phases


def _listening(port: int) -> bool:
    import socket
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _answers(http: Http) -> bool:
    try:
        return http.call("GET", "stats")[0] == 200
    except OSError:
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100 instances, 3 s phases, no file")
    ap.add_argument("--instances", type=int, nargs="+", default=[100, 1000, 5000])
    ap.add_argument("--rate", type=float, default=TARGET_RATE, help="reports/s to offer")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per phase")
    ap.add_argument("--framework", choices=("ryu", "os-ken"), default="ryu")
    ap.add_argument("--log-dir", type=Path, default=None,
                    help="keep the controllers' logs (and configuration, store) here, not in a "
                         "temporary directory (with DYNCAST_STALL_MS set: its stall lines)")
    ap.add_argument("--output", type=Path, default=None,
                    help="results file (default bench/results/control_plane.txt; none with "
                         "--quick)")
    args = ap.parse_args()
    if args.quick:
        args.instances, args.duration = [100], 3.0
    ctl_cpu, pinning = pin()
    failures: list[str] = []
    phases: list[Phase] = []
    load_before = loadavg()
    t0 = time.monotonic()
    if args.log_dir is not None:
        args.log_dir.mkdir(parents=True, exist_ok=True)
    with (contextlib.nullcontext(str(args.log_dir)) if args.log_dir is not None
          else tempfile.TemporaryDirectory(prefix="control-plane-")) as tmpdir:
        print(HEADER, flush=True)
        for n in args.instances:
            phases += bench_n(n, args, Path(tmpdir), ctl_cpu, failures)
    cmd = "bench/control_plane.py" + (" --quick" if args.quick else "")
    lines = [f"# {cmd} ({time.strftime('%Y-%m-%d')}, {time.monotonic() - t0:.0f} s)",
             f"machine: {machine()}", f"{pinning}; load average {load_before} before, "
             f"{loadavg()} after",
             f"instances in services of 100 on 4 switches in a ring; phases of {args.duration:g} s;"
             f" offered {args.rate:g} reports/s (batch: D-MAs of {DMA_BATCH}; single: "
             f"{SINGLE_DMAS} D-MAs); burst: one POST of {BURST} reports; GET probes every 50 ms;"
             f" echoes every 20 ms from each switch"
             " (echo: until the switches' thread read the reply; at socket: until the kernel"
             " received it; gap: the longest the switches' thread did not poll)", "", HEADER]
    lines += [row(ph) for ph in phases] + [""] + verdicts(phases)
    lines += ["", "failures:" if failures else "failures: none", *failures]
    publish("\n".join(lines) + "\n",
            args.output or (None if args.quick else RESULTS / "control_plane.txt"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Controller throughput and first-packet latency, measured the way `cbench` does it.

Many emulated OpenFlow 1.3 switches (bench/emuswitch.py: one Python process, epoll, raw
sockets and struct-built messages from bench/ofgen.py) connect over TCP to the controller and
send PACKET_INs for new flows: TCP SYNs from distinct client 5-tuples to a service's D-SID.
Every answer is checked against its request (byte for byte against the expected message, or
field by field); only requests whose answers all came back correct count.

Subjects, every controller started through `dyncast-manager` (the same patched framework):
- `minimal-raw`: bench/minimal_app.py, one FLOW_MOD per PACKET_IN packed with struct, nothing
  else: the framework's own floor, and the reference of the targets (issue 15): dyncast's
  new-flow rate >= 0.6x its rate, dyncast's latency above the transport floor <= 2x its own;
- `dyncast`: apps/dyncast_app.py with one service whose two instances sit behind every switch
  (registered and reported over the REST API after the switches announced the instances' and
  clients' addresses with gratuitous ARP): a new flow gets the ingress's decision, a binding,
  forward and reverse affinity FLOW_MODs and a PACKET_OUT with the rewrite;
- `minimal` (the same app building its FLOW_MOD with the framework's classes, as a typical app
  does) and `dyncast-nostore` (store writes deferred past the run: the packet path alone), to
  show where the time goes (`dyncast-nostore` in throughput mode only);
- `sink-minimal`, `sink-dyncast`: bench/sink.py, a trivial responder sending precomputed
  answers of either kind: the generator's ceiling, and the transport floor of the latency
  (subtracted from the apps' latency for the target).

Modes: `throughput` (every switch keeps `--window` requests in flight; correct requests
completed per second) and `latency` (one request in flight per switch, with one switch and
with all; time from PACKET_IN sent to last answer received). The controller's CPU time per
request is read from /proc. bench/handler_cost.py adds the packet-in path's parts timed
in-process. The controller and the generator are pinned to different CPUs.

    .venv/bin/python bench/cbench.py           # full run, about 4 minutes
    .venv/bin/python bench/cbench.py --quick   # smoke run, ~15 s; exits 1 if anything fails
                                               # or a target figure is missing

Results (machine, parameters, rates, latencies, ratios) go to bench/results/cbench.txt (the
smoke run only prints them, unless given --output).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents.credset import CredentialSet  # noqa: E402
from bench.emuswitch import INSTANCE_PORTS, Generator, Phase, Scenario, Tally  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PYTHON = ROOT / ".venv" / "bin" / "python"
MANAGER = ROOT / ".venv" / "bin" / "dyncast-manager"
FLOOR = "minimal-raw"  # the reference: the framework's floor (issue 15)
TARGET_THROUGHPUT = 0.6  # dyncast >= 0.6 x the floor's new-flow rate (16 switches)
TARGET_LATENCY = 2.0  # dyncast's time above the transport floor <= 2 x the floor's


@dataclass
class Params:
    """What one run measures."""

    switches: int
    window: int
    warmup: float
    loops: int
    duration: float
    rounds: int
    framework: str
    pin: bool
    quick: bool
    health: bool = True  # passive health (on by default); --no-health: off


@dataclass
class Row:
    """One measured phase of one controller."""

    controller: str
    round: int
    phase: Phase
    notes: str = ""


@dataclass
class Run:
    costs: dict[str, object] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    load_before: str = ""
    load_after: str = ""
    notes: list[str] = field(default_factory=list)


def loadavg() -> str:
    """The 1-minute load average (other work on the machine competes for its CPUs)."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except (OSError, IndexError):
        return "?"


# --- processes ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


@contextlib.contextmanager
def process(cmd: list[str], log: Path, cwd: Path, cpu: int | None,
            env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run `cmd` (pinned to `cpu`, with `env` added); make sure it is gone on exit."""

    def pin() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=pin,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        try:
            yield proc
        finally:
            stop(proc, 10.0)


def stop(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """SIGTERM, then SIGKILL after `timeout` s; True if it ended on SIGTERM (or had ended)."""
    if proc.poll() is not None:
        return True
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False


def connect_generator(port: int, sc: Scenario, kind: str, proc: subprocess.Popen[bytes],
                      log: Path, timeout: float = 30.0) -> Generator:
    """Connect the switches once the controller listens."""
    end = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"controller exited with {proc.returncode}: {tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
            break
        except OSError:
            if time.monotonic() > end:
                raise TimeoutError(f"nothing listens on port {port}: {tail(log)}") from None
            time.sleep(0.1)
    return Generator("127.0.0.1", port, sc, kind)


def tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- REST -----------------------------------------------------------------------------------
CREDS: dict[str, CredentialSet] = {}  # "set": the credentials of the controller under test


def rest(base: str, method: str, path: str, body: object = None) -> object:
    """One REST call with the bench's credentials (admin token; agent calls signed as the
    agent 'cbench')."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if "set" in CREDS:
        headers.update(CREDS["set"].headers(method, path, data or b"", "cbench"))
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def wait_rest(gen: Generator, base: str, path: str, ok: Callable[[Any], bool], what: str,
              timeout: float = 20.0) -> object:
    """Poll GET `path` (answering the controller in between) until `ok(value)`."""
    end = time.monotonic() + timeout
    value: object = None
    while time.monotonic() < end:
        try:
            value = rest(base, "GET", path)
            if ok(value):
                return value
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        gen.pump(0.2)
    raise TimeoutError(f"timed out waiting for {what}; last {path}: {str(value)[:300]}")


def controller_toml(store_url: str, sc: Scenario, extra: str = "") -> str:
    """The `[controller]` table (with `extra` lines) and the one service of a bench run against
    emulated switches: metrics never go stale, tables are not read back (also bench/
    cluster_flows.py)."""
    return f"""[controller]
store_url = "{store_url}"
stale_after_s = 3600   # the bench reports metrics once
# the emulated switches keep no table: a table read back (every 10 s by default) would find
# every binding's entries missing and re-send them all, answers to no request in flight
reconcile_interval_s = 86400
{extra}
[[service]]
name = "bench"
dsid = "{sc.dsid}"
protocol = "tcp"
port = {sc.dport}
base_delay_ms = 20
affinity = {{ key = "5-tuple", idle_timeout = {sc.idle_timeout}, hard_timeout = 0 }}
"""


def dyncast_config(tmp: Path, sc: Scenario, store_flush_s: float | None = None,
                   health: bool = True) -> Path:
    """One service on the D-SID, a fresh SQLite store; metrics never go stale, tables are not
    read back; passive health as the defaults have it, or off."""
    cfg = tmp / "cbench.toml"
    db = tmp / "dyncast.db"
    for old in (db, tmp / "dyncast.db-journal"):
        old.unlink(missing_ok=True)
    flush = "" if store_flush_s is None else f"store_flush_s = {store_flush_s}\n"
    if not health:
        flush += "[controller.health]\nenabled = false\n"
    creds = CREDS["set"] = CredentialSet(tmp / "creds")
    creds.key_file("cbench", max_instances=100_000)
    cfg.write_text(creds.security_section() + "# written by bench/cbench.py\n"
                   + controller_toml(f"sqlite:///{db}", sc, flush))
    return cfg


def setup_dyncast(gen: Generator, base: str, sc: Scenario) -> None:
    """Topology, hosts, instances and metrics, then every ingress must hold a decision."""
    wait_rest(gen, base, "/dyncast/v1/topology",
              lambda t: len(t["switches"]) == sc.switches and all(s["ports"] for s in
                                                                 t["switches"]),
              "every switch's ports")
    gen.announce()
    wait_rest(gen, base, "/dyncast/v1/topology",
              lambda t: len(t["hosts"]) == sc.switches * (sc.clients + len(INSTANCE_PORTS)),
              "every host to be learned")
    for _, dbid in sc.instances():
        rest(base, "POST", "/dyncast/v1/instances", {"dsid": sc.dsid, "dbid": dbid,
                                                     "dma": "cbench"})
    reports = [{"dbid": dbid, "cpu": 0.1, "sessions": 0, "queue": 0, "capacity": 8,
                "active": True} for _, dbid in sc.instances()]
    rest(base, "POST", "/dyncast/v1/metrics", {"reports": reports})

    def decided(rows: object) -> bool:
        assert isinstance(rows, list)
        usable = {r["ingress"] for r in rows
                  if sum(1 for c in r.get("candidates", []) if c.get("share", 0) > 0) ==
                  len(INSTANCE_PORTS)}
        return usable >= {sc.dpid(s) for s in range(sc.switches)}

    wait_rest(gen, base, "/dyncast/v1/decisions/bench", decided,
              "a decision sharing new flows between both local instances at every ingress")


# --- measuring ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Subject:
    """One controller (or the sink) under test."""

    name: str
    kind: str  # what its answers look like: "dyncast" or "minimal"
    what: str  # "dyncast", "minimal" or "sink"
    full: bool  # all phases (else throughput only)
    env: tuple[tuple[str, str], ...] = ()
    store_flush_s: float | None = None
    note: str = ""


SUBJECTS = [
    Subject("minimal", "minimal", "minimal", True,
            note="bench/minimal_app.py: one flow-mod per packet-in, built with the framework's "
                 "OFPMatch/OFPFlowMod"),
    Subject("dyncast", "dyncast", "dyncast", True,
            note="apps/dyncast_app.py: decision, binding, 2 flow-mods + packet-out, store "
                 "writes every store_flush_s = 1 s"),
    Subject("minimal-raw", "minimal", "minimal", True, (("CBENCH_MINIMAL_ENCODER", "struct"),),
            note="the same minimal app packing its flow-mod with struct: the framework's floor "
                 "and the reference of the targets"),
    Subject("dyncast-nostore", "dyncast", "dyncast", False, store_flush_s=3600.0,
            note="dyncast with store writes deferred past the run (store_flush_s = 3600; "
                 "not a deployable setting): the packet path alone"),
    Subject("minimal-raw-ofconn", "minimal", "minimal", False,
            (("CBENCH_MINIMAL_ENCODER", "struct"), ("CBENCH_MINIMAL_OFCONN", "1")),
            note="minimal-raw with apps/ofconn.py installed (chunked reads, batched writes; the "
                 "dyncast app does not install it): what that change gives the floor itself"),
]
SINKS = [
    Subject("sink-minimal", "minimal", "sink", True,
            note="bench/sink.py answering like the minimal app: the generator's ceiling and the "
                 "latency floor of minimal-style answers"),
    Subject("sink-dyncast", "dyncast", "sink", True,
            note="bench/sink.py answering like dyncast: the generator's ceiling and the "
                 "latency floor (transport, wake-ups)"),
]


def proc_cpu(pid: int) -> Callable[[], float]:
    """A clock reading the CPU seconds (all threads, user + system) process `pid` has used."""
    tick = os.sysconf("SC_CLK_TCK")

    def clock() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    return clock


def phases(gen: Generator, p: Params, subject: Subject, rnd: int, run: Run,
           clock: Callable[[], float]) -> None:
    """Latency with one switch, latency with all, then throughput with all (only the last
    for subjects that are not `full`; the sink's full set is latency with one switch too)."""
    plan = [("throughput", p.switches, p.window)]
    if subject.full:
        plan[:0] = [("latency", 1, 1)] + ([("latency", p.switches, 1)]
                                          if subject.what != "sink" and not p.quick else [])
    for mode, switches, window in plan:
        ph = gen.measure(mode, switches, window, p.warmup, p.loops, p.duration, clock)
        run.rows.append(Row(subject.name, rnd, ph))
        check_phase(subject.name, ph, run)
        print(f"  {subject.name:15} {mode:10} {switches:3} sw x{window:<3} {ph.rate:8.0f} "
              f"resp/s  p50 {ph.latency(0.5):8.3f} ms  p99 {ph.latency(0.99):8.3f} ms  "
              f"CPU {ph.cpu_share or 0:4.2f}  wrong {ph.tally.incorrect + ph.tally.unexpected}",
              flush=True)


def check_phase(name: str, ph: Phase, run: Run) -> None:
    t = ph.tally
    where = f"{name} {ph.mode} ({ph.switches} switches)"
    if t.answered == 0:
        run.failures.append(f"{where}: no correct response")
    if t.unanswered:
        run.failures.append(f"{where}: {t.unanswered} requests still unanswered 10 s later")
    if t.incorrect or t.unexpected:
        reasons = ", ".join(f"{r} x{n}" for r, n in t.reasons.most_common(3))
        run.failures.append(f"{where}: {t.incorrect} incorrect, {t.unexpected} unexpected "
                            f"responses ({reasons})")


def bench_subject(subject: Subject, p: Params, sc: Scenario, rnd: int, tmp: Path, run: Run,
                  ctl_cpu: int | None) -> None:
    """Start the subject, connect the switches, set up, measure, stop."""
    of_port, ws_port = free_port(), free_port()
    log = tmp / f"{subject.name}-{rnd}.log"
    if subject.what == "sink":
        cmd = [str(PYTHON), str(ROOT / "bench" / "sink.py"), "--port", str(of_port),
               "--mode", subject.kind, "--switches", str(sc.switches)]
    else:
        cmd = [str(MANAGER), "--framework", p.framework, "--ofp-tcp-listen-port", str(of_port),
               "--wsapi-host", "127.0.0.1", "--wsapi-port", str(ws_port)]
        if subject.what == "dyncast":
            cfg = dyncast_config(tmp, sc, subject.store_flush_s, p.health)
            cmd += ["--dyncast-config", str(cfg), str(ROOT / "apps" / "dyncast_app.py")]
        else:
            cmd += [str(ROOT / "bench" / "minimal_app.py")]
    t0 = time.monotonic()
    with process(cmd, log, tmp, ctl_cpu, dict(subject.env)) as proc:
        gen: Generator | None = None
        base = f"http://127.0.0.1:{ws_port}"
        try:
            gen = connect_generator(of_port, sc, subject.kind, proc, log)
            gen.handshake(port_desc=2 if subject.what == "dyncast" else 1)
            if subject.what == "dyncast":
                setup_dyncast(gen, base, sc)
            gen.probe()
            phases(gen, p, subject, rnd, run, proc_cpu(proc.pid))
            if subject.what == "dyncast":
                stats = rest(base, "GET", "/dyncast/v1/stats")
                assert isinstance(stats, dict)
                run.stats[f"{subject.name} round {rnd}"] = stats
                if stats.get("errors"):
                    run.failures.append(f"{subject.name} counted {stats['errors']} errors: "
                                        f"{tail(log)}")
        except Exception as exc:
            run.failures.append(f"{subject.name} round {rnd}: {type(exc).__name__}: {exc}\n"
                                f"--- log tail:\n{tail(log)}")
        finally:
            if proc.poll() is not None:
                run.failures.append(f"{subject.name} exited early ({proc.returncode}): "
                                    f"{tail(log)}")
            # stop it while the switches are still connected (it flushes its store first)
            t1 = time.monotonic()
            if not stop(proc, 60.0 if subject.what == "dyncast" else 10.0):
                run.notes.append(f"{subject.name} round {rnd} did not exit on SIGTERM and was "
                                 f"killed; log tail:\n{tail(log, 4)}")
            stopped = time.monotonic() - t1
            if gen is not None:
                gen.close()
    print(f"  ({subject.name}: {time.monotonic() - t0:.1f} s, of which stopping "
          f"{stopped:.1f} s)", flush=True)


def handler_costs(p: Params, flows: int, cpu: int | None, run: Run) -> None:
    """bench/handler_cost.py in its own process (pinned like the controller)."""
    cmd = [str(PYTHON), str(ROOT / "bench" / "handler_cost.py"), "--framework", p.framework,
           "--flows", str(flows)]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode:
            raise RuntimeError(done.stderr.strip()[-500:] or f"exit {done.returncode}")
        run.costs = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, RuntimeError, ValueError, IndexError, subprocess.TimeoutExpired) as exc:
        run.failures.append(f"bench/handler_cost.py: {exc}")


def cost_lines(costs: dict[str, object]) -> list[str]:
    """The in-process costs as report lines."""
    c = {k: float(v) for k, v in costs.items() if isinstance(v, int | float)}
    need = ("receive", "minimal", "minimal_struct", "core", "serialise_framework", "serialise",
            "store")
    if not all(k in c for k in need):
        return []
    before, now = c["core"] + c["serialise_framework"], c["core"] + c["serialise"]
    return [
        f"in-process cost per new flow (bench/handler_cost.py, median of 5 x {costs['flows']}"
        f" flows, us):",
        f"  framework: parse the PACKET_IN, make its event (minimal apps)  {c['receive']:7.1f}",
        f"  the same with dyncast's PACKET_IN fast path (apps/packet_in.py) "
        f"{c.get('receive_fast', float('nan')):7.1f}",
        f"  minimal handler: OFPMatch + OFPFlowMod, serialised             {c['minimal']:7.1f}"
        f"   (packed with struct: {c['minimal_struct']:.1f})",
        f"  dyncast core.packet_in: parse, decision, binding, intents       {c['core']:7.1f}",
        f"  dyncast's 3 messages through the framework's classes (before) "
        f"{c['serialise_framework']:7.1f}",
        f"  dyncast's 3 messages through ofmsg.serialise (now)              {c['serialise']:7.1f}",
        f"  dyncast handler in all: {before:.0f} before, {now:.0f} now ({before / now:.1f}x "
        f"less); the minimal handler: {c['minimal']:.0f}",
        f"  store: Store.apply per binding (SQLite file, off the packet path) "
        f"{c['store']:5.1f}",
    ]


# --- report ---------------------------------------------------------------------------------
def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GB RAM"
    versions = []
    for dist in ("ryu", "os-ken", "eventlet"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{dist} {importlib.metadata.version(dist)}")
    os_name = platform.platform(terse=True)
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"') + f", Linux {platform.release()}"
    return (f"{model}, {os.cpu_count()} CPUs{mem}; {os_name}; Python "
            f"{platform.python_version()}; {', '.join(versions)}")


def pooled(rows: list[Row], name: str, mode: str, switches: int) -> Phase | None:
    """Every round's measurement of one subject and phase, pooled: all loops, latencies,
    tallies and CPU time together."""
    found = [r.phase for r in rows if r.controller == name and r.phase.mode == mode
             and r.phase.switches == switches]
    if not found:
        return None
    tally = Tally()
    for ph in found:
        tally.correct += ph.tally.correct
        tally.incorrect += ph.tally.incorrect
        tally.unexpected += ph.tally.unexpected
        tally.reasons.update(ph.tally.reasons)
        tally.instances.update(ph.tally.instances)
        tally.fast += ph.tally.fast
        tally.slow += ph.tally.slow
        tally.answered += ph.tally.answered
        tally.unanswered += ph.tally.unanswered
    cpus = [ph.cpu_s for ph in found]
    return Phase(mode, switches, found[0].window,
                 [x for ph in found for x in ph.loop_rates],
                 [x for ph in found for x in ph.latencies_ms], tally,
                 sum(ph.seconds for ph in found),
                 None if None in cpus else sum(c for c in cpus if c is not None))


def report(p: Params, sc: Scenario, run: Run, pinning: str) -> str:
    lines = [
        f"cbench-style controller benchmark (bench/cbench.py{' --quick' if p.quick else ''}"
        f"{'' if p.health else ' --no-health'}), "
        f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"machine: {machine()}",
        f"framework: {p.framework} (every controller started by dyncast-manager); {pinning}; "
        f"1-min load average {run.load_before} before, {run.load_after} after (anything "
        f"else running competes for the CPUs: CPU us/req is the figure it disturbs least)",
        f"load: {p.switches} emulated OpenFlow 1.3 switches (one Python process, epoll), each "
        f"with {sc.clients} clients and 2 local instances of one TCP service; every PACKET_IN "
        f"is the TCP SYN of a new 5-tuple",
        f"throughput: {p.window} requests in flight per switch; latency: 1 in flight per switch; "
        f"each phase: warm-up {p.warmup:g} s, then {p.loops} x {p.duration:g} s; {p.rounds} "
        f"round(s) per controller, pooled",
        "a request counts only if all its responses came back correct (dyncast: forward + "
        "reverse affinity flow-mod + packet-out with the rewrite; minimal: one exact flow-mod)",
        "latency = from the PACKET_IN sent to the last answer received (transport and "
        "wake-ups included: the sink's rows are the floor, subtracted for the targets); CPU = "
        "the controller's CPU use during the timed loops (1.00 = one CPU), us/req = its CPU "
        "time per correct response",
        "",
        f"{'controller':15} {'mode':10} {'sw':>3} {'flight':>6} {'resp/s':>8} {'min/s':>7} "
        f"{'max/s':>7} {'mean ms':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'CPU':>5} "
        f"{'us/req':>6} {'wrong':>5}",
    ]
    keys = []
    for r in run.rows:
        k = (r.controller, r.phase.mode, r.phase.switches)
        if k not in keys:
            keys.append(k)
    for name, mode, switches in keys:
        ph = pooled(run.rows, name, mode, switches)
        assert ph is not None
        t = ph.tally
        share, per = ph.cpu_share, ph.cpu_us_per_request
        lines.append(
            f"{name:15} {mode:10} {switches:3d} {ph.window * switches:6d} {ph.rate:8.0f} "
            f"{min(ph.loop_rates):7.0f} {max(ph.loop_rates):7.0f} {ph.mean_latency:8.3f} "
            f"{ph.latency(0.5):8.3f} "
            f"{ph.latency(0.9):8.3f} {ph.latency(0.99):8.3f} "
            f"{'-' if share is None else f'{share:.2f}':>5} "
            f"{'-' if per is None else f'{per:.0f}':>6} {t.incorrect + t.unexpected:5d}")
    lines.append("")
    lines += ratios(p, run)
    lines.append("")
    costs = cost_lines(run.costs)
    if costs:
        lines += [*costs, ""]
    for subject in SUBJECTS + SINKS:
        if any(r.controller == subject.name for r in run.rows):
            lines.append(f"{subject.name}: {subject.note}")
    per_round: dict[str, list[str]] = {}
    for r in run.rows:
        if r.phase.mode == "throughput" and r.round:
            per_round.setdefault(r.controller, []).append(f"{r.phase.rate:.0f}")
    if per_round:
        lines.append("throughput per round: " + "; ".join(
            f"{k} {', '.join(v)}" for k, v in per_round.items()))
    for name, stats in sorted(run.stats.items()):
        keep = {k: stats.get(k, 0) for k in ("packet_in", "new_flows", "reinstalls",
                                            "flows_installed", "dropped_no_instance",
                                            "dropped_unreachable", "errors",
                                            "placement_redecisions")}
        lines.append(f"{name} /stats: " + ", ".join(f"{k} {v}" for k, v in keep.items()))
    fast = sum(r.phase.tally.fast for r in run.rows)
    slow = sum(r.phase.tally.slow for r in run.rows)
    lines.append(f"answers verified: {fast} matched the expected bytes, {slow} were checked "
                 f"field by field")
    dt = pooled(run.rows, "dyncast", "throughput", p.switches)
    if dt and dt.tally.instances:
        shares = dt.tally.instances
        lines.append(f"dyncast throughput: new flows went to {len(shares)} instances, "
                     f"{min(shares.values())} to {max(shares.values())} each")
    if run.notes:
        lines += ["", "notes:"] + [f"- {n}" for n in run.notes]
    if run.failures:
        lines += ["", "FAILURES:"] + [f"- {f}" for f in run.failures]
    return "\n".join(lines) + "\n"


def ratios(p: Params, run: Run) -> list[str]:
    """The targets (against the floor, `minimal-raw`), then the other comparisons."""
    out = []

    def tp(name: str) -> Phase | None:
        ph = pooled(run.rows, name, "throughput", p.switches)
        return ph if ph and ph.rate else None

    dt, ft = tp("dyncast"), tp(FLOOR)
    if dt and ft:
        r = dt.rate / ft.rate
        verdict = "met" if r >= TARGET_THROUGHPUT else "NOT met"
        out.append(f"throughput dyncast/{FLOOR} ({p.switches} switches): {r:.2f}x "
                   f"(target >= {TARGET_THROUGHPUT}x: {verdict})")
    above = latency_above_floor(run)
    if above:
        (d_mean, d_p50), (f_mean, f_p50) = above
        r, r50 = d_mean / f_mean, d_p50 / f_p50

        def verdict(x: float) -> str:
            return "met" if x <= TARGET_LATENCY else "NOT met"

        out.append(f"latency above the transport floor (1 switch, 1 in flight; the sink's round "
                   f"trip of the same answers subtracted): dyncast mean {d_mean:.3f} ms, median "
                   f"{d_p50:.3f} ms; {FLOOR} mean {f_mean:.3f} ms, median {f_p50:.3f} ms; "
                   f"dyncast/{FLOOR}: mean {r:.2f}x, median {r50:.2f}x (target <= "
                   f"{TARGET_LATENCY}x: mean {verdict(r)}, median {verdict(r50)})")
    if dt and ft and dt.cpu_us_per_request and ft.cpu_us_per_request:
        out.append(f"controller CPU per new flow dyncast/{FLOOR}: {dt.cpu_us_per_request:.0f} / "
                   f"{ft.cpu_us_per_request:.0f} us = "
                   f"{dt.cpu_us_per_request / ft.cpu_us_per_request:.2f}x")
    mt = tp("minimal")
    if dt and mt:
        out.append(f"throughput dyncast/minimal (the framework's classes): "
                   f"{dt.rate / mt.rate:.2f}x")
    for switches in (1, p.switches):
        dl = pooled(run.rows, "dyncast", "latency", switches)
        ml = pooled(run.rows, "minimal", "latency", switches)
        if dl and ml and dl.latencies_ms and ml.latencies_ms:
            r = statistics.mean(dl.latencies_ms) / statistics.mean(ml.latencies_ms)
            r50 = dl.latency(0.5) / ml.latency(0.5)
            out.append(f"latency dyncast/minimal ({switches} switch{'es' if switches > 1 else ''}"
                       f", 1 in flight each, transport included): mean {r:.2f}x, median "
                       f"{r50:.2f}x")
    for a, b, what in (("dyncast-nostore", "dyncast", "what the store's writes cost"),
                       ("dyncast-nostore", FLOOR, "packet path vs the floor"),
                       ("dyncast", "minimal-raw-ofconn", "only the floor with apps/ofconn.py"),
                       ("minimal-raw-ofconn", FLOOR, "what apps/ofconn.py gives the floor")):
        pa, pb = tp(a), tp(b)
        if pa and pb:
            out.append(f"throughput {a}/{b}: {pa.rate / pb.rate:.2f}x ({what})")
    for a, b in (("dyncast", "minimal"), ("dyncast-nostore", FLOOR),
                 ("dyncast", "minimal-raw-ofconn"), ("minimal-raw-ofconn", FLOOR)):
        pa, pb = tp(a), tp(b)
        if pa and pb and pa.cpu_us_per_request and pb.cpu_us_per_request:
            out.append(f"controller CPU per new flow {a}/{b}: {pa.cpu_us_per_request:.0f} / "
                       f"{pb.cpu_us_per_request:.0f} us = "
                       f"{pa.cpu_us_per_request / pb.cpu_us_per_request:.2f}x")
    for kind in ("minimal", "dyncast"):
        sink = tp(f"sink-{kind}")
        rates = [(ph.rate, s.name) for s in SUBJECTS if s.kind == kind and (ph := tp(s.name))]
        if sink and rates:
            rate, name = max(rates)
            out.append(f"generator ceiling verifying {kind}-style answers (against the sink): "
                       f"{sink.rate:.0f} resp/s = {sink.rate / rate:.1f}x the fastest such "
                       f"controller ({name})")
    return out


def latency_above_floor(run: Run) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """(mean, median) ms above the transport floor, 1 switch with 1 in flight, of dyncast and
    of the floor app: each one's latency minus the sink's answering the same way; None when a
    phase is missing or the difference is not positive (the floor app's time lost in noise)."""
    got = []
    for name, sink in (("dyncast", "sink-dyncast"), (FLOOR, "sink-minimal")):
        app, floor = (pooled(run.rows, n, "latency", 1) for n in (name, sink))
        if not (app and floor and app.latencies_ms and floor.latencies_ms):
            return None
        mean = statistics.mean(app.latencies_ms) - statistics.mean(floor.latencies_ms)
        p50 = app.latency(0.5) - floor.latency(0.5)
        if mean <= 0 or p50 <= 0:
            return None
        got.append((mean, p50))
    return got[0], got[1]


def missing_figures(p: Params, run: Run) -> list[str]:
    """The target figures this run could not give (a quick run must give them all)."""
    missing = []
    dt = pooled(run.rows, "dyncast", "throughput", p.switches)
    ft = pooled(run.rows, FLOOR, "throughput", p.switches)
    if not (dt and ft and dt.rate and ft.rate):
        missing.append(f"throughput dyncast/{FLOOR}")
    elif not (dt.cpu_us_per_request and ft.cpu_us_per_request):
        missing.append(f"controller CPU per new flow dyncast/{FLOOR}")
    if latency_above_floor(run) is None:
        missing.append(f"latency above the transport floor dyncast/{FLOOR}")
    return missing


# --- main -----------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 4 switches, both sinks, dyncast and minimal-raw, short "
                         "phases, one round, no results file; exits 1 if anything fails or a "
                         "target figure is missing")
    ap.add_argument("--switches", type=int, default=16)
    ap.add_argument("--window", type=int, default=64, help="in flight per switch (throughput)")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds before each phase")
    ap.add_argument("--loops", type=int, default=4, help="timed loops per phase")
    ap.add_argument("--duration", type=float, default=1.5, help="seconds per loop")
    ap.add_argument("--rounds", type=int, default=2, help="runs per controller (pooled)")
    ap.add_argument("--framework", choices=("ryu", "os-ken"), default="ryu")
    ap.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    ap.add_argument("--no-health", action="store_true",
                    help="dyncast with passive health off (on by default)")
    names = [s.name for s in SUBJECTS + SINKS]
    ap.add_argument("--only", choices=names, action="append", metavar="NAME",
                    help=f"measure only these (repeatable): {', '.join(names)}")
    ap.add_argument("--output", type=Path, default=None,
                    help="results file (default bench/results/cbench.txt; none with --quick)")
    args = ap.parse_args()
    if args.quick:
        args.switches, args.warmup, args.loops, args.duration, args.rounds = (
            min(args.switches, 4), 0.2, 1, 0.4, 1)
    p = Params(args.switches, args.window, args.warmup, args.loops, args.duration, args.rounds,
               args.framework, not args.no_pin, args.quick, not args.no_health)
    sc = Scenario(p.switches)
    quick_set = ["sink-dyncast", "sink-minimal", FLOOR, "dyncast"]
    only = set(args.only or (quick_set if p.quick else names))
    avail = cpus()
    ctl_cpu = None
    pinning = "no CPU pinning"
    if p.pin and len(avail) >= 2:
        ctl_cpu, gen_cpu = avail[0], avail[1]
        os.sched_setaffinity(0, {gen_cpu})
        pinning = f"controller (or sink) pinned to CPU {ctl_cpu}, generator to CPU {gen_cpu}"
    run = Run(load_before=loadavg())
    with tempfile.TemporaryDirectory(prefix="cbench-") as tmpdir:
        tmp = Path(tmpdir)
        if not args.only:
            print("handler costs (in-process)", flush=True)
            handler_costs(p, 300 if p.quick else 2000, ctl_cpu, run)
        for sink in SINKS:
            if sink.name in only:
                print(sink.name, flush=True)
                bench_subject(sink, p, sc, 0, tmp, run, ctl_cpu)
        for rnd in range(1, p.rounds + 1):
            for subject in SUBJECTS:
                if subject.name in only:
                    print(f"round {rnd}: {subject.name}", flush=True)
                    bench_subject(subject, p, sc, rnd, tmp, run, ctl_cpu)
    run.load_after = loadavg()
    if set(names) <= only or p.quick:
        run.failures += [f"figure missing: {m}" for m in missing_figures(p, run)]
    text = report(p, sc, run, pinning)
    print()
    print(text, end="")
    out = args.output or (None if p.quick else RESULTS / "cbench.txt")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"(written to {out})")
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""The D-MA (Dyncast metric agent): registers (D-SID, D-BID) bindings and reports their metrics.

Boundary: it reads `/proc/stat` and each instance's `GET /stats`, and talks to the controller only
through `/dyncast/v1/instances` and `/dyncast/v1/metrics`. The report-timing policy and the report
assembly are pure (time is a parameter); `Agent` and `main` are the I/O shell around them.

Reactivation (draft-du-coordination-for-serivce-ip-in-mec, steps 3-5): an instance given with
`--inactive` is registered and reported as not serving. The controller's answer to a metrics
report may carry commands for it; `reactivate` runs the instance's `--start` command (then the
instance is reported serving as soon as its stats can be read), `deactivate` runs its `--stop`
command or, without one, terminates the process `--start` began, and the instance is reported not
serving again. An instance with a `--start` command and without `--inactive` is started by the
D-MA when it starts; whatever the D-MA started is stopped when it exits.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import logging
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from math import inf
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

API = "/dyncast/v1"
CONTROLLER_TIMEOUT = 2.0  # seconds for one call to the controller
STATS_TIMEOUT = 1.0  # seconds for one read of an instance's /stats
BACKOFF_FIRST = 0.5  # first registration retry delay, doubled up to BACKOFF_MAX
BACKOFF_MAX = 5.0
CHANGE_FLOOR = 1.0  # relative changes are measured against at least this magnitude
LOG_BODY_CHARS = 200
MIN_PERIOD = 0.05  # shortest sampling period, used when --min-interval is 0

log = logging.getLogger("dyncast-dma")


# ---- pure part: bindings, CPU, instance stats, reports, report timing -----------------------


@dataclass(frozen=True)
class Binding:
    """One (D-SID, D-BID) binding and where to read its instance's stats."""

    dsid: str
    dbid: str
    stats_url: str


def parse_binding(text: str) -> Binding:
    """Parse `DSID=DBID@STATS_URL`, or raise ValueError naming the bad part."""
    dsid, eq, rest = text.partition("=")
    dbid, at, url = rest.partition("@")
    if not eq or not at:
        raise ValueError(f"expected DSID=DBID@STATS_URL, got {text!r}")
    for what, value in (("D-SID", dsid), ("D-BID", dbid)):
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            raise ValueError(f"{what}: not an IPv4 address: {value!r}") from None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"STATS_URL: not an http URL: {url!r}")
    return Binding(dsid=str(ipaddress.IPv4Address(dsid)),
                   dbid=str(ipaddress.IPv4Address(dbid)), stats_url=url)


@dataclass(frozen=True)
class CpuSample:
    """Cumulative busy and total jiffies of all CPUs, from the `cpu` line of /proc/stat."""

    busy: int
    total: int


def parse_cpu_line(text: str) -> CpuSample | None:
    """Read the aggregate `cpu` line of /proc/stat content; None if it is missing or garbled."""
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0] != "cpu":
            continue
        try:
            values = [int(v) for v in fields[1:9]]  # user..steal; guest is inside user already
        except ValueError:
            return None
        if len(values) < 4:
            return None
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return CpuSample(busy=sum(values) - idle, total=sum(values))
    return None


def cpu_fraction(prev: CpuSample | None, cur: CpuSample | None) -> float:
    """CPU utilisation in [0, 1] between two samples; 0 when it cannot be told."""
    if prev is None or cur is None or cur.total <= prev.total:
        return 0.0
    fraction = (cur.busy - prev.busy) / (cur.total - prev.total)
    return min(1.0, max(0.0, fraction))


@dataclass(frozen=True)
class InstanceStats:
    """What the D-MA takes from an instance's `/stats`."""

    sessions: int
    queue: int
    capacity: int
    processing_delay_ms: float | None
    service_ms: float | None = None


def _delay(value: object) -> float | None:
    """`value` as a delay in ms if it is a finite number >= 0, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < inf:
        return None
    return float(value)


def _count(value: object, low: int) -> int | None:
    """`value` if it is an integer >= low (booleans excluded), else None."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        return None
    return value


def parse_stats(data: object) -> InstanceStats | None:
    """Validate an instance's `/stats` JSON; None if it is unusable."""
    if not isinstance(data, Mapping):
        return None
    sessions, queue = _count(data.get("sessions"), 0), _count(data.get("queue"), 0)
    capacity = _count(data.get("capacity"), 1)
    if sessions is None or queue is None or capacity is None:
        return None
    return InstanceStats(sessions=sessions, queue=queue, capacity=capacity,
                         processing_delay_ms=_delay(data.get("processing_delay_ms")),
                         service_ms=_delay(data.get("service_ms")))


def build_report(dbid: str, cpu: float, stats: InstanceStats | None,
                 capacity: int) -> dict[str, Any]:
    """One metric report; without stats the instance is reported inactive with `capacity`."""
    report: dict[str, Any] = {"dbid": dbid, "cpu": round(cpu, 4)}
    if stats is None:
        report.update(sessions=0, queue=0, capacity=capacity, active=False)
        return report
    report.update(sessions=stats.sessions, queue=stats.queue, capacity=stats.capacity,
                  active=True)
    if stats.processing_delay_ms is not None:
        report["processing_delay_ms"] = round(stats.processing_delay_ms, 3)
    if stats.service_ms is not None:
        report["service_ms"] = round(stats.service_ms, 3)
    return report


def report_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """The numeric values of a report that the timing policy watches."""
    metrics = {key: float(value) for key, value in report.items()
               if key not in ("dbid", "dsid", "active")}
    metrics["active"] = 1.0 if report.get("active", True) else 0.0
    return metrics


def moved(old: Mapping[str, float], new: Mapping[str, float], threshold: float) -> bool:
    """Whether any metric changed by more than `threshold`, relative to its size."""
    if old.keys() != new.keys():
        return True
    for key, before in old.items():
        after = new[key]
        if abs(after - before) > threshold * max(abs(before), abs(after), CHANGE_FLOOR):
            return True
    return False


class ReportPolicy:
    """Report at once, then every `interval`, sooner on a move past `threshold`; not too often."""

    def __init__(self, interval: float, min_interval: float, threshold: float) -> None:
        self.interval = interval
        self.min_interval = min_interval
        self.threshold = threshold
        self._last_at: float | None = None
        self._last: dict[str, float] = {}

    def decide(self, now: float, metrics: Mapping[str, float]) -> bool:
        """Whether to send `metrics` at `now`; a yes is remembered as the last report."""
        if self._last_at is not None:
            elapsed = now - self._last_at
            if elapsed < self.min_interval:
                return False
            if elapsed < self.interval and not moved(self._last, metrics, self.threshold):
                return False
        self._last_at = now
        self._last = dict(metrics)
        return True

    def reset(self) -> None:
        """Forget the last report, so the next decision sends at once."""
        self._last_at = None
        self._last = {}


# ---- I/O shell --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """The D-MA's command line, validated."""

    controller: str
    name: str
    bindings: tuple[Binding, ...]
    interval: float = 2.0
    min_interval: float = 0.5
    threshold: float = 0.2
    register_timeout: float | None = None
    cpu_source: str = "host"
    inactive: frozenset[str] = frozenset()  # D-BIDs registered as not serving
    start: Mapping[str, str] = field(default_factory=dict)  # D-BID -> command that starts it
    stop: Mapping[str, str] = field(default_factory=dict)  # D-BID -> command that stops it


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status and body text."""

    status: int
    body: str

    def brief(self) -> str:
        """The status and the start of the body, for one log line."""
        return f"HTTP {self.status}: {self.body.strip()[:LOG_BODY_CHARS]}"


class UnreachableError(Exception):
    """No HTTP answer at all (refused, timed out, connection dropped)."""


def call(opener: urllib.request.OpenerDirector, method: str, url: str,
         body: Mapping[str, Any] | None, timeout: float) -> Answer:
    """Make one HTTP request with an optional JSON body; UnreachableError if nothing answers."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with opener.open(request, timeout=timeout) as response:
            return Answer(response.status, response.read().decode(errors="replace"))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.read().decode(errors="replace"))
    except (OSError, http.client.HTTPException) as exc:
        raise UnreachableError(str(getattr(exc, "reason", exc)) or type(exc).__name__) from None


def fetch_stats(opener: urllib.request.OpenerDirector, url: str) -> InstanceStats | None:
    """Read and validate one instance's `/stats`; None if that fails in any way."""
    try:
        answer = call(opener, "GET", url, None, STATS_TIMEOUT)
        return parse_stats(json.loads(answer.body)) if answer.status == 200 else None
    except (UnreachableError, ValueError):
        return None


class CpuMeter:
    """CPU utilisation between consecutive reads of /proc/stat."""

    def __init__(self, path: str = "/proc/stat") -> None:
        self.path = path
        self._prev = self._sample()

    def _sample(self) -> CpuSample | None:
        """The current cumulative sample, or None where /proc/stat cannot be read."""
        try:
            with open(self.path, encoding="ascii") as f:
                return parse_cpu_line(f.read())
        except OSError:
            return None

    def read(self) -> float:
        """Utilisation since the previous read."""
        cur = self._sample()
        fraction = cpu_fraction(self._prev, cur)
        self._prev = cur
        return fraction


def parse_command_spec(text: str) -> tuple[str, str]:
    """Parse `DBID=COMMAND` (a `--start`/`--stop` option), or raise ValueError."""
    dbid, eq, command = text.partition("=")
    try:
        dbid = str(ipaddress.IPv4Address(dbid))
    except ValueError:
        raise ValueError(f"expected DBID=COMMAND with an IPv4 D-BID, got {text!r}") from None
    if not eq or not shlex.split(command):
        raise ValueError(f"expected DBID=COMMAND with a command, got {text!r}")
    return dbid, command


def parse_commands(body: str) -> list[dict[str, Any]]:
    """The well-formed commands in a metrics answer (others are ignored: older controllers
    send none)."""
    try:
        data = json.loads(body)
    except ValueError:
        return []
    commands = data.get("commands") if isinstance(data, dict) else None
    if not isinstance(commands, list):
        return []
    return [c for c in commands if isinstance(c, dict) and c.get("op") in COMMAND_OPS
            and isinstance(c.get("dbid"), str)]


COMMAND_OPS = ("reactivate", "deactivate")


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the D-MA dies, so no instance outlives its agent."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Launcher:
    """Starts and stops the instances this D-MA controls, with the configured commands."""

    def __init__(self, start: Mapping[str, str], stop: Mapping[str, str]) -> None:
        self.start_cmds = dict(start)
        self.stop_cmds = dict(stop)
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, dbid: str) -> bool:
        """Run the instance's start command (unless what it started still runs)."""
        command = self.start_cmds.get(dbid)
        child = self.children.get(dbid)
        if command is None or (child is not None and child.poll() is None):
            return command is not None
        log.info("starting %s: %s", dbid, command)
        self.children[dbid] = subprocess.Popen(shlex.split(command), stdin=subprocess.DEVNULL,
                                               preexec_fn=_die_with_parent)
        return True

    def stop(self, dbid: str) -> None:
        """Run the instance's stop command, or terminate the process its start command began."""
        command = self.stop_cmds.get(dbid)
        if command is not None:
            log.info("stopping %s: %s", dbid, command)
            subprocess.run(shlex.split(command), stdin=subprocess.DEVNULL, timeout=30,
                           check=False)
        child = self.children.pop(dbid, None)
        if child is not None and command is None:
            log.info("stopping %s: terminating pid %d", dbid, child.pid)
            _end(child)

    def close(self) -> None:
        """Stop everything this D-MA started."""
        for dbid in list(self.children):
            _end(self.children.pop(dbid))


def _end(child: subprocess.Popen[bytes]) -> None:
    """Terminate a child (SIGKILL after 10 s) and reap it."""
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


@dataclass
class Tracked:
    """The D-MA's view of one binding: registered or not, its policy, its last capacity, and
    whether it is meant to serve (false while inactive)."""

    binding: Binding
    policy: ReportPolicy
    registered: bool = False
    readable: bool | None = None
    capacity: int = 1
    next_register: float = 0.0
    enabled: bool = True


class Agent:
    """Registers the bindings, reports their metrics, and withdraws them."""

    def __init__(self, options: Options, opener: urllib.request.OpenerDirector) -> None:
        self.options = options
        self.opener = opener
        self.cpu = CpuMeter()
        self.tracked = [Tracked(b, ReportPolicy(options.interval, options.min_interval,
                                                options.threshold),
                                enabled=b.dbid not in options.inactive)
                        for b in options.bindings]
        self.launcher = Launcher(options.start, options.stop)

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None) -> Answer:
        """Call the controller's REST API."""
        return call(self.opener, method, self.options.controller + API + path, body,
                    CONTROLLER_TIMEOUT)

    def register(self, t: Tracked) -> None:
        """POST one binding and log a refusal; UnreachableError if the controller is silent."""
        b = t.binding
        body = {"dsid": b.dsid, "dbid": b.dbid, "dma": self.options.name, "active": t.enabled}
        answer = self._call("POST", "/instances", body)
        t.registered = 200 <= answer.status < 300
        if t.registered:
            t.policy.reset()
            print(f"registered {b.dsid}={b.dbid}", flush=True)
        else:
            log.warning("register %s=%s refused: %s", b.dsid, b.dbid, answer.brief())

    def register_all(self, stop: threading.Event, deadline: float | None) -> bool:
        """Try every binding, with backoff, until the controller answered for each of them."""
        pending = list(self.tracked)
        backoff = BACKOFF_FIRST
        while pending:
            for t in list(pending):
                try:
                    self.register(t)
                    pending.remove(t)
                except UnreachableError as exc:
                    log.warning("register %s=%s failed: %s; retrying in %.1f s",
                                t.binding.dsid, t.binding.dbid, exc, backoff)
            if not pending:
                return True
            delay = backoff if deadline is None else min(backoff, deadline - time.monotonic())
            if delay <= 0 or stop.wait(delay):
                return False
            backoff = min(BACKOFF_MAX, backoff * 2)
        return True

    def report_loop(self, stop: threading.Event) -> None:
        """Sample every `min(min_interval, interval)` and report what the policy lets through."""
        period = max(MIN_PERIOD, min(self.options.min_interval, self.options.interval))
        while True:
            now = time.monotonic()
            cpu = self.cpu.read()
            for t in self.tracked:
                self._step(t, now, cpu)
            if stop.wait(period):
                return

    def _step(self, t: Tracked, now: float, cpu: float) -> None:
        """One sample of one binding: re-register if needed, then maybe report."""
        try:
            if not t.registered:
                if now < t.next_register:
                    return
                t.next_register = now + self.options.interval
                self.register(t)
                if not t.registered:
                    return
            self._report(t, now, cpu)
        except UnreachableError as exc:
            log.warning("controller unreachable (%s=%s): %s", t.binding.dsid, t.binding.dbid, exc)

    def _report(self, t: Tracked, now: float, cpu: float) -> None:
        """Read the instance's stats, build its report, and send it if the policy says so."""
        stats = fetch_stats(self.opener, t.binding.stats_url)
        if (stats is not None) != t.readable:
            t.readable = stats is not None
            state = "readable" if t.readable else "unreadable: reporting inactive"
            log.info("stats of %s at %s %s", t.binding.dbid, t.binding.stats_url, state)
        if stats is not None:
            t.capacity = stats.capacity
        if self.options.cpu_source == "instance":
            cpu = 0.0 if stats is None else min(1.0, stats.sessions / stats.capacity)
        report = build_report(t.binding.dbid, cpu, stats if t.enabled else None, t.capacity)
        if not t.policy.decide(now, report_metrics(report)):
            return
        answer = self._call("POST", "/metrics", report)
        if 200 <= answer.status < 300:
            for command in parse_commands(answer.body):
                self.execute(command)
        elif answer.status == 404:
            log.warning("controller forgot %s (%s); registering again", t.binding.dbid,
                        answer.brief())
            t.registered = False
            t.next_register = now
        elif not 200 <= answer.status < 300:
            log.warning("metrics for %s refused: %s", t.binding.dbid, answer.brief())

    def execute(self, command: Mapping[str, Any]) -> None:
        """Carry out a controller command for one of our instances (steps 3-4 of the draft's
        reactivation procedure, or its reverse)."""
        t = next((t for t in self.tracked if t.binding.dbid == command["dbid"]), None)
        if t is None:
            log.warning("command for an instance this D-MA does not have: %s", command)
            return
        op = command["op"]
        print(f"command {op} {t.binding.dbid}: {command.get('reason', '')}", flush=True)
        if op == "reactivate":
            if not self.launcher.start(t.binding.dbid):
                log.warning("reactivate %s: no --start command; reporting it serving if its "
                            "stats can be read", t.binding.dbid)
            t.enabled = True
        else:
            t.enabled = False
            self.launcher.stop(t.binding.dbid)
        t.policy.reset()  # report the new state at the next sample

    def withdraw_all(self) -> None:
        """DELETE every binding; an unknown or unreachable one is logged and skipped."""
        for t in self.tracked:
            try:
                answer = self._call("DELETE", f"/instances/{t.binding.dbid}", None)
            except UnreachableError as exc:
                log.warning("withdraw %s failed: %s", t.binding.dbid, exc)
                continue
            if 200 <= answer.status < 300:
                print(f"withdrawn {t.binding.dsid}={t.binding.dbid}", flush=True)
            elif answer.status != 404:
                log.warning("withdraw %s refused: %s", t.binding.dbid, answer.brief())


def run(options: Options, stop: threading.Event) -> int:
    """Register, report until `stop`, withdraw; 1 if the controller never answered in time."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    agent = Agent(options, opener)
    timeout = options.register_timeout
    deadline = None if timeout is None else time.monotonic() + timeout
    code = 0
    for t in agent.tracked:  # instances this D-MA manages and that should serve: start them
        if t.enabled and t.binding.dbid in options.start:
            agent.launcher.start(t.binding.dbid)
    if agent.register_all(stop, deadline):
        agent.report_loop(stop)
    elif not stop.is_set():
        log.error("controller %s did not answer within %g s", options.controller, timeout)
        code = 1
    agent.withdraw_all()
    agent.launcher.close()
    return code


def _positive(text: str) -> float:
    """An argparse type: a number > 0."""
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _non_negative(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _binding(text: str) -> Binding:
    """An argparse type: one `DSID=DBID@STATS_URL`."""
    try:
        return parse_binding(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _command_spec(text: str) -> tuple[str, str]:
    """An argparse type: one `DBID=COMMAND`."""
    try:
        return parse_command_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _controller(text: str) -> str:
    """An argparse type: the controller's base URL, without a trailing slash."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"not an http URL: {text!r}")
    return text.rstrip("/")


def parse_args(argv: Sequence[str] | None) -> Options:
    """Parse and cross-check the command line."""
    parser = argparse.ArgumentParser(prog="dyncast-dma", description="Dyncast metric agent.")
    parser.add_argument("--controller", required=True, type=_controller,
                        help="controller REST base URL, e.g. http://10.254.2.1:8080")
    parser.add_argument("--name", required=True, help="this D-MA's name")
    parser.add_argument("--instance", required=True, action="append", type=_binding,
                        metavar="DSID=DBID@STATS_URL", help="a binding to register (repeatable)")
    parser.add_argument("--interval", type=_positive, default=2.0,
                        help="seconds between periodic reports (default 2.0)")
    parser.add_argument("--min-interval", type=_non_negative, default=0.5,
                        help="least seconds between two reports of one instance (default 0.5)")
    parser.add_argument("--threshold", type=_non_negative, default=0.2,
                        help="relative change that triggers an early report (default 0.2)")
    parser.add_argument("--register-timeout", type=_positive, default=None,
                        help="give up (exit 1) if the controller has not answered by then "
                             "(default: retry forever)")
    parser.add_argument("--cpu-source", choices=("host", "instance"), default="host",
                        help="CPU utilisation from the host's /proc/stat (default), or the "
                             "instance's own busy fraction (sessions/capacity): use 'instance' "
                             "where hosts share one kernel, as in Mininet")
    parser.add_argument("--inactive", action="append", default=[], metavar="DBID",
                        help="register this instance as inactive (not serving) until the "
                             "controller sends `reactivate` (repeatable)")
    parser.add_argument("--start", action="append", default=[], type=_command_spec,
                        metavar="DBID=COMMAND", help="command that starts the instance on "
                        "`reactivate` (repeatable)")
    parser.add_argument("--stop", action="append", default=[], type=_command_spec,
                        metavar="DBID=COMMAND", help="command that stops the instance on "
                        "`deactivate` (default: terminate what --start started)")
    args = parser.parse_args(argv)
    dbids = [b.dbid for b in args.instance]
    for option, values in (("--inactive", args.inactive),
                           ("--start", [d for d, _ in args.start]),
                           ("--stop", [d for d, _ in args.stop])):
        for dbid in values:
            if dbid not in dbids:
                parser.error(f"{option} {dbid}: not the D-BID of any --instance")
    if args.min_interval > args.interval:
        parser.error("--min-interval must not exceed --interval")
    if len(set(dbids)) != len(dbids):
        parser.error("--instance: each D-BID may appear only once")
    return Options(controller=args.controller, name=args.name, bindings=tuple(args.instance),
                   interval=args.interval, min_interval=args.min_interval,
                   threshold=args.threshold, register_timeout=args.register_timeout,
                   cpu_source=args.cpu_source, inactive=frozenset(args.inactive),
                   start=dict(args.start), stop=dict(args.stop))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the D-MA until SIGTERM or SIGINT, then withdraw its bindings and exit 0."""
    options = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="dyncast-dma %(levelname)s: %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        """Ask the loops to stop."""
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return run(options, stop)


if __name__ == "__main__":
    sys.exit(main())

"""The D-MA's loop: register the bindings, report their metrics, carry out the controller's
commands, withdraw. Boundary: the I/O shell around agents/dma/metrics.py (clock, /proc/stat,
HTTP through agents/dma/wire.py, child processes through agents/dma/launcher.py).
"""

from __future__ import annotations

import http.client
import logging
import ssl
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.dma.launcher import Launcher
from agents.dma.metrics import (
    Binding,
    CpuSample,
    ReportPolicy,
    build_report,
    cpu_fraction,
    parse_commands,
    parse_cpu_line,
    report_metrics,
)
from agents.dma.wire import (
    Answer,
    UnreachableError,
    controller_call,
    controller_link,
    opener,
    read_stats,
)
from agents.signing import Signer

BACKOFF_FIRST = 0.5  # first registration retry delay, doubled up to BACKOFF_MAX
BACKOFF_MAX = 5.0
REFUSED_RETRY = 30.0  # once serving: seconds between asks for a binding refused for good
# a registration refused for good: asking again as it is cannot succeed until an operator acts
# (the agent table, the service, another agent's instance, a bad address). Not 401 (a clock,
# sequence or a table not re-read yet: the next signed call may pass), nor 408, 425, 429 (come
# again later), nor 5xx.
TRANSIENT_4XX = frozenset({401, 408, 425, 429})
MIN_PERIOD = 0.05  # shortest sampling period, used when --min-interval is 0
# no usable answer from the controller: nothing answered, or the answer was too long
UNANSWERED = (UnreachableError, http.client.HTTPException)

log = logging.getLogger("dyncast-dma")


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
    key_file: str | None = None  # the agent key every call is signed with (agents/signing.py)
    tls: ssl.SSLContext | None = field(default=None, compare=False)  # https (agents/tls.py)


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


@dataclass
class Tracked:
    """The D-MA's view of one binding: registered or not, its policy, its last capacity, and
    whether it is meant to serve (false while inactive)."""

    binding: Binding
    policy: ReportPolicy
    registered: bool = False
    readable: bool | None = None
    problem: str = ""  # why its stats were last unusable ("": they were usable)
    capacity: int = 1
    next_register: float = 0.0
    enabled: bool = True
    refusal: str = ""  # the controller's answer refusing it for good ("": not refused so)


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
        self.signer = Signer.from_file(options.key_file) if options.key_file else None
        self.link = controller_link(options.controller, options.tls)  # one kept-alive connection

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None) -> Answer:
        """Call the controller's REST API."""
        return controller_call(self.link, method, path, body, self.signer)

    def register(self, t: Tracked) -> None:
        """POST one binding and log a refusal; UnreachableError if the controller is silent.
        A refusal for good (a 4xx but those in TRANSIENT_4XX) is kept in `t.refusal` and
        logged when it first comes and whenever the controller's reason changes."""
        b = t.binding
        body = {"dsid": b.dsid, "dbid": b.dbid, "dma": self.options.name, "active": t.enabled}
        answer = self._call("POST", "/instances", body)
        t.registered = 200 <= answer.status < 300
        refused = 400 <= answer.status < 500 and answer.status not in TRANSIENT_4XX
        if t.registered:
            t.policy.reset()
            print(f"registered {b.dsid}={b.dbid}", flush=True)
        elif refused and answer.brief() != t.refusal:
            log.warning("register %s=%s refused for good: %s; not serving it until the "
                        "controller takes it", b.dsid, b.dbid, answer.brief())
        elif not refused:
            log.warning("register %s=%s refused: %s", b.dsid, b.dbid, answer.brief())
        t.refusal = answer.brief() if refused else ""
        if refused:  # once serving, asked for again only seldom (the log has said why)
            t.next_register = time.monotonic() + max(REFUSED_RETRY, self.options.interval)

    def register_all(self, stop: threading.Event, deadline: float | None) -> bool:
        """Try every binding, with backoff, until the controller answered for each of them,
        and not with a refusal for good for every one; False at `deadline` or `stop`.
        Bindings still refused then are asked for again by the report loop."""
        answered: set[int] = set()
        backoff = BACKOFF_FIRST
        while True:
            for i, t in enumerate(self.tracked):
                if i in answered and not t.refusal:
                    continue
                try:
                    self.register(t)
                    answered.add(i)
                except UNANSWERED as exc:
                    log.warning("register %s=%s failed: %s; retrying in %.1f s",
                                t.binding.dsid, t.binding.dbid, exc, backoff)
            if len(answered) == len(self.tracked) and not all(t.refusal for t in self.tracked):
                return True
            delay = backoff if deadline is None else min(backoff, deadline - time.monotonic())
            if delay <= 0 or stop.wait(delay):
                return False
            backoff = min(BACKOFF_MAX, backoff * 2)

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
        except UNANSWERED as exc:
            log.warning("controller unreachable (%s=%s): %s", t.binding.dsid, t.binding.dbid, exc)

    def _report(self, t: Tracked, now: float, cpu: float) -> None:
        """Read the instance's stats, build its report, and send it if the policy says so."""
        stats, problem = read_stats(self.opener, t.binding.stats_url)
        if (stats is not None) != t.readable or problem != t.problem:
            t.readable, t.problem = stats is not None, problem
            state = "readable" if t.readable else f"unusable ({problem}): reporting not serving"
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
        elif answer.status == 400 and report.get("active"):
            log.warning("metrics for %s refused: %s; reporting it not serving", t.binding.dbid,
                        answer.brief())
            self._call("POST", "/metrics", build_report(t.binding.dbid, 0.0, None, t.capacity))
            t.policy.reset()
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
        print(f"command {op} {t.binding.dbid}: {str(command.get('reason', ''))[:200]}", flush=True)
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
        """DELETE every binding; an unknown or unreachable one is logged and skipped, and one
        the controller refused for good (not ours, or unknown to it) is not asked for."""
        for t in self.tracked:
            if t.refusal and not t.registered:
                continue
            try:
                answer = self._call("DELETE", f"/instances/{t.binding.dbid}", None)
            except Exception as exc:  # one failure must not keep the others
                log.warning("withdraw %s failed: %s", t.binding.dbid, exc)
                continue
            if 200 <= answer.status < 300:
                print(f"withdrawn {t.binding.dsid}={t.binding.dbid}", flush=True)
            elif answer.status != 404:
                log.warning("withdraw %s refused: %s", t.binding.dbid, answer.brief())


def run(options: Options, stop: threading.Event) -> int:
    """Register, report until `stop`, withdraw; 1 if no binding was registered in time
    (the controller never answered, or refused every binding for good)."""
    agent = Agent(options, opener(options.tls))
    timeout = options.register_timeout
    deadline = None if timeout is None else time.monotonic() + timeout
    code = 0
    try:
        for t in agent.tracked:  # instances this D-MA manages and that should serve: start them
            if t.enabled and t.binding.dbid in options.start:
                agent.launcher.start(t.binding.dbid)
        if agent.register_all(stop, deadline):
            agent.report_loop(stop)
        elif not stop.is_set():
            refused = [t for t in agent.tracked if t.refusal]
            for t in refused:
                log.error("register %s=%s refused for good: %s", t.binding.dsid, t.binding.dbid,
                          t.refusal)
            if len(refused) == len(agent.tracked):
                log.error("controller %s refused every binding; none registered within %g s",
                          options.controller, timeout)
            else:
                log.error("controller %s did not answer within %g s", options.controller,
                          timeout)
            code = 1
    except Exception:  # whatever broke, the controller must not keep steering to us
        log.exception("D-MA failed; withdrawing every binding, then exiting 1")
        code = 1
    finally:
        agent.withdraw_all()
        agent.link.close()
        agent.launcher.close()
    return code

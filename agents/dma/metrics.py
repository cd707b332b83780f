"""The D-MA's pure part: bindings, CPU, instance stats, reports, report timing, and the commands
in a controller's answer. No I/O; time is a parameter. What it parses from the network is
bounded (size and nesting depth) before `json` sees it.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from math import inf
from typing import Any
from urllib.parse import urlsplit

CHANGE_FLOOR = 1.0  # relative changes are measured against at least this magnitude
MAX_COUNT = 10_000_000  # sessions, queue, capacity: the controller's bound (MAX_SESSIONS)
MAX_DELAY_MS = 3_600_000.0  # processing_delay_ms: the controller's bound
MAX_JSON_CHARS = 64 * 1024  # the longest stats document or controller answer parsed
MAX_DEPTH = 16  # the deepest nesting parsed (stats are flat; answers two levels deep)
MAX_NUMBER_CHARS = 40  # the longest number literal parsed
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


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


def _count(value: object, low: int) -> int | None:
    """`value` if it is an integer in [low, MAX_COUNT] (booleans excluded), else None."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_COUNT:
        return None
    return value


def stats_problem(data: object) -> str | None:
    """Why an instance's `/stats` JSON cannot be reported as it is (None: it can). Counts are
    integers the controller takes (0..MAX_COUNT, capacity from 1); `processing_delay_ms` and
    `service_ms`, when given, numbers in [0, MAX_DELAY_MS]."""
    if not isinstance(data, Mapping):
        return "not a JSON object"
    for key, low in (("sessions", 0), ("queue", 0), ("capacity", 1)):
        if _count(data.get(key), low) is None:
            return f"{key}: {data.get(key)!r:.40} is not an integer in [{low}, {MAX_COUNT}]"
    for key in ("processing_delay_ms", "service_ms"):
        delay = data.get(key)
        if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int | float)
                                  or not 0 <= delay <= MAX_DELAY_MS):
            return f"{key}: {delay!r:.40} is not a number in [0, {MAX_DELAY_MS}]"
    return None


def parse_stats(data: object) -> InstanceStats | None:
    """Validate an instance's `/stats` JSON; None if it is unusable (see `stats_problem`)."""
    if stats_problem(data) is not None or not isinstance(data, Mapping):
        return None
    delay, service = data.get("processing_delay_ms"), data.get("service_ms")
    return InstanceStats(sessions=data["sessions"], queue=data["queue"],
                         capacity=data["capacity"],
                         processing_delay_ms=None if delay is None else float(delay),
                         service_ms=None if service is None else float(service))


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON `text`, brackets in strings aside."""
    brackets = _NOT_BRACKETS.sub("", _STRING.sub("", text))
    deepest = level = 0
    for c in brackets:
        level += 1 if c in "[{" else -1
        deepest = max(deepest, level)
    return deepest


def _bounded_float(text: str) -> float:
    """A float literal, refused when long or not finite."""
    value = float(text) if len(text) <= MAX_NUMBER_CHARS else inf
    if not -inf < value < inf:
        raise ValueError(f"number out of range: {text[:24]}")
    return value


def _bounded_int(text: str) -> int:
    """An integer literal, refused when long (before Python converts it)."""
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"number out of range: {text[:24]}...")
    return int(text)


def _no_constant(text: str) -> None:
    raise ValueError(f"{text} is not a number")


def loads_bounded(text: str) -> Any:
    """Parse untrusted JSON (an instance's stats, a controller's answer): at most MAX_JSON_CHARS
    characters, MAX_DEPTH levels, finite numbers of at most MAX_NUMBER_CHARS characters;
    ValueError otherwise."""
    if len(text) > MAX_JSON_CHARS:
        raise ValueError(f"longer than {MAX_JSON_CHARS} characters")
    if text.count("[") + text.count("{") > MAX_DEPTH and json_depth(text) > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    return json.loads(text, parse_int=_bounded_int, parse_float=_bounded_float,
                      parse_constant=_no_constant)


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
        data = loads_bounded(body)
    except ValueError:
        return []
    commands = data.get("commands") if isinstance(data, dict) else None
    if not isinstance(commands, list):
        return []
    return [c for c in commands if isinstance(c, dict) and c.get("op") in COMMAND_OPS
            and isinstance(c.get("dbid"), str)]


COMMAND_OPS = ("reactivate", "deactivate")

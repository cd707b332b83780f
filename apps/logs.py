"""Structured logs: one JSON line per decision change, instance state change, rejected input,
reconcile action and reload, each with a reason; a level per component ([controller.logging]).

Boundary: the shell. Events go to the loggers `dyncast.<component>` (controller/logcfg.py
names the components); `configure` sets their levels and gives them a JSON (or text) handler
of their own. Rejected input is rate-limited (`RejectLog`): a flood of bad requests writes at
most `rejected_per_minute` lines a minute, then one summary line per minute with the count
of the lines left out, by field. Instance state changes are too, per instance (`StateLog`).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TextIO

from controller.logcfg import COMPONENTS, LogConfig

ROOT = "dyncast"
WINDOW_S = 60.0
SUMMARY_FIELDS = 20  # fields named in a summary of rejected input left out; the rest as one
STATE_LINES_PER_INSTANCE = 30  # instance_state lines an instance a minute (StateLog)


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: time, level, component, event, message and fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The JSON line (without the newline)."""
        out: dict[str, Any] = {"ts": round(record.created, 6), "level": record.levelname,
                               "component": record.name.removeprefix(ROOT + "."),
                               "msg": record.getMessage()}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        return json.dumps(out, sort_keys=True, default=str)


class TextFormatter(logging.Formatter):
    """A record as text: the message, then the fields as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        """The text line."""
        fields = getattr(record, "fields", None) or {}
        tail = " ".join(f"{k}={v}" for k, v in sorted(fields.items()))
        return f"{record.levelname} {record.name}: {record.getMessage()} {tail}".rstrip()


def logger(component: str) -> logging.Logger:
    """The logger of one component."""
    return logging.getLogger(f"{ROOT}.{component}")


def event(component: str, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event (`name` is its `event` field)."""
    log = logger(component)
    if log.isEnabledFor(level):
        log.log(level, name, extra={"fields": {"event": name, **fields}})


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `configure` gives the component loggers (replaced, alone, on a reload)."""


def configure(cfg: LogConfig, stream: TextIO | None = None) -> None:
    """Apply levels and the format to every component's logger (again on each reload)."""
    handler = _Handler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if cfg.json else TextFormatter())
    for component in COMPONENTS:
        log = logger(component)
        for old in [h for h in log.handlers if isinstance(h, _Handler)]:
            log.removeHandler(old)
        log.addHandler(handler)
        log.propagate = False
        log.setLevel(cfg.level_of(component))


class RejectLog:
    """Rejected input, logged up to a budget a minute; the rest counted and summarised."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic,
                 counts: Counter[int] | None = None) -> None:
        self.per_minute = per_minute
        self.clock = clock
        # every refused request by status, logged or not (the app's metrics read them)
        self.counts: Counter[int] = Counter() if counts is None else counts
        self.window = clock()
        self.written = 0
        self.suppressed: Counter[str] = Counter()

    def reject(self, method: str, path: str, status: int, field: str, reason: str,
               peer: str = "") -> bool:
        """Log one rejected request (True) or count it for the summary (False)."""
        self.counts[status] += 1
        self.roll()
        if self.written >= self.per_minute:
            if field not in self.suppressed and len(self.suppressed) >= SUMMARY_FIELDS:
                field = "(other fields)"  # the field may be the client's text: bounded
            self.suppressed[field] += 1
            return False
        self.written += 1
        event("input", "rejected_input", logging.WARNING, method=method, path=path[:200],
              status=status, field=field, reason=reason[:300], peer=peer)
        return True

    def roll(self) -> None:
        """Start a new window once a minute has passed, summarising what was left out."""
        now = self.clock()
        if now - self.window < WINDOW_S:
            return
        if self.suppressed:
            event("input", "rejected_input_suppressed", logging.WARNING,
                  count=sum(self.suppressed.values()), by_field=dict(self.suppressed),
                  window_s=round(now - self.window, 1),
                  reason=f"more than {self.per_minute} rejected requests a minute")
        self.window, self.written, self.suppressed = now, 0, Counter()


class StateLog:
    """Instance state changes, logged up to `STATE_LINES_PER_INSTANCE` a minute for each
    instance; past it an instance's changes are counted and summarised once a minute. One
    agent's batch flipping its instance between serving and not 10,000 times wrote 10,000
    lines (a few such requests, 14 MB in about a second); an instance that changes state
    now and then, or thousands of instances changing once each (the tick after a start), are
    logged whole. Every change is still in the instance's history (`GET /instances/{dbid}`)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.window = clock()
        self.written: Counter[str] = Counter()  # lines this window, by instance
        self.suppressed: Counter[str] = Counter()

    def log(self, t: Any) -> bool:
        """Log one transition (True) or count it for the summary (False)."""
        self.roll()
        if self.written[t.dbid] >= STATE_LINES_PER_INSTANCE:
            self.suppressed[t.dbid] += 1
            return False
        self.written[t.dbid] += 1
        event("instances", "instance_state", instance=t.dbid, src=t.src, dst=t.dst,
              trigger=t.event, reason=t.reason, at=t.at)
        return True

    def roll(self) -> None:
        """Start a new window once a minute has passed, summarising what was left out."""
        now = self.clock()
        if now - self.window < WINDOW_S:
            return
        if self.suppressed:
            most = self.suppressed.most_common(SUMMARY_FIELDS)
            event("instances", "instance_state_suppressed", logging.WARNING,
                  count=sum(self.suppressed.values()), by_instance=dict(most),
                  instances=len(self.suppressed), window_s=round(now - self.window, 1),
                  reason=f"more than {STATE_LINES_PER_INSTANCE} state changes of an "
                         "instance a minute")
        self.window, self.written, self.suppressed = now, Counter(), Counter()


def core_events(core: Any, states: StateLog | None = None) -> None:
    """Log what the core recorded since the last call: instance state transitions (within
    `states`'s budget), where instances were found or lost, and decision changes (each a JSON
    line with its reason), leaving nothing queued."""
    if core.states.transitions:
        budget = states if states is not None else StateLog()
        for t in core.states.drain_log():
            budget.log(t)
    moves = core.topology.relocations
    while moves:
        ip, before, after, why = moves.popleft()
        event("instances", "instance_located", instance=ip,
              before=None if before is None else f"{before[0]:016x}:{before[1]}",
              after=None if after is None else f"{after[0]:016x}:{after[1]}", reason=why)
    changes = core.decisions.bases.change_log
    while changes:
        ingress, service, old, new, at, reason = changes.popleft()
        event("decisions", "decision_changed", service=service, ingress=ingress,
              primary_before=old, primary=new, at=at, reason=reason)

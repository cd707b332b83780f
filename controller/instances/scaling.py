"""Reactivation and scale-in: when to wake an inactive instance, and when to retire an active one.

Boundary: pure policy. The core hands in, per service, the instances' states, loads and merits
and the time; `Scaler.evaluate()` answers with at most one action: `reactivate` the best
inactive instance (the service's load, averaged over the last `hold_s`, is at or above `high`),
or `drain` the least useful active one (scale-in: that average is at or below `low` and more
than `min_active` are active). After any action the average starts again from nothing and the
service is left alone for `cooldown_s`; while an instance is activating or being retired nothing
else is started. With `low` below `high` (the configuration demands it), a load oscillating
around one threshold acts at most once per cool-down and never makes the set of instances flap.

Why an average over the window and not "every instance above `high` all the time": under
overload made of short requests, each instance's snapshot swings between full and momentarily
empty, so no instance stays above a threshold for long, although the service is overloaded on
average (issue 17 measured a mean of 0.94 and a longest stretch of 3.8 s against `hold_s` 8).

Load of an instance: its demand against its capacity, `max(cpu, (sessions + queue) / capacity)`
from raw metrics (above 1 while requests wait), or `1 - score / 10` from a CATS level-2 score.
The service's load is the mean over its active instances, sampled on every evaluation (tick); an
active instance without a report clears the window (nothing is judged on partial evidence). An
active instance passive health ejected (its member's state: `ejected`) is left out: it takes no
new flows, and what its D-MA reports is not the service's load.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from controller.model import Metrics, ScalingPolicy

MAX_LOAD = 10.0  # an instance's demand counts up to this many times its capacity


def load_of(metrics: Metrics | None) -> float | None:
    """An instance's demand against its capacity from its latest report; None without one."""
    if metrics is None:
        return None
    if metrics.score is not None:
        return max(0.0, min(1.0, 1.0 - metrics.score / 10.0))
    demand = (metrics.sessions + metrics.queue) / metrics.capacity
    return max(0.0, min(MAX_LOAD, max(metrics.cpu, demand)))


@dataclass(frozen=True, slots=True)
class Member:
    """One instance of a service as the scaler sees it. `merit`: higher is more useful (for an
    inactive instance: how good a reactivation target it is; for an active one: how much of the
    service's new flows it takes)."""

    dbid: str
    state: str
    load: float | None
    merit: float
    retiring: bool = False  # draining on its way to being stopped (scale-in in progress)
    can_start: bool = True  # a D-MA is there to receive a trigger


@dataclass(frozen=True, slots=True)
class Action:
    """What the scaler decided: `reactivate` or `drain` (scale-in) one instance."""

    op: str
    dbid: str
    reason: str


@dataclass(slots=True)
class _Window:
    """The service's load samples since `since` (at most `hold_s` old kept)."""

    since: float | None = None
    samples: deque[tuple[float, float]] = field(default_factory=deque)
    last_action_at: float | None = None

    def add(self, now: float, load: float, hold_s: float) -> float | None:
        """Record a sample; the mean over the window once it spans `hold_s`, else None."""
        if self.since is None:
            self.since = now
        self.samples.append((now, load))
        while self.samples and self.samples[0][0] < now - hold_s:
            self.samples.popleft()
        if now - self.since < hold_s:
            return None
        return sum(v for _, v in self.samples) / len(self.samples)

    def clear(self) -> None:
        """Start judging from nothing again."""
        self.since = None
        self.samples.clear()


class Scaler:
    """Per-service hold timers and cool-downs; `evaluate()` is called on every tick."""

    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}

    def evaluate(self, service: str, policy: ScalingPolicy, members: list[Member],
                 now: float) -> Action | None:
        """The action to take for `service` now, if any."""
        w = self._windows.setdefault(service, _Window())
        active = [m for m in members if m.state == "active"]
        loads = [m.load for m in active if m.load is not None]
        if not active or len(loads) != len(active):
            w.clear()
            return None
        mean = w.add(now, sum(loads) / len(loads), policy.hold_s)
        if any(m.state == "activating" or m.retiring for m in members):
            return None  # one change at a time
        if w.last_action_at is not None and now - w.last_action_at < policy.cooldown_s:
            return None
        action = None
        if mean is not None and mean >= policy.high:
            spare = [m for m in members if m.state == "inactive" and m.can_start]
            if spare:
                best = max(spare, key=lambda m: (m.merit, _neg(m.dbid)))
                action = Action("reactivate", best.dbid,
                                f"mean load of the {len(active)} active instances "
                                f"{mean:.2f} >= {policy.high:g} over {policy.hold_s:g} s")
        elif (mean is not None and mean <= policy.low and policy.scale_in
              and len(active) > policy.min_active):
            victim = min(active, key=lambda m: (m.merit, _neg(m.dbid)))
            action = Action("drain", victim.dbid,
                            f"mean load of the {len(active)} active instances {mean:.2f} <= "
                            f"{policy.low:g} over {policy.hold_s:g} s (scale-in)")
        if action is not None:
            w.last_action_at = now
            w.clear()
        return action

    def forget(self, service: str) -> None:
        """Drop a deleted service's window."""
        self._windows.pop(service, None)


def _neg(dbid: str) -> tuple[int, ...]:
    """Order key that prefers the lower D-BID on ties under max()."""
    return tuple(-int(x) for x in dbid.split("."))

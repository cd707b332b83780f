"""Reactivation and scale-in: when to wake an inactive instance, and when to retire an active one.

Boundary: pure policy. The core hands in, per service, the instances' states, loads and merits
and the time; `Scaler.evaluate()` answers with at most one action: `reactivate` the best
inactive instance (every active instance has stayed above `high` load for `hold_s`), or `drain`
the least useful active one (scale-in: every active instance has stayed below `low` for `hold_s`
and more than `min_active` are active). After any action the service is left alone for
`cooldown_s`, and while an instance is activating or being retired nothing else is started, so a
load oscillating around a threshold never makes the set of instances flap.

Load of an instance, in [0, 1]: `max(cpu, sessions / capacity)` from raw metrics, or
`1 - score / 10` from a CATS level-2 score.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.model import Metrics, ScalingPolicy


def load_of(metrics: Metrics | None) -> float | None:
    """An instance's load in [0, 1] from its latest report; None without one."""
    if metrics is None:
        return None
    if metrics.score is not None:
        return max(0.0, min(1.0, 1.0 - metrics.score / 10.0))
    return max(0.0, min(1.0, max(metrics.cpu, metrics.sessions / metrics.capacity)))


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
class _Timers:
    busy_since: float | None = None
    idle_since: float | None = None
    last_action_at: float | None = None


class Scaler:
    """Per-service hold timers and cool-downs; `evaluate()` is called on every tick."""

    def __init__(self) -> None:
        self._timers: dict[str, _Timers] = {}

    def evaluate(self, service: str, policy: ScalingPolicy, members: list[Member],
                 now: float) -> Action | None:
        """The action to take for `service` now, if any."""
        t = self._timers.setdefault(service, _Timers())
        active = [m for m in members if m.state == "active"]
        loads = [m.load for m in active if m.load is not None]
        busy = bool(active) and len(loads) == len(active) and min(loads) >= policy.high
        idle = (policy.scale_in and len(active) > policy.min_active
                and len(loads) == len(active) and max(loads) <= policy.low)
        t.busy_since = (now if t.busy_since is None else t.busy_since) if busy else None
        t.idle_since = (now if t.idle_since is None else t.idle_since) if idle else None
        if any(m.state == "activating" or m.retiring for m in members):
            return None  # one change at a time
        if t.last_action_at is not None and now - t.last_action_at < policy.cooldown_s:
            return None
        action = None
        if t.busy_since is not None and now - t.busy_since >= policy.hold_s:
            spare = [m for m in members if m.state == "inactive" and m.can_start]
            if spare:
                best = max(spare, key=lambda m: (m.merit, _neg(m.dbid)))
                action = Action("reactivate", best.dbid,
                                f"all {len(active)} active instances at load >= "
                                f"{policy.high:g} for {now - t.busy_since:.1f} s")
        elif t.idle_since is not None and now - t.idle_since >= policy.hold_s:
            victim = min(active, key=lambda m: (m.merit, _neg(m.dbid)))
            action = Action("drain", victim.dbid,
                            f"all {len(active)} active instances at load <= {policy.low:g} for "
                            f"{now - t.idle_since:.1f} s (scale-in)")
        if action is not None:
            t.last_action_at = now
            t.busy_since = t.idle_since = None
        return action

    def forget(self, service: str) -> None:
        """Drop a deleted service's timers."""
        self._timers.pop(service, None)


def _neg(dbid: str) -> tuple[int, ...]:
    """Order key that prefers the lower D-BID on ties under max()."""
    return tuple(-int(x) for x in dbid.split("."))

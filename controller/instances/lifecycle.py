"""Instance life cycle: the states an instance goes through, as one transition table.

Boundary: pure. The core observes facts (a metric report, stale metrics, an unanswered liveness
probe, a lost attachment port, an operator's drain, a reactivation trigger) and turns each into
an *event*; `apply()` looks the (state, event) pair up in `TRANSITIONS` and returns the new state.
A pair that is not in the table is forbidden and raises `Forbidden` (the API answers 409).

States:
- `unknown`   registered as serving, but no fresh metrics yet (or any more); no new flows unless
  no instance is `active` (then it is the fallback).
- `active`    serving, with fresh metrics: takes new flows as decisions say.
- `inactive`  registered but not serving (saves resources); may be reactivated.
- `activating` the controller told its D-MA to start it; waiting for a report that it serves.
- `draining`  no new flows; bound flows keep it until they end or a drain deadline passes.
- `down`      unreachable (attachment lost, or stale metrics and no answer to liveness probes):
  its bound flows move to a live instance.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from controller.errors import Conflict

STATES = ("unknown", "active", "inactive", "activating", "draining", "down")
EVENTS = (
    "report_active",     # a fresh metric report saying the instance serves
    "report_inactive",   # a report (or registration) saying it does not serve
    "stale",             # no fresh report within stale_after_s
    "lost",              # attachment port/switch gone, or liveness probes unanswered
    "alive",             # a liveness probe was answered (no fresh metrics though)
    "attached",          # the instance was seen again at a switch port after being lost
    "drain",             # operator or scale-in: stop sending new flows
    "undrain",           # operator: take new flows again
    "activate",          # the controller sent its D-MA a reactivation trigger
    "activation_timeout",  # the D-MA did not report the instance serving in time
)
HISTORY_LEN = 20

SAME: None = None  # an event that leaves the state as it is (allowed, not logged)
TRANSITIONS: dict[str, dict[str, str | None]] = {
    "unknown": {
        "report_active": "active", "report_inactive": "inactive", "stale": SAME, "lost": "down",
        "alive": SAME, "attached": SAME, "drain": "draining",
    },
    "active": {
        "report_active": SAME, "report_inactive": "inactive", "stale": "unknown", "lost": "down",
        "alive": SAME, "attached": SAME, "drain": "draining",
    },
    "inactive": {
        "report_active": "active", "report_inactive": SAME, "stale": SAME, "lost": SAME,
        "alive": SAME, "attached": SAME, "activate": "activating",
    },
    "activating": {
        "report_active": "active", "report_inactive": SAME, "stale": SAME, "lost": SAME,
        "alive": SAME, "attached": SAME, "activation_timeout": "inactive",
    },
    "draining": {
        "report_active": SAME, "report_inactive": "inactive", "stale": SAME, "lost": "down",
        "alive": SAME, "attached": SAME, "drain": SAME, "undrain": "active",
    },
    "down": {
        "report_active": "active", "report_inactive": "inactive", "stale": SAME, "lost": SAME,
        "alive": "unknown", "attached": "unknown",
    },
}


class Forbidden(Conflict):
    """An event that the instance's current state does not allow."""

    def __init__(self, state: str, event: str) -> None:
        whence = " or ".join(s for s in STATES if event in TRANSITIONS[s])
        super().__init__(f"instance is {state}: '{event}' needs it {whence}", "state")
        self.state = state
        self.event = event


def apply(state: str, event: str) -> str:
    """The state after `event` happens in `state`; raise Forbidden for a pair not in the table."""
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}")
    row = TRANSITIONS[state]
    if event not in row:
        raise Forbidden(state, event)
    target = row[event]
    return state if target is None else target


def allowed(state: str, event: str) -> bool:
    """True when `event` may happen in `state`."""
    return event in TRANSITIONS[state]


@dataclass(frozen=True, slots=True)
class Transition:
    """One logged change of an instance's state."""

    dbid: str
    at: float
    src: str
    dst: str
    event: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Return the transition as JSON-ready values."""
        return {"at": self.at, "from": self.src, "to": self.dst, "event": self.event,
                "reason": self.reason}


def transition_from_dict(dbid: str, data: Any) -> Transition | None:
    """A stored history entry, or None if it is not one (old or damaged records)."""
    try:
        src, dst = str(data["from"]), str(data["to"])
        if src not in STATES or dst not in STATES:
            return None
        return Transition(dbid, float(data["at"]), src, dst, str(data["event"]),
                          str(data["reason"]))
    except (KeyError, TypeError, ValueError):
        return None


def trim(history: Iterable[Transition]) -> list[Transition]:
    """Keep the newest HISTORY_LEN entries."""
    return list(history)[-HISTORY_LEN:]

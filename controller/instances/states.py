"""Instance states as the core keeps them: events fired, transitions recorded, D-MA commands.

Boundary: pure. The core tells `InstanceStates` what it observed about an instance (a report, a
lost attachment, stale metrics, an unanswered probe, an operator's request); this module turns
the observation into a life-cycle event, applies the transition table (`lifecycle.py`),
records the change in the instance's history and in a queue the shell logs, and keeps the
commands waiting for each D-MA (the reactivation trigger and its counterpart, `deactivate`).

Control channel to the D-MA: commands are handed to the D-MA in the answer to its next
`POST /dyncast/v1/metrics` (or registration) naming the instance, as
`{"commands": [{"id", "op": "reactivate"|"deactivate", "service", "dsid", "dbid", "issued_at",
"reason"}]}`. A D-MA reports at least every few seconds, so the trigger arrives within one
report interval, through whatever path its reports already take (no listener on the D-MA).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controller.instances.lifecycle import Transition, apply, trim
from controller.model import Instance

COMMAND_OPS = ("reactivate", "deactivate")


def _nothing(inst: Instance) -> None:
    """No one to tell of a state change."""


@dataclass(frozen=True, slots=True)
class Command:
    """A control message for the D-MA of one instance."""

    ident: int
    op: str
    service: str
    dsid: str
    dbid: str
    issued_at: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Return the command as the D-MA receives it."""
        return {"id": self.ident, "op": self.op, "service": self.service, "dsid": self.dsid,
                "dbid": self.dbid, "issued_at": self.issued_at, "reason": self.reason}


class InstanceStates:
    """Fires life-cycle events on instances and holds the D-MA command queues."""

    def __init__(self, stale_after_s: float, probe_timeout_s: float) -> None:
        self.stale_after_s = stale_after_s
        self.probe_timeout_s = probe_timeout_s
        self.transitions: list[Transition] = []  # not yet logged by the shell
        self.pending: dict[str, list[Command]] = {}  # D-BID -> commands not yet delivered
        self._next_ident = 1
        self.changed: Callable[[Instance], None] = _nothing  # after every state change
        #                                                       (operations.py: stores it)

    def begin(self, inst: Instance, active: bool, now: float) -> None:
        """A newly registered instance starts `unknown` (serving, no metrics yet) or `inactive`."""
        inst.state = "unknown" if active else "inactive"
        inst.state_since = now
        self._record(inst, Transition(inst.dbid, now, "unknown", inst.state, "register",
                                      f"registered by D-MA {inst.dma or '?'} as "
                                      f"{'serving' if active else 'inactive'}"))

    def fire(self, inst: Instance, event: str, reason: str, now: float) -> bool:
        """Apply `event`; True when the state changed (Forbidden when the table says no)."""
        new = apply(inst.state, event)
        if new == inst.state:
            return False
        transition = Transition(inst.dbid, now, inst.state, new, event, reason)
        inst.state = new
        inst.state_since = now
        if new != "draining":
            inst.drain_deadline = None
            inst.stop_when_drained = False
        self._record(inst, transition)
        return True

    def _record(self, inst: Instance, transition: Transition) -> None:
        """Keep the transition in the instance's history and queue it for the log."""
        inst.history = trim([*inst.history, transition])
        self.transitions.append(transition)
        self.changed(inst)

    def stale(self, inst: Instance, now: float) -> bool:
        """True when the instance has no metrics newer than stale_after_s."""
        return inst.metrics_at is None or now - inst.metrics_at > self.stale_after_s

    def observe(self, inst: Instance, now: float, detached: bool,
                unanswered_since: float | None, activation_timeout_s: float) -> bool:
        """Turn what is known now (attachment, metric age, probes, time spent activating) into
        an event; True when the state changed."""
        if detached:
            return self.fire(inst, "lost", "its attachment port or switch went down", now)
        if inst.state == "activating":
            if now - inst.state_since <= activation_timeout_s:
                return False
            self.pending.pop(inst.dbid, None)
            return self.fire(inst, "activation_timeout", "its D-MA did not report it serving "
                             f"within {activation_timeout_s:g} s of the trigger", now)
        if not self.stale(inst, now):
            return False
        if unanswered_since is not None and now - unanswered_since > self.probe_timeout_s:
            age = "no metrics" if inst.metrics_at is None else (
                f"no metrics for {now - inst.metrics_at:.1f} s")
            return self.fire(inst, "lost", f"{age} and no answer to liveness probes for "
                             f"{now - unanswered_since:.1f} s", now)
        return self.fire(inst, "stale", f"no metric report within {self.stale_after_s:g} s",
                         now)

    def command(self, inst: Instance, dsid: str, op: str, reason: str, now: float) -> Command:
        """Queue `op` for the instance's D-MA (replacing an undelivered one for the instance)."""
        cmd = Command(self._next_ident, op, inst.service, dsid, inst.dbid, now, reason)
        self._next_ident += 1
        self.pending[inst.dbid] = [cmd]
        return cmd

    def take(self, dbids: list[str]) -> list[dict[str, Any]]:
        """Hand over (and forget) the commands waiting for these instances."""
        out: list[dict[str, Any]] = []
        for dbid in dbids:
            out += [c.to_dict() for c in self.pending.pop(dbid, [])]
        return out

    def forget(self, dbid: str) -> None:
        """The instance is gone: drop its undelivered commands."""
        self.pending.pop(dbid, None)

    def drain_log(self) -> list[Transition]:
        """Hand the recorded transitions to the shell (it logs them)."""
        out, self.transitions = self.transitions, []
        return out

"""Cluster membership from the heartbeat rows: who is alive as of the database's clock.

A member is live while its lease (`lease_until`) is after the database's `now`: every member
compares leases with the same clock, the database server's, so clock skew between member
machines does not matter to who is live. (A member's fencing of itself uses its own clock:
`controller.cluster.member`.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class MemberRow:
    """One member's heartbeat row: its id, REST address, last beat and lease end (database
    clock, seconds since the epoch), the lease epoch (a ticket taken when it last acquired
    its lease after not holding one) and the digest of its shared settings
    (`controller.cluster.agreement`; None from a member that publishes none)."""

    member_id: str
    address: str
    beat_at: float
    lease_until: float
    epoch: int
    settings: str | None = None

    def live(self, now: float) -> bool:
        """True while the lease runs."""
        return self.lease_until > now


@dataclass(frozen=True, slots=True)
class View:
    """What one heartbeat read: every row, the database's clock when read, and a ticket from
    the database's sequence (greater than every ticket handed out before it, to anyone)."""

    rows: tuple[MemberRow, ...]
    now: float
    ticket: int

    def live(self) -> tuple[str, ...]:
        """The ids of the live members, sorted."""
        return tuple(sorted(r.member_id for r in self.rows if r.live(self.now)))

    def row(self, member_id: str) -> MemberRow | None:
        """A member's row (None if it has none)."""
        return next((r for r in self.rows if r.member_id == member_id), None)

    def as_json(self) -> list[dict[str, Any]]:
        """The rows as the API shows them."""
        return [{"member_id": r.member_id, "address": r.address, "beat_at": r.beat_at,
                 "lease_until": r.lease_until, "epoch": r.epoch, "live": r.live(self.now),
                 "settings": r.settings}
                for r in sorted(self.rows, key=lambda r: r.member_id)]

"""One member's side of the cluster: its lease, its roles at the switches, and fencing.

`renewed` records a heartbeat that reached the database; `step` (called often, with the
switches connected to this member and its own `now`) says what to ask of each switch:

| the member | a switch the rule gives it | a switch the rule gives another |
| --- | --- | --- |
| holds its lease | MASTER (then read and repair it) | SLAVE |
| lease ended (cannot renew) | SLAVE, stop programming it: never MASTER | SLAVE |
| no lease yet (never renewed) | nothing asked, nothing programmed | nothing asked |

Its own lease is timed on its own clock from when it *asked* for the renewal that succeeded
(`asked_at + lease_s`), which ends no later than the lease the database granted (granted at
the database's `now`, later than the ask), whatever the clocks' offset: a member that cannot
reach the database steps down before any other member takes its switches.

Generation ids: each heartbeat takes a ticket from the database's sequence, and a role
request carries the ticket of the view it was decided on. Tickets are unique and rise, so two
members never send the same generation id, and a member taking a switch over sends a greater
one than the member it takes it from decided on before it (a late MASTER request of a stale
master is refused by the switch as stale). A role request the switch refuses as stale (a
member that took its ticket later asked first) is asked again with the next beat's ticket,
greater than every ticket taken before it (`refused`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from controller.cluster.mastership import assignment
from controller.cluster.membership import View

MASTER = "master"
SLAVE = "slave"


@dataclass(frozen=True, slots=True)
class RoleRequest:
    """Ask switch `dpid` for `role` (MASTER or SLAVE) with `generation_id`."""

    dpid: int
    role: str
    generation_id: int


@dataclass(frozen=True, slots=True)
class Reconcile:
    """This member now masters `dpid`: read its table and repair it (the connect path)."""

    dpid: int


@dataclass(frozen=True, slots=True)
class StopProgramming:
    """This member no longer masters `dpid`: send it no flow-mod or packet-out from now on."""

    dpid: int


ClusterIntent = RoleRequest | Reconcile | StopProgramming


class Member:
    """This member's lease, last view of the cluster and role at each switch."""

    def __init__(self, member_id: str, lease_s: float) -> None:
        self.member_id = member_id
        self.lease_s = lease_s
        self.view: View | None = None  # the last heartbeat that reached the database
        self.held_until = 0.0  # own clock: the lease ends here unless renewed
        self.epoch: int | None = None  # our lease epoch in the last view
        self.roles: dict[int, str] = {}  # switch -> the role last asked of it
        self.stale: dict[int, int] = {}  # switch -> the ticket it refused as stale
        self.beats_failed = 0

    def renewed(self, view: View, asked_at: float) -> None:
        """A heartbeat asked at `asked_at` (own clock) renewed the lease and read `view`. A
        new lease epoch (the lease had lapsed) asks every switch again."""
        row = view.row(self.member_id)
        if row is None or not row.live(view.now):
            self.failed()
            return
        if self.epoch is not None and row.epoch != self.epoch:
            self.roles.clear()
        self.view = view
        self.epoch = row.epoch
        self.held_until = max(self.held_until, asked_at + self.lease_s)

    def failed(self) -> None:
        """A heartbeat did not reach the database (the lease runs out on its own)."""
        self.beats_failed += 1

    def fenced(self) -> None:
        """The store refused a write of ours for our lease (it ended, or was taken anew, as
        the database sees it: controller/cluster/fencing.py): step down at once, as if it had
        ended on our own clock; a later beat that renews it (a new epoch) asks again."""
        self.held_until = 0.0

    def holds_lease(self, now: float) -> bool:
        """True while our own lease runs (own clock)."""
        return now < self.held_until

    def masters(self, dpid: int) -> bool:
        """True if this member programs `dpid` (it last asked it for MASTER)."""
        return self.roles.get(dpid) == MASTER

    def refused(self, dpid: int) -> None:
        """The switch refused our last role request (its generation id was stale: another
        member sent a greater one): ask again once a beat brings a newer ticket."""
        self.roles.pop(dpid, None)
        if self.view is not None:
            self.stale[dpid] = self.view.ticket

    def forget(self, dpid: int) -> None:
        """The switch's connection to this member closed."""
        self.roles.pop(dpid, None)

    def rule(self, dpids: Iterable[int]) -> dict[int, str]:
        """Who masters each switch by the rule over the live members of the last view."""
        return assignment(dpids, self.view.live() if self.view else ())

    def step(self, dpids: Iterable[int], now: float) -> list[ClusterIntent]:
        """The role requests (and reads, and stops) that bring each connected switch to the
        role this member should have there now."""
        connected = sorted(set(dpids))
        for gone in set(self.roles) - set(connected):
            del self.roles[gone]
        for gone in set(self.stale) - set(connected):
            del self.stale[gone]
        out: list[ClusterIntent] = []
        if self.view is None:
            return out
        if not self.holds_lease(now):  # fenced: step down everywhere, claim nothing
            for dpid in connected:
                if self.roles.get(dpid) == MASTER:
                    out += [StopProgramming(dpid),
                            RoleRequest(dpid, SLAVE, self.view.ticket)]
                    self.roles[dpid] = SLAVE
            return out
        masters = self.rule(connected)
        for dpid in connected:
            if self.stale.get(dpid, -1) >= self.view.ticket:
                continue  # refused with this ticket: wait for the next beat's
            self.stale.pop(dpid, None)
            want = MASTER if masters.get(dpid) == self.member_id else SLAVE
            had = self.roles.get(dpid)
            if want == had:
                continue
            if had == MASTER:
                out.append(StopProgramming(dpid))
            out.append(RoleRequest(dpid, want, self.view.ticket))
            if want == MASTER:
                out.append(Reconcile(dpid))
            self.roles[dpid] = want
        return out

    def as_json(self, dpids: Iterable[int], now: float) -> dict[str, Any]:
        """GET /dyncast/v1/cluster: the members and leases, who masters each switch by the
        rule, and this member's own lease and roles."""
        connected = sorted(set(dpids))
        return {
            "enabled": True,
            "member_id": self.member_id,
            "lease_held": self.holds_lease(now),
            "lease_left_s": round(max(self.held_until - now, 0.0), 3),
            "epoch": self.epoch,
            "members": self.view.as_json() if self.view else [],
            "masters": {f"{d:016x}": m for d, m in self.rule(connected).items()},
            "roles": {f"{d:016x}": self.roles.get(d, "none") for d in connected},
            "beats_failed": self.beats_failed,
        }

"""One member's side of the cluster: its lease, its roles at the switches, and fencing.

`renewed` records a heartbeat that reached the database; `step` (called often, with the
switches connected to this member and its own `now`) says what to ask of each switch:

| the member | a switch the rule gives it | a switch the rule gives another |
| --- | --- | --- |
| holds its lease | MASTER (read and repair it once confirmed) | SLAVE |
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
master is refused by the switch as stale). A SLAVE request carries a ticket too, so another
member's SLAVE request with a later ticket can make the rule's master's MASTER request stale:
a refused MASTER request is asked again at once (`refused`), behind a role query (NOCHANGE,
whose reply carries the switch's generation id), with the greatest generation id this member
has seen (its tickets, the generation ids of role replies) + 1, as Open vSwitch judges a request
stale if (int64)(generation_id - cached) < 0; at most `RETRIES` times a ticket, then with the
next beat's ticket. A refused SLAVE request waits for the next beat's ticket.

Confirmed, not asked: a member programs a switch (`masters`) only once the switch's role reply
confirms MASTER for its last MASTER request (`role_reply`); the table read and repair start then
(`Reconcile`). Until then its connection may still be EQUAL, on which a switch would execute
whatever it sent. A write refused as from a slave (`OFPBRC_IS_SLAVE`: another member took the
switch) stops the programming at once (`lost`); the next beat's view settles the rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from controller.cluster.agreement import disagreeing
from controller.cluster.mastership import assignment
from controller.cluster.membership import View

MASTER = "master"
SLAVE = "slave"
NOCHANGE = "nochange"  # a role query: the reply carries the role and the switch's generation id
RETRIES = 3  # stale MASTER refusals asked again at once, per switch and ticket


@dataclass(frozen=True, slots=True)
class RoleRequest:
    """Ask switch `dpid` for `role` (MASTER, SLAVE or NOCHANGE) with `generation_id`."""

    dpid: int
    role: str
    generation_id: int


@dataclass(frozen=True, slots=True)
class Reconcile:
    """The switch confirmed this member MASTER of `dpid`: read its table and repair it (the
    connect path)."""

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
        self.asked: dict[int, int] = {}  # switch -> the generation id of the last MASTER ask
        self.confirmed: set[int] = set()  # switches whose reply confirmed that MASTER ask
        self.stale: dict[int, int] = {}  # switch -> the ticket it refused as stale
        self.retries: dict[int, int] = {}  # switch -> stale refusals asked again this ticket
        self.seen = 0  # the greatest generation id seen: tickets, role replies, own asks
        self.beats_failed = 0
        self.settings: str | None = None  # the digest of our shared settings, as published

    def renewed(self, view: View, asked_at: float) -> None:
        """A heartbeat asked at `asked_at` (own clock) renewed the lease and read `view`. A
        new lease epoch (the lease had lapsed) asks every switch again."""
        row = view.row(self.member_id)
        if row is None or not row.live(view.now):
            self.failed()
            return
        if self.epoch is not None and row.epoch != self.epoch:
            self.roles.clear()
            self.confirmed.clear()
        if self.view is None or view.ticket != self.view.ticket:
            self.retries.clear()
        self.seen = max(self.seen, view.ticket)
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
        """True if this member programs `dpid`: it last asked it for MASTER and the switch's
        role reply confirmed it."""
        return dpid in self.confirmed

    def role_reply(self, dpid: int, role: str, generation_id: int,
                   now: float) -> list[ClusterIntent]:
        """The switch's role reply: MASTER with the generation id of our last MASTER ask
        confirms it (start reading and repairing the switch); any reply tells the switch's
        generation id (all ones: it has none)."""
        if generation_id < 2**63:
            self.seen = max(self.seen, generation_id)
        if (role != MASTER or self.roles.get(dpid) != MASTER or dpid in self.confirmed
                or self.asked.get(dpid) != generation_id or not self.holds_lease(now)):
            return []
        self.confirmed.add(dpid)
        return [Reconcile(dpid)]

    def refused(self, dpid: int, now: float) -> list[ClusterIntent]:
        """The switch refused a role request as stale (another member sent a greater
        generation id). A MASTER ask we still hold to is asked again at once, behind a role
        query, with the greatest generation id seen + 1 (at most RETRIES times a ticket);
        otherwise it is asked again once a beat brings a newer ticket."""
        self.confirmed.discard(dpid)
        if self.view is None:
            return []
        tries = self.retries.get(dpid, 0)
        if self.roles.get(dpid) == MASTER and self.holds_lease(now) and tries < RETRIES:
            self.retries[dpid] = tries + 1
            self.seen = max(self.seen, self.view.ticket) + 1
            self.asked[dpid] = self.seen
            return [RoleRequest(dpid, NOCHANGE, 0), RoleRequest(dpid, MASTER, self.seen)]
        self.roles.pop(dpid, None)
        self.stale[dpid] = self.view.ticket
        return []

    def lost(self, dpid: int) -> list[ClusterIntent]:
        """The switch refused a write of ours as from a slave: another member took it. Stop
        programming it at once (the switch made us SLAVE); the next beat's view settles the
        rule (nothing is asked with this ticket). Nothing if we did not master it."""
        if dpid not in self.confirmed:
            return []
        self.confirmed.discard(dpid)
        self.roles[dpid] = SLAVE
        if self.view is not None:
            self.stale[dpid] = self.view.ticket
        return [StopProgramming(dpid)]

    def forget(self, dpid: int) -> None:
        """The switch's connection to this member closed."""
        self.roles.pop(dpid, None)
        self.confirmed.discard(dpid)

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
        self.confirmed.intersection_update(connected)
        for gone in set(self.asked) - set(connected):
            del self.asked[gone]
        out: list[ClusterIntent] = []
        if self.view is None:
            return out
        if not self.holds_lease(now):  # fenced: step down everywhere, claim nothing
            for dpid in connected:
                if self.roles.get(dpid) == MASTER:
                    out += [StopProgramming(dpid),
                            RoleRequest(dpid, SLAVE, self.view.ticket)]
                    self.roles[dpid] = SLAVE
            self.confirmed.clear()
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
                self.confirmed.discard(dpid)
            out.append(RoleRequest(dpid, want, self.view.ticket))
            if want == MASTER:  # programmed once the switch confirms it (`role_reply`)
                self.asked[dpid] = self.view.ticket
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
            "settings": self.settings,
            "settings_disagree": self.disagreement(),
        }

    def disagreement(self) -> dict[str, str | None]:
        """The live members of the last view that publish other shared settings than ours
        (member id -> their digest; `controller.cluster.agreement`)."""
        if self.view is None or self.settings is None:
            return {}
        return disagreeing(self.view.rows, self.member_id, self.settings, self.view.now)

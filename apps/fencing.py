"""The shell's side of `controller.cluster.fencing`: the lease check made in the transaction
that writes a batch, and the lock that makes a takeover's read wait for the writes in flight.

Boundary: shell. `StoreFence` is given to `apps.store.Store` (its `fence`) by a cluster member
(apps/cluster.py); the store calls `check` at the start of each batch's transaction, and
`lock_others` before reading a switch's stored bindings at a takeover. Both run in the store's
worker OS threads: they read the member's token (an int) and leave what they refused in a
deque (`refusals`, thread-safe) that the member's green thread drains on the event loop
(`ClusterSide._fence_refusals`): it counts, logs and steps down there, not here.

Why the check and the writes are one transaction, and the lock: a batch checked while the
lease ran may commit after it ended. Each batch holds a shared advisory lock on its member's
key from its check to its commit; a member taking a switch over takes the exclusive lock on
every other member's key before it reads the stored bindings, so it waits for every batch
checked before (and reads what they wrote), and every batch checked after sees its row live
and refuses the switch's bindings. The locks are transaction-scoped (`pg_advisory_xact_lock`),
keyed by the schema and the member id; the heartbeat takes none of them.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select, text
from sqlalchemy.engine import Connection

from apps.store import bindings_table, cluster_members_table
from controller.cluster.fencing import FENCED, Verdict, judge
from controller.cluster.member import Member
from controller.cluster.membership import MemberRow
from controller.intents import StoreWrite

LOG = logging.getLogger("dyncast")
LOCK_KEY = "hashtext(current_schema() || '/dyncast_fence')"  # the advisory locks' class
CHUNK = 500


@dataclass(frozen=True, slots=True)
class Refusal:
    """A batch's fenced records refused: how many for each reason, and whether the lease was
    lost (the member steps down)."""

    reasons: dict[str, int]
    lease_lost: bool
    token: int | None


class StoreFence:
    """A cluster member's fence on its store writes."""

    def __init__(self, member: Member, lock_timeout_s: float) -> None:
        self.member = member
        self.lock_timeout_ms = max(int(lock_timeout_s * 1000), 100)
        self.refusals: deque[Refusal] = deque(maxlen=1000)

    def check(self, conn: Connection, last: Mapping[tuple[str, str], StoreWrite],
              token: int | Literal["current"] | None = "current") -> set[tuple[str, str]]:
        """In the batch's transaction (`conn`): the (kind, key) of the fenced records it must
        not write, judged for the lease epoch `token` the batch was drained under (a batch on
        its way when the lease was taken anew is refused, not written under the new epoch);
        "current": the epoch held now. Nothing is locked or read without a fenced record."""
        fenced = {key: w for (kind, key), w in last.items() if kind in FENCED}
        if not fenced:
            return set()
        if token == "current":
            token = self.member.epoch  # read once: the beat may change it meanwhile
        conn.execute(text(f"SELECT pg_advisory_xact_lock_shared({LOCK_KEY}, hashtext(:m))"),
                     {"m": self.member.member_id})
        now = float(conn.execute(text("SELECT extract(epoch FROM clock_timestamp())"))
                    .scalar_one())
        rows = [MemberRow(r.member_id, r.address, r.beat_at, r.lease_until, int(r.epoch))
                for r in conn.execute(select(cluster_members_table))]
        verdict = judge(rows, now, self.member.member_id, token, self._ingress(conn, fenced))
        if verdict.refused:
            self.refusals.append(_refusal(verdict, token))
        return {("binding", key) for key in verdict.refused}

    @staticmethod
    def _ingress(conn: Connection, fenced: Mapping[str, StoreWrite]) -> dict[str, int | None]:
        """Each fenced record's switch: the written record's ingress, or for a deletion the
        stored record's (None when it is not stored: nothing to delete)."""
        out: dict[str, int | None] = {}
        gone = []
        for key, w in fenced.items():
            ingress = None if w.value is None else w.value.get("ingress")
            if isinstance(ingress, int):
                out[key] = ingress
            else:
                out[key] = None
                gone.append(key)
        for i in range(0, len(gone), CHUNK):
            for row in conn.execute(select(bindings_table.c.id, bindings_table.c.data).where(
                    bindings_table.c.id.in_(gone[i:i + CHUNK]))):
                out[row.id] = int(json.loads(row.data)["ingress"])
        return out

    def lock_others(self, conn: Connection) -> None:
        """In a takeover's transaction: wait for the batches the other members are writing
        (and keep the next ones from being checked) until it commits; bounded by the lease
        (an error then: the takeover goes on without the stored bindings)."""
        conn.execute(text(f"SET LOCAL lock_timeout = {self.lock_timeout_ms}"))
        conn.execute(text(
            f"SELECT pg_advisory_xact_lock({LOCK_KEY}, hashtext(member_id)) FROM "
            "(SELECT member_id FROM cluster_members WHERE member_id <> :m ORDER BY member_id) o"),
            {"m": self.member.member_id})


def _refusal(verdict: Verdict, token: int | None) -> Refusal:
    """What the member is told of a verdict that refused records."""
    reasons: dict[str, int] = {}
    for reason in verdict.refused.values():
        reasons[reason] = reasons.get(reason, 0) + 1
    return Refusal(reasons, verdict.lease_lost, token)

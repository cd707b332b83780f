"""A cluster member's claims on D-SIDs in the shared store (controller/cluster/claims.py says
which writes claim what; docs/cluster.md, "One D-SID, one service").

Boundary: shell. `DsidClaims` does the database work and blocks: the REST side calls it
through `tpool`, in a worker OS thread, before it serves the write (so the event loop never
waits on PostgreSQL). A claim is one row of `cluster_dsid_claims` (migration 0007), taken in
one transaction with the row locked, so two members claiming one D-SID for two services at
once are ordered by PostgreSQL and the second sees the first's service.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from eventlet import tpool
from sqlalchemy import and_, delete, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Engine

from apps.store import dsid_claims_table as claims_table
from apps.store import services_table
from controller.api import Reply
from controller.cluster.claims import SETTLE_S, Claim, Plan, plan, stale

LOG = logging.getLogger("dyncast")

Taken = Literal["new", "held"]
EPOCH = "SELECT extract(epoch FROM clock_timestamp())"  # the database's clock: one for all
TIMEOUT_MS = 2000  # a claim's statements and row locks wait at most this long (then a 503)


class Refused(Exception):
    """The D-SID is claimed by another service."""

    def __init__(self, dsid: str, holder: str, member: str) -> None:
        super().__init__(f"{dsid} is claimed by service {holder!r} (at member {member})")
        self.dsid, self.holder, self.member = dsid, holder, member


@dataclass(frozen=True)
class Pending:
    """A write's claims while it is served: its plan, and whether its claim was new."""

    plan: Plan
    new: bool


class DsidClaims:
    """Take and release D-SID claims on the store's engine (PostgreSQL); `counters`: the
    core's (`dsid_claims_taken`, `_refused`, `_failed`, `_released`, `_release_failed`)."""

    def __init__(self, engine: Engine, member_id: str,
                 counters: Counter[str]) -> None:
        self.engine = engine
        self.member_id = member_id
        self.counters = counters
        self.started = False  # this member's services claimed (`start`)

    def before(self, method: str, path: str, body: bytes,
               services: Mapping[str, str]) -> Reply | Pending | None:
        """Before serving an operator's write (`services`: the ones held here, name ->
        D-SID): None if it claims nothing, a 409 (the D-SID is another service's) or a 503
        (the store cannot be reached: nothing is claimed, nothing changes) to answer instead,
        else what to settle once it is served (`after`). Blocks its green thread only."""
        todo = plan(method, path, body, services)
        if todo is None:
            return None
        if todo.take is None:
            return Pending(todo, False)
        try:
            taken = tpool.execute(self.take, todo.take, services)  # (the caller's own copy)
        except Refused as exc:
            self.counters["dsid_claims_refused"] += 1
            return Reply(409, {"error": f"D-SID {exc}: one D-SID, one service across the "
                               "cluster", "field": "dsid"})
        except Exception as exc:  # the database's errors: refused whole, nothing changed
            self.counters["dsid_claims_failed"] += 1
            LOG.error("dyncast: cluster: cannot claim D-SID %s for service %s in the store: "
                      "%s", todo.take.dsid, todo.take.service, exc)
            return Reply(503, {"error": f"D-SID {todo.take.dsid} could not be claimed: the "
                               "store did not answer (a cluster member claims a service's "
                               "D-SID there first); nothing was changed, try again",
                               "field": "dsid"})
        self.counters["dsid_claims_taken"] += taken == "new"
        return Pending(todo, taken == "new")

    def after(self, pending: Pending, status: int) -> None:
        """Once the write was served with `status`: release the D-SID its service left (a
        success), or the claim it took for nothing (a refusal). A release that fails leaves
        a claim that another service may take once it is `stale`."""
        todo = pending.plan
        gone = todo.release if status < 300 else (todo.take if pending.new else None)
        if gone is None:
            return
        try:
            self.counters["dsid_claims_released"] += tpool.execute(self.release, gone)
        except Exception as exc:
            self.counters["dsid_claims_release_failed"] += 1
            LOG.warning("dyncast: cluster: cannot release the claim of service %s on D-SID %s "
                        "(another service may take it in %.0f s): %s", gone.service, gone.dsid,
                        SETTLE_S, exc)

    def take(self, claim: Claim, here: Mapping[str, str]) -> Taken:
        """Claim `claim.dsid` for `claim.service`: "new" if this took it, "held" if that
        service held it already; raises Refused if another service holds it (a claim left
        from a failed release, `stale`, is taken over), and the database's errors as they
        come. `here`: the services this member holds, name -> D-SID."""
        with self.engine.begin() as conn:
            conn.execute(text(f"SET LOCAL statement_timeout = {TIMEOUT_MS}"))  # a row another
            conn.execute(text(f"SET LOCAL lock_timeout = {TIMEOUT_MS}"))  # holds: 503, no wait
            now = float(conn.execute(text(EPOCH)).scalar_one())
            inserted = conn.execute(pg_insert(claims_table).values(
                dsid=claim.dsid, service=claim.service, member_id=self.member_id, at=now)
                .on_conflict_do_nothing(index_elements=["dsid"])
                .returning(claims_table.c.dsid)).first() is not None
            if inserted:
                return "new"
            row = conn.execute(select(claims_table).where(claims_table.c.dsid == claim.dsid)
                               .with_for_update()).one()
            if row.service == claim.service:
                return "held"
            stored = conn.execute(select(services_table.c.dsid).where(
                services_table.c.name == row.service)).scalar_one_or_none()
            if not stale(row.at, now, claim.dsid, here.get(row.service), stored):
                raise Refused(claim.dsid, row.service, row.member_id)
            conn.execute(claims_table.update().where(claims_table.c.dsid == claim.dsid)
                         .values(service=claim.service, member_id=self.member_id, at=now))
            return "new"

    def release(self, claim: Claim) -> int:
        """Give `claim.dsid` back if `claim.service` holds it; return the rows deleted."""
        with self.engine.begin() as conn:
            conn.execute(text(f"SET LOCAL statement_timeout = {TIMEOUT_MS}"))
            return int(conn.execute(delete(claims_table).where(and_(
                claims_table.c.dsid == claim.dsid,
                claims_table.c.service == claim.service))).rowcount or 0)

    def start(self, services: Mapping[str, str]) -> None:
        """Once, at the first heartbeat (and at each after until it succeeds): claim the
        D-SID of every service this member holds (`services`, name -> D-SID: the
        configuration's and the store's) that no service claims yet; so services made before
        claims existed are claimed too. One that another service claims is left as it is
        (members that differ already: see `changes_conflicting`)."""
        if self.started:
            return
        try:
            tpool.execute(self._claim_all, dict(services))
        except Exception as exc:
            self.counters["dsid_claims_failed"] += 1
            if not self.counters["dsid_claims_start_failed"]:  # once: it is tried each beat
                LOG.error("dyncast: cluster: cannot claim this member's services' D-SIDs yet "
                          "(tried again at each heartbeat): %s", exc)
            self.counters["dsid_claims_start_failed"] += 1
            return
        self.started = True

    def _claim_all(self, services: Mapping[str, str]) -> None:
        """`start`'s database work."""
        if not services:
            return
        with self.engine.begin() as conn:
            now = float(conn.execute(text(EPOCH)).scalar_one())
            conn.execute(pg_insert(claims_table).values([
                {"dsid": dsid, "service": name, "member_id": self.member_id, "at": now}
                for name, dsid in sorted(services.items())])
                .on_conflict_do_nothing(index_elements=["dsid"]))

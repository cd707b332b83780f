"""Catching up after a lost listening connection: the changes a member missed, as requests.

Notifications are not a log: while a member's LISTEN connection is broken, the changes the
others notify are lost to it. The writes to services and instances are also logged for an hour
(apps/changefeed.py `missed`: applied first, each judged by its stamp); every member also
writes the shared records to the store, so the member then reads the store's services and
instances (what the log does not cover: metric reports, a longer break) and turns each difference
from what it holds into the request another member would have sent (`Change`), applied through
the same path as a notification (`SharedSide.apply_change`): the same validation and core calls,
never passed on. Applying them is idempotent (a repeat is refused or changes nothing).

What differs, and the request that repairs it:
- a stored service this member lacks: POST services; one whose record differs: PUT services/N;
- a stored instance it lacks: POST instances (then its drain and metrics, below);
- the drain: stored draining, here not: POST instances/D/drain (or deactivate when it is to
  stop when drained) with the deadline left; here draining, stored not: POST .../undrain;
- metrics newer in the store than here: POST metrics (recorded at this member's `now`, as a
  notified report is), also for an instance whose record has a write pending here (reports
  have their own order, controller/instances/intake.py);
- a service or instance this member holds that the store does not (withdrawn elsewhere):
  DELETE, unless this member has a write of that record still waiting for the store (it was
  made here and not yet flushed: the store is behind, not the member), and never a service of
  the configuration file (every member has it; the store need not).

Boundary: pure. Core values in (this member's catalogue, the store's records, the keys of the
writes still queued, `now`); `Change` values out.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from controller.cluster.changes import PREFIX, Change
from controller.model import Instance, Service


def catch_up(member: str, services: Mapping[str, Service], instances: Mapping[str, Instance],
             stored_services: Iterable[Service], stored_instances: Iterable[Instance],
             pending: Collection[tuple[str, str]], configured: Collection[str],
             now: float) -> list[Change]:
    """The requests that bring this member's catalogue (`services`, `instances`) to the
    store's; `pending` holds the (kind, key) of this member's writes not yet in the store
    (newer than what the store holds: those records are left as they are here, whichever way
    they differ), `configured` the names of the services of the configuration file (never
    deleted here)."""
    out: list[Change] = []

    def req(method: str, path: str, body: Any = None) -> None:
        out.append(Change(member, method, PREFIX + path,
                          "" if body is None else json.dumps(body, sort_keys=True)))

    stored_svcs = {s.name: s for s in stored_services}
    stored_insts = {i.dbid: i for i in stored_instances}
    for name, svc in sorted(stored_svcs.items()):
        here = services.get(name)
        if ("service", name) in pending:
            continue  # this member's newer write is on its way (a deletion too)
        if here is None:
            req("POST", "services", svc.to_dict())
        elif here.to_dict() != svc.to_dict():
            req("PUT", f"services/{name}", svc.to_dict())
    dsids = {s.name: s.dsid for s in (*services.values(), *stored_svcs.values())}
    for dbid, inst in sorted(stored_insts.items()):
        here_inst = instances.get(dbid)
        if ("instance", dbid) in pending:
            if here_inst is not None:  # (reports have their own order: intake.py)
                _metrics(req, here_inst, inst)
            continue
        if here_inst is None:
            if inst.service not in dsids:
                continue  # its service is gone: nothing to register it for
            req("POST", "instances", {"dsid": dsids[inst.service], "dbid": dbid,
                                      "dma": inst.dma, "active": inst.registered_active})
        _drain(req, here_inst, inst, now)
        _metrics(req, here_inst, inst)
    for dbid in sorted(set(instances) - set(stored_insts)):
        if ("instance", dbid) not in pending:
            req("DELETE", f"instances/{dbid}")
    for name in sorted(set(services) - set(stored_svcs)):
        if ("service", name) not in pending and name not in configured:
            req("DELETE", f"services/{name}")
    return out


def _metrics(req: Any, here: Instance | None, stored: Instance) -> None:
    """The report that gives this member the stored metrics, if they are newer than its own."""
    if stored.metrics is not None and stored.metrics_at is not None and (
            here is None or here.metrics_at is None or stored.metrics_at > here.metrics_at):
        report = {k: v for k, v in stored.metrics.to_dict().items() if v is not None}
        req("POST", "metrics", {**report, "dbid": stored.dbid})


def _drain(req: Any, here: Instance | None, stored: Instance, now: float) -> None:
    """The request that gives this member's instance the stored drain state (if any)."""
    draining_here = here is not None and here.draining
    if stored.draining and not draining_here:
        body = {} if stored.drain_deadline is None else {
            "deadline_s": max(0.0, stored.drain_deadline - now)}
        verb = "deactivate" if stored.stop_when_drained else "drain"
        req("POST", f"instances/{stored.dbid}/{verb}", body)
    elif draining_here and not stored.draining:
        req("POST", f"instances/{stored.dbid}/undrain")

"""One member's side of the record order (records.py): its own writes stamped, the other
members' applied in that order.

`Order.accepted` stamps a write this member accepted (what the others are told) and notes what
it withdrew with it; `Order.apply` applies another member's change through `serve` (the API,
as that member's request) unless a later write to its record stands here, and then what the
change still writes besides (`still_applied`); a registration refused for want of its service
is kept and applied again when the service is created (`Parked`); an instance registered anew
gets the operator's drain that stands for it again (`RecordClocks.standing`).

Boundary: pure. The catalogue (read only), requests, stamps and the `serve` callable in; what
to count out. The shell (apps/changefeed.py) serves, logs and publishes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from controller.cluster.changes import PREFIX, Change
from controller.cluster.records import (
    Parked,
    RecordClocks,
    as_applied,
    body_field,
    record_of,
    still_applied,
)
from controller.model import Instance, Service


class Catalogue(Protocol):
    """What the order reads of this member's catalogue (controller.instances.catalogue)."""

    @property
    def services(self) -> Mapping[str, Service]: ...

    @property
    def instances(self) -> Mapping[str, Instance]: ...

    def service_for_dsid(self, dsid: str) -> Service | None: ...


class Answer(Protocol):
    """What serving a request gives: its status and body (controller.api.Reply)."""

    status: int
    body: Any


Serve = Callable[[Change], Answer]  # serve another member's change here, as its request


class Order:
    """This member's stamps and kept registrations, over its catalogue."""

    def __init__(self, member: str, catalogue: Catalogue, counters: Counter[str]) -> None:
        self.member = member
        self.catalogue = catalogue
        self.counters = counters
        self.clocks = RecordClocks()
        self.parked = Parked()

    def doomed(self, method: str, path: str) -> list[str]:
        """The instances a write is about to withdraw with it (a service's deletion: its
        instances), to give `accepted` (and note in `apply`)."""
        record = record_of(method, path, "")
        if method != "DELETE" or record is None or not record.startswith("service:"):
            return []
        name = record.split(":", 1)[1]
        return [d for d, i in self.catalogue.instances.items() if i.service == name]

    def accepted(self, method: str, path: str, body: str, at: float, status: int,
                 doomed: Sequence[str], serve: Serve) -> float:
        """This member accepted a write at `at` (answered `status`; `doomed`: the instances
        it withdrew with it): the stamp the others are to order it by."""
        at = self.clocks.accepted(method, path, body, at, self.member)
        self.clocks.withdrew(Change(self.member, method, path, body, at), doomed)
        self._after(method, path, body, status, serve)
        return at

    def apply(self, change: Change, serve: Serve) -> Answer | None:
        """Apply another member's change through `serve`, unless a later write to its record
        stands here (None: left out, counted in `changes_superseded`)."""
        dsid = _dsid_of(change)
        svc = None if dsid is None else self.catalogue.service_for_dsid(dsid)
        if not self.clocks.admit(change, None if svc is None else svc.name):
            self.counters["changes_superseded"] += 1
            if change.method == "DELETE":  # what else it writes (`still_applied`)
                insts = self.catalogue.instances.values()
                services: dict[str, list[str]] = {}
                for inst in insts:
                    services.setdefault(inst.service, []).append(inst.dbid)
                for part in still_applied(change, services,
                                          {i.dbid for i in insts if i.draining}):
                    self.apply(part, serve)  # (each ordered on its own record)
                self.clocks.left_out(change)
            return None
        applied = as_applied(change, self.catalogue.services.__contains__)
        doomed = self.doomed(applied.method, applied.path)
        reply = serve(applied)
        if (reply.status == 404 and isinstance(reply.body, dict)
                and reply.body.get("field") == "dsid" and change.at is not None):
            self.parked.park(change)  # its service is gone here: applied if it comes back
        else:
            self.clocks.applied(change)  # the latest write of its record, even where refused
        if reply.status < 400:
            self.clocks.withdrew(change, doomed)
            self._after(applied.method, applied.path, applied.body, reply.status, serve)
        return reply

    def _after(self, method: str, path: str, body: str, status: int, serve: Serve) -> None:
        """A write was applied here: a service created or replaced gets the registrations
        kept for its D-SID; an instance registered anew (201) the operator's drain or
        deactivation that stands for it (made elsewhere after the withdrawal applied here)."""
        record = record_of(method, path, body)
        if record is None or method == "DELETE":
            return
        kind, name = record.split(":", 1)
        svc = self.catalogue.services.get(name) if kind == "service" else None
        if svc is not None and len(self.parked):
            for change in self.parked.take(svc.dsid):
                self.apply(change, serve)
        write = self.clocks.standing(name) if kind == "instance" and status == 201 else None
        if write is not None and write.path.endswith(("/drain", "/deactivate")):
            serve(write)


def _dsid_of(change: Change) -> str | None:
    """The D-SID a registration names (None: not a registration, or none named)."""
    if change.method != "POST" or change.path.rstrip("/") != PREFIX + "instances":
        return None
    return body_field(change.body, "dsid")

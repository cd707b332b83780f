"""The service catalogue: services by name and D-SID, instances by D-BID, and their states.

It validates references between them (an instance names an existing D-SID; a D-BID belongs to
one service) and says whether an instance may take new flows. It knows nothing of switches.
"""

from __future__ import annotations

from controller.errors import Conflict, NotFound, ValidationError
from controller.model import Instance, Metrics, Service, check_unique


def instance_state(inst: Instance, now: float, stale_after: float) -> str:
    """`inactive` (registered or reported not serving), `unknown` (no fresh metrics), `active`."""
    if not inst.registered_active or (inst.metrics is not None and not inst.metrics.active):
        return "inactive"
    if inst.metrics_at is None or now - inst.metrics_at > stale_after:
        return "unknown"
    return "active"


class Catalogue:
    """Services and instances, consistent with each other."""

    def __init__(self) -> None:
        self.services: dict[str, Service] = {}
        self.by_dsid: dict[str, str] = {}
        self.instances: dict[str, Instance] = {}  # (changed only through `_put`, `_drop`)
        # service -> its instances by D-BID: every recompute asks for one service's (a scan of
        # every instance for them: 1,000 instances x 50 services per Kdl link change)
        self._of: dict[str, dict[str, Instance]] = {}

    def restore(self, services: list[Service], instances: list[Instance]) -> None:
        """Load persisted services and instances (services already known win)."""
        for svc in services:
            if svc.name not in self.services and svc.dsid not in self.by_dsid:
                self.put_service(svc, create=True)
        for inst in instances:
            if inst.service in self.services:
                self._put(inst)

    def service(self, name: str) -> Service:
        """The service called `name`, or NotFound."""
        svc = self.services.get(name)
        if svc is None:
            raise NotFound("service", name)
        return svc

    def service_for_dsid(self, dsid: str) -> Service | None:
        """The service whose D-SID is `dsid`, if any."""
        name = self.by_dsid.get(dsid)
        return None if name is None else self.services[name]

    def put_service(self, svc: Service, create: bool) -> Service | None:
        """Create (`create`) or replace a service; return the service it replaced."""
        old = self.services.get(svc.name)
        if create and old is not None:
            raise Conflict(f"service {svc.name!r} already exists", "name")
        if not create and old is None:
            raise NotFound("service", svc.name)
        others = tuple(s for s in self.services.values() if s.name != svc.name)
        try:
            check_unique((*others, svc))
        except ValidationError as exc:
            raise Conflict(exc.message, exc.field.rpartition(".")[2]) from None
        if svc.dsid in self.instances:
            raise Conflict(f"D-SID {svc.dsid} is an instance's D-BID", "dsid")
        if old is not None:
            del self.by_dsid[old.dsid]
        self.services[svc.name] = svc
        self.by_dsid[svc.dsid] = svc.name
        return old

    def delete_service(self, name: str) -> tuple[Service, list[Instance]]:
        """Remove a service and its instances; return both."""
        svc = self.service(name)
        del self.services[name]
        del self.by_dsid[svc.dsid]
        gone = [i for i in self.instances.values() if i.service == name]
        for inst in gone:
            self._drop(inst.dbid)
        return svc, gone

    def register(self, dsid: str, dbid: str, dma: str, active: bool, now: float) -> Instance:
        """Register (or refresh) the binding (D-SID, D-BID) announced by a D-MA."""
        svc = self.service_for_dsid(dsid)
        if svc is None:
            raise NotFound("D-SID", dsid, "dsid")
        if dbid in self.by_dsid:
            raise Conflict(f"D-BID {dbid} is a D-SID", "dbid")
        inst = self.instances.get(dbid)
        if inst is not None and inst.service != svc.name:
            raise Conflict(f"D-BID {dbid} is already an instance of service {inst.service!r}",
                           "dbid")
        if inst is None:
            inst = Instance(service=svc.name, dbid=dbid, registered_at=now)
            self._put(inst)
        inst.dma = dma
        inst.registered_active = active
        return inst

    def withdraw(self, dbid: str) -> Instance:
        """Remove an instance (its D-MA withdrew it)."""
        inst = self._drop(dbid)
        if inst is None:
            raise NotFound("instance", dbid)
        return inst

    def report(self, dbid: str, metrics: Metrics, now: float) -> Instance:
        """Record a metric report for a registered instance."""
        inst = self.instances.get(dbid)
        if inst is None:
            raise NotFound("instance", dbid)
        inst.metrics = metrics
        inst.metrics_at = now
        return inst

    def of_service(self, name: str) -> list[Instance]:
        """Instances of one service, by D-BID."""
        return sorted(self._of.get(name, {}).values(), key=lambda i: i.dbid)

    def _put(self, inst: Instance) -> None:
        """Hold `inst` (in place of any instance with its D-BID, where that one was)."""
        held = self.instances.get(inst.dbid)
        if held is not None:
            self._unindex(held)
        self.instances[inst.dbid] = inst
        self._of.setdefault(inst.service, {})[inst.dbid] = inst

    def _drop(self, dbid: str) -> Instance | None:
        """Forget the instance `dbid` and return it (None: there was none)."""
        inst = self.instances.pop(dbid, None)
        if inst is not None:
            self._unindex(inst)
        return inst

    def _unindex(self, inst: Instance) -> None:
        """Take `inst` out of its service's instances."""
        mine = self._of[inst.service]
        del mine[inst.dbid]
        if not mine:
            del self._of[inst.service]

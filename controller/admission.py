"""What the API checks against the state before a write: quotas ([limits]) and the address
rules that depend on what is known (learned hosts, D-SIDs, D-BIDs). Pure: state in, raise or
return; nothing here changes anything, so a refused request leaves no trace.
"""

from __future__ import annotations

from controller.core import Core
from controller.errors import NotFound, QuotaExceeded, ValidationError
from controller.model import Service
from controller.validate import address_problem


def admit_service(core: Core, svc: Service, create: bool, quota: bool = True) -> None:
    """Raise unless `svc` may be created (quota, unless `quota` is False: another cluster
    member admitted it) or replace its namesake (D-SID rules)."""
    cat, limits = core.catalogue, core.config.limits
    if (quota and create and svc.name not in cat.services
            and len(cat.services) >= limits.max_services):
        raise QuotaExceeded("limits.max_services",
                            f"{limits.max_services} services exist already")
    problem = address_problem(svc.dsid, "D-SID", core.topology.hosts, cat.instances)
    if problem:
        raise ValidationError("dsid", problem)


def admit_instance(core: Core, dsid: str, dbid: str, quota: bool = True) -> None:
    """Raise unless (dsid, dbid) may be registered: D-BID rules, then quotas for a new one
    (unless `quota` is False: another cluster member admitted it)."""
    cat, limits = core.catalogue, core.config.limits
    problem = address_problem(dbid, "D-BID", others=cat.by_dsid)
    if problem:
        raise ValidationError("dbid", problem)
    if dbid in cat.instances or not quota:
        return
    svc = cat.service_for_dsid(dsid)
    if svc is not None:
        mine = sum(1 for i in cat.instances.values() if i.service == svc.name)
        if mine >= limits.max_instances_per_service:
            raise QuotaExceeded("limits.max_instances_per_service",
                                f"service {svc.name!r} has {mine} instances already")
    if len(cat.instances) >= limits.max_instances:
        raise QuotaExceeded("limits.max_instances",
                            f"{limits.max_instances} instances exist already")


def check_report(core: Core, dbid: str, dsid: object, where: str) -> None:
    """Raise unless instance `dbid` exists and `dsid` (when given: the report's, already an
    address) is the D-SID of its service; `where` prefixes the field names."""
    inst = core.catalogue.instances.get(dbid)
    if inst is None:
        raise NotFound("instance", dbid)
    svc = core.catalogue.services.get(inst.service)
    if dsid is not None and svc is not None and svc.dsid != dsid:
        raise ValidationError(f"{where}dsid", f"instance {dbid} serves {svc.dsid}, not {dsid}")

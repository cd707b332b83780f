"""Which operator writes must first claim a D-SID in the shared store, and what each claims and
releases (issue 21: two services created at once at two members on one D-SID).

Boundary: pure. Records are ordered per record (`records.py`: last writer wins), but a D-SID
excludes a second service under another name: created at once at two members, each member
refused the other's and the members held different services for good. So in a cluster a write
that gives a service a D-SID first claims it in the store (`apps/dsidclaims.py`), one row per
D-SID naming its service, taken in one transaction: of two services on one D-SID only the first
claim is taken, and the other write is refused with a 409 before anything changes. A claim is
released when its service leaves the D-SID (deleted, or replaced on another); a write that
claims and is then refused gives back what it took. `plan` says which, from the request and
the services this member holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from controller.cluster.changes import PREFIX
from controller.errors import ValidationError
from controller.jsonbody import loads
from controller.model import service_from_dict

SERVICES = PREFIX + "services"  # the paths a claim may concern start so
DEPTH = 16  # JSON levels a body is read to here
SETTLE_S = 30.0  # a claim older than this whose service holds its D-SID nowhere (neither here
# nor in the store) is left from a release that failed, and may be taken


@dataclass(frozen=True)
class Claim:
    """A D-SID and the service that claims it."""

    dsid: str
    service: str


@dataclass(frozen=True)
class Plan:
    """Before a write is served: the claim to take (None: none); once it was served (2xx): the
    claim to release (the service's D-SID it leaves)."""

    take: Claim | None
    release: Claim | None


def plan(method: str, path: str, body: bytes, services: Mapping[str, str]) -> Plan | None:
    """The claims of an operator write to a service (`services`: the ones held here, name ->
    D-SID); None for any other request, and for a body the API will refuse anyway (its 400
    names the field)."""
    if not path.startswith(PREFIX):
        return None
    parts = [p for p in path[len(PREFIX):].split("/") if p]
    if not parts or parts[0] != "services" or len(parts) > 2:
        return None
    name = parts[1] if len(parts) == 2 else None
    if method == "DELETE" and name is not None:
        held = services.get(name)
        return None if held is None else Plan(None, Claim(held, name))
    if (method, name is None) not in (("POST", True), ("PUT", False)):
        return None
    try:  # (a valid service is 3 levels deep: one deeper is the API's 400 anyway)
        data = loads(body, len(body), DEPTH)
        if not isinstance(data, dict):
            return None
        if name is not None:
            data = {**data, "name": name}
        service = service_from_dict(data)
    except (ValueError, ValidationError):
        return None
    held = services.get(service.name)
    release = None if held in (None, service.dsid) else Claim(held, service.name)
    return Plan(Claim(service.dsid, service.name), release)


def stale(claim_at: float, now: float, dsid: str, here: str | None,
          stored: str | None) -> bool:
    """True when a claim on `dsid` taken at `claim_at` may be taken by another service: it is
    older than SETTLE_S and its service holds `dsid` neither here nor in the store (`here`,
    `stored`: that service's D-SID at this member and in the store, None where it has none). A
    younger one may be a service created elsewhere that this member has not heard of yet."""
    return now - claim_at > SETTLE_S and dsid not in (here, stored)

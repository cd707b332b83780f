"""Which credential each request needs, and what an agent may speak for.

Policy (one place for every route the app serves, present and future):
- the agent endpoints (register `POST /dyncast/v1/instances`, report `POST /dyncast/v1/metrics`,
  withdraw `DELETE /dyncast/v1/instances/{dbid}`) need an agent signature; a withdrawal sent
  without one (no `X-Dyncast-Agent`) is an operator's and needs an `admin` token (the
  instance of an agent revoked, or whose key is lost, can be withdrawn);
- GET and HEAD need a `read` or `admin` token, or nothing with `open_reads`;
- `/dyncast/ui/` static assets are open (they hold no data), and so are the probes `/healthz`
  and `/readyz` (they answer alive/ready and which check failed, nothing else: a load balancer's
  or orchestrator's probe carries no credential);
- everything else needs an `admin` token.
A body-carrying request must be `Content-Type: application/json`, without a content coding
(415), auth on or off.
An agent speaks only for D-SIDs and D-BIDs inside its prefixes, and only for the instances it
registered (their `dma` is its id), so the commands answered to a report go to the instance's
owner only; a new registration past its quota is a 429.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.auth.credentials import Agent
from controller.auth.errors import AuthError
from controller.auth.settings import SecuritySettings
from controller.auth.signing import AGENT_HEADER
from controller.auth.verifier import Verifier
from controller.errors import ValidationError
from controller.jsonbody import loads
from controller.model import Instance
from controller.validate import address_problem, parse_ipv4

API = "/dyncast/v1/"
UI = "/dyncast/ui"
READS = ("GET", "HEAD")
JSON_TYPE = "application/json"
PROBES = ("/healthz", "/readyz")


@dataclass(frozen=True, slots=True)
class Request:
    """What the gate sees of one HTTP request. `header` reads a header ('' if absent).
    `path` is percent-decoded (what the API routes on); `target` is the request target exactly
    as received, percent-escapes and query kept: an agent's signature covers it, so two
    targets that decode alike never share a signature ('' when unknown: `path`)."""

    method: str
    path: str
    body: bytes
    content_type: str
    header: Callable[[str], str]
    target: str = ""


def classify(method: str, path: str) -> str:
    """The credential a request needs: 'open', 'agent', 'read' or 'admin'."""
    if method in READS and (path == UI or path.startswith(UI + "/") or path in PROBES):
        return "open"
    parts = [p for p in path[len(API):].split("/") if p] if path.startswith(API) else []
    if (method, parts) == ("POST", ["instances"]) or (method, parts) == ("POST", ["metrics"]):
        return "agent"
    if method == "DELETE" and len(parts) == 2 and parts[0] == "instances":
        return "agent"
    return "read" if method in READS else "admin"


def admit(req: Request, settings: SecuritySettings, verifier: Verifier,
          instances: Mapping[str, Instance], now: float) -> str:
    """Who is calling ('anonymous', 'agent ID', 'token NAME'); AuthError if refused.
    `instances` (by D-BID) tell who owns what; nothing here changes them."""
    if req.body and req.content_type.split(";")[0].strip().lower() != JSON_TYPE:
        got = f"got {req.content_type[:60]!r}" if req.content_type else "missing"
        raise AuthError(415, "Content-Type", f"must be {JSON_TYPE}, {got}")
    coding = req.header("Content-Encoding").strip().lower()
    if req.body and coding not in ("", "identity"):  # nothing here decodes one
        raise AuthError(415, "Content-Encoding", f"{coding[:60]!r} is not accepted: send the "
                        "body uncompressed")
    kind = classify(req.method, req.path)
    if kind == "agent" and req.method == "DELETE" and not req.header(AGENT_HEADER):
        kind = "admin"  # an operator's withdrawal (an agent revoked, its key lost): no
        #                 signature, an admin token
    if not settings.auth or kind == "open" or (kind == "read" and settings.open_reads):
        return "anonymous"
    if kind == "agent":
        agent = verifier.agent(req.method, req.target or req.path, req.body, req.header, now)
        authorise(agent, req, instances)
        return f"agent {agent.id}"
    token = verifier.token(req.header("Authorization"))
    if kind == "admin" and token.role != "admin":
        raise AuthError(403, "Authorization", f"token {token.name!r} has role "
                        f"{token.role!r}; {req.method} needs 'admin'")
    return f"token {token.name}"


def authorise(agent: Agent, req: Request, instances: Mapping[str, Instance]) -> None:
    """Raise AuthError 403 unless `agent` may make this call (its prefixes, its instances),
    429 if it would register past its quota. A body the API will refuse anyway (not JSON,
    a bad address) is left to the API's 400."""
    data = _json(req.body)
    parts = [p for p in req.path[len(API):].split("/") if p]
    if req.method == "DELETE":
        _own(agent, _address(parts[1]), "dbid", instances)
    elif parts == ["instances"]:
        if not isinstance(data, dict):
            return
        if data.get("dma") != agent.id:
            raise AuthError(403, "dma", f"must be the signing agent's id {agent.id!r}")
        dsid = _address(data.get("dsid"))
        if dsid is not None and not agent.covers(dsid):
            raise AuthError(403, "dsid", f"{dsid} is outside agent {agent.id!r}'s prefixes")
        dbid = _address(data.get("dbid"))
        _own(agent, dbid, "dbid", instances, claim=True)
        if dbid is not None and dbid not in instances:
            mine = sum(1 for i in instances.values() if i.dma == agent.id)
            if mine >= agent.max_instances:
                raise AuthError(429, "security.max_instances_per_agent",
                                f"agent {agent.id!r} has {mine} instances already")
    else:
        batch = isinstance(data, dict) and isinstance(data.get("reports"), list)
        reports = data["reports"] if batch else [data]
        for i, report in enumerate(reports):
            if isinstance(report, dict):
                where = f"reports[{i}]." if batch else ""
                dsid = _address(report.get("dsid"))
                if dsid is not None and not agent.covers(dsid):
                    raise AuthError(403, f"{where}dsid", f"{dsid} is outside agent "
                                    f"{agent.id!r}'s prefixes")
                _own(agent, _address(report.get("dbid")), f"{where}dbid", instances)


def _own(agent: Agent, dbid: str | None, field: str, instances: Mapping[str, Instance],
         claim: bool = False) -> None:
    """Raise 403 unless `dbid` is inside the agent's prefixes and, if registered, its own;
    with `claim` (a registration), an instance with no owner (registered before
    authentication, `dma` empty) may be taken over."""
    if dbid is None:
        return
    if not agent.covers(dbid):
        raise AuthError(403, field, f"{dbid} is outside agent {agent.id!r}'s prefixes")
    inst = instances.get(dbid)
    if inst is not None and inst.dma != agent.id and not (claim and inst.dma == ""):
        raise AuthError(403, field, f"instance {dbid} belongs to another agent")


def _address(value: Any) -> str | None:
    """A canonical IPv4 address, or None if `value` is not one (the API will say so)."""
    return _canonical(value) if isinstance(value, str) and len(value) <= 64 else None


@functools.lru_cache(maxsize=1 << 16)
def _canonical(text: str) -> str | None:
    """`text` as a canonical IPv4 address, or None (cached: reports repeat their D-BIDs),
    also for a reserved one (0.0.0.0, broadcast, multicast...): the API's 400 says why it can
    be no D-SID or D-BID, where a 403 "outside the agent's prefixes" misled."""
    try:
        ip = parse_ipv4(text, "")
    except ValidationError:
        return None
    return None if address_problem(ip, "D-BID") is not None else ip


def _json(body: bytes) -> Any:
    """The parsed body, or None when it is not JSON (the API's bounded parser judges it)."""
    try:
        return loads(body, len(body) + 1, 64)
    except ValidationError:
        return None

"""The REST API under /dyncast/v1/, without a web framework: (method, path, body) in,
(status, JSON value, intents) out. The shell serves it over Ryu's WSGI and sends the intents.

Bad input raises before anything changes, so a 4xx never leaves partial state behind.

`handle` serves a request to the end. `steps` serves it in bounded steps, for the shell to let
its event loop run in between: a metrics batch is checked, then recorded, `SLICE` reports a
step (recorded only once all of it passed), and its services are recomputed later, once for
the whole burst (`Core.flush`); GET /decisions recomputes dirty services one a step first.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from controller.admission import admit_instance, admit_service, check_report
from controller.core import Core
from controller.dataplane.rules import caveats
from controller.errors import Conflict, NotFound, QuotaExceeded, ValidationError
from controller.instances.intake import SLICE, owners_of, same, slices
from controller.intents import Intent
from controller.jsonbody import loads
from controller.model import Metrics, Service, metrics_from_dict, service_from_dict
from controller.validate import (
    check_name,
    check_number,
    parse_ipv4,
    reject_unknown,
)
from controller.views import (
    DecisionViews,
    Rows,
    bindings_view,
    instance_view,
    stats_view,
    topology_view,
)

PREFIX = "/dyncast/v1/"
INSTANCE_VERBS = ("drain", "undrain", "activate", "deactivate")
DECISION_SLICE = 5  # decisions (one service at one ingress, its candidates) viewed and encoded
# a step (or 500 whose rows are reused)
T = TypeVar("T")
# a handler's steps: each yields the intents it produced and gets the time to go on at (None:
# the same); the reply is the generator's value
Steps = Generator[list[Intent], float | None, "Reply"]


@dataclass
class Reply:
    """An HTTP status, a JSON-ready body, and the intents the request produced."""

    status: int
    body: Any
    intents: list[Intent] = field(default_factory=list)
    allow: tuple[str, ...] = ()  # a 405's methods the resource takes (the `Allow` header)


class Api:
    """Routes requests to the core."""

    def __init__(self, core: Core, served_elsewhere: frozenset[str] = frozenset()) -> None:
        self.core = core
        self.views = DecisionViews()
        self.served_elsewhere = served_elsewhere  # resources the shell serves (the list names them)
        self._routes: dict[tuple[str, str],
                           Callable[[list[str], Any, float], Reply | Steps]] = {
            ("GET", "services"): self._list_services,
            ("POST", "services"): self._create_service,
            ("PUT", "services"): self._update_service,
            ("DELETE", "services"): self._delete_service,
            ("GET", "instances"): self._list_instances,
            ("POST", "instances"): self._register,
            ("DELETE", "instances"): self._withdraw,
            ("POST", "metrics"): self._metrics,
            ("GET", "decisions"): self._decisions,
            ("GET", "bindings"): self._bindings,
            ("GET", "topology"): self._topology,
            ("GET", "stats"): self._stats,
        }

    def handle(self, method: str, path: str, body: bytes, now: float) -> Reply:
        """Serve one request to the end, recomputing what it left dirty; never raises for bad
        input."""
        intents: list[Intent] = []
        for step in self.steps(method, path, body, now):
            if isinstance(step, Reply):
                step.intents[:0] = intents
                step.intents += self.core.flush(now)
                return step
            intents += step
        raise AssertionError("the steps of a request ended without a reply")

    def steps(self, method: str, path: str, body: bytes, now: float, accepted: float | None = None,
              remote: bool = False) -> Generator[list[Intent] | Reply, float | None, None]:
        """Serve one request in bounded steps: each yields the intents it produced (send the
        time to go on at, or None for the same), the last yields the Reply. A metrics batch
        leaves its services dirty (`Core.flush` recomputes them). `remote`: another cluster
        member's request, `accepted` there then (its reports replace only older ones here);
        that member held it to the quotas ([limits]), so it is not held to them here again
        (members refusing each other's would end holding different sets)."""
        reply = self._route(method, path)
        if reply is not None:
            yield reply
            return
        parts = [p for p in path[len(PREFIX):].split("/") if p]
        limits = self.core.config.limits
        try:
            _check_path(parts, MAX_ARGS.get((method, parts[0]), 1))
            if (method == "GET" or (method == "DELETE" and len(parts) > 1)) and b"".join(
                    body.split()) not in NOTHING:  # (ignored, it could be an option the caller
                raise ValidationError("body", f"{method} takes no body")  # meant; a DELETE of
                # no item: the handler's 400 on the path)
            data = (loads(body, limits.max_body_bytes, limits.max_json_depth)
                    if method in ("POST", "PUT") else None)
            served: Reply | Steps
            if (method, parts[0]) == ("POST", "metrics"):
                served = self._metrics(parts[1:], data, now, accepted)
            elif remote and method == "POST" and parts[0] in ("services", "instances"):
                served = (self._create_service if parts[0] == "services" else self._register)(
                    parts[1:], data, now, False)
            else:
                served = self._routes[(method, parts[0])](parts[1:], data, now)
            if not isinstance(served, Reply):
                served = yield from served
            yield served
        except ValidationError as exc:
            yield Reply(400, {"error": str(exc), "field": exc.field})
        except NotFound as exc:
            yield Reply(404, {"error": str(exc), "field": exc.field})
        except Conflict as exc:
            yield Reply(409, {"error": str(exc), "field": exc.field})
        except QuotaExceeded as exc:
            yield Reply(429, {"error": str(exc), "field": exc.limit})

    def _route(self, method: str, path: str) -> Reply | None:
        """The reply for a path with no handler (None: it has one)."""
        if path == PREFIX[:-1]:
            path = PREFIX  # the resource list with or without its trailing slash
        if not path.startswith(PREFIX):
            return Reply(404, {"error": f"no such resource: {path}", "field": "path"})
        parts = [p for p in path[len(PREFIX):].split("/") if p]
        if not parts and method != "GET":
            return Reply(405, {"error": f"{method} not allowed on {PREFIX}", "field": "path"},
                         allow=allowed({"GET"}))
        if not parts:
            return Reply(200, {"resources": sorted({r for _, r in self._routes}
                                                   | self.served_elsewhere)})
        if (method, parts[0]) not in self._routes:
            methods = {m for m, r in self._routes if r == parts[0]}
            return Reply(405 if methods else 404,
                         {"error": f"{method} not allowed on {path:.200}" if methods
                          else f"no such resource: {path:.200}", "field": "path"},
                         allow=allowed(methods))
        return None

    # --- services -----------------------------------------------------------------------
    def _list_services(self, args: list[str], _: Any, now: float) -> Reply:
        cat = self.core.catalogue
        if args:
            return Reply(200, cat.service(args[0]).to_dict())
        return Reply(200, [s.to_dict() for _, s in sorted(cat.services.items())])

    def _create_service(self, args: list[str], data: Any, now: float, quota: bool = True
                        ) -> Reply:
        svc = service_from_dict(data)
        admit_service(self.core, svc, create=True, quota=quota)
        intents = self.core.put_service(svc, create=True, now=now)
        return Reply(201, _with_caveats(svc), intents)

    def _update_service(self, args: list[str], data: Any, now: float) -> Reply:
        if len(args) != 1:
            raise ValidationError("path", "use PUT /dyncast/v1/services/{name}")
        if isinstance(data, dict) and data.get("name", args[0]) != args[0]:
            raise ValidationError("name", "does not match the service in the path")
        svc = service_from_dict({**data, "name": args[0]} if isinstance(data, dict) else data)
        admit_service(self.core, svc, create=False)
        intents = self.core.put_service(svc, create=False, now=now)
        return Reply(200, _with_caveats(svc), intents)

    def _delete_service(self, args: list[str], _: Any, now: float) -> Reply:
        if len(args) != 1:
            raise ValidationError("path", "use DELETE /dyncast/v1/services/{name}")
        intents = self.core.delete_service(args[0])
        return Reply(200, {"deleted": args[0]}, intents)

    # --- instances and metrics ----------------------------------------------------------
    def _list_instances(self, args: list[str], _: Any, now: float) -> Steps:
        insts = self.core.catalogue.instances
        if args:
            inst = insts.get(parse_ipv4(args[0], "dbid"))  # (a 400 naming it, as DELETE's)
            if inst is None:
                raise NotFound("instance", args[0])
            return Reply(200, instance_view(self.core, inst, now))
        rows = yield from _in_steps([i for _, i in sorted(insts.items())], SLICE,
                                    lambda i: instance_view(self.core, i, now))
        return Reply(200, rows)

    def _register(self, args: list[str], data: Any, now: float, quota: bool = True) -> Reply:
        if args:
            return self._instance_action(args, data, now)
        if not isinstance(data, dict):
            raise ValidationError("body", "must be an object with dsid and dbid")
        reject_unknown(data, {"dsid", "dbid", "dma", "active"}, "")
        dsid = parse_ipv4(data.get("dsid"), "dsid")
        dbid = parse_ipv4(data.get("dbid"), "dbid")
        dma = data.get("dma", "")
        if dma != "":
            check_name(dma, "dma")
        active = data.get("active", True)
        if not isinstance(active, bool):
            raise ValidationError("active", "must be true or false")
        admit_instance(self.core, dsid, dbid, quota)
        existed = dbid in self.core.catalogue.instances
        inst, intents = self.core.register(dsid, dbid, dma, active, now)
        return Reply(200 if existed else 201, instance_view(self.core, inst, now), intents)

    def _instance_action(self, args: list[str], data: Any, now: float) -> Reply:
        """POST /instances/{dbid}/{verb}: drain {"deadline_s"?}, undrain, activate (send the
        reactivation trigger), deactivate {"deadline_s"?} (drain, then stop)."""
        if len(args) != 2 or args[1] not in INSTANCE_VERBS:
            raise ValidationError("path", "use POST /dyncast/v1/instances/{dbid}/VERB with VERB "
                                  f"one of {', '.join(INSTANCE_VERBS)}")
        dbid = parse_ipv4(args[0], "dbid")
        body = data if data is not None else {}
        if not isinstance(body, dict):
            raise ValidationError("body", "must be an object")
        verb = args[1]
        reject_unknown(body, {"deadline_s"} if verb in ("drain", "deactivate") else set(), "")
        deadline = body.get("deadline_s")
        if deadline is not None:
            deadline = check_number(deadline, "deadline_s", 0.0, 30 * 86400.0)
        if verb == "undrain":
            inst, intents = self.core.undrain(dbid, now)
        elif verb == "activate":
            inst, intents = self.core.activate(dbid, "operator activate", now)
        elif verb == "deactivate":
            inst, intents = self.core.deactivate(dbid, deadline, now)
        else:
            inst, intents = self.core.drain(dbid, deadline, now)
        return Reply(200, instance_view(self.core, inst, now), intents)

    def _withdraw(self, args: list[str], _: Any, now: float) -> Reply:
        if len(args) != 1:
            raise ValidationError("path", "use DELETE /dyncast/v1/instances/{dbid}")
        dbid = parse_ipv4(args[0], "dbid")
        return Reply(200, {"withdrawn": dbid}, self.core.withdraw(dbid, now))

    def _metrics(self, args: list[str], data: Any, now: float,
                 accepted: float | None = None) -> Steps:
        """One report, or a batch: every report is checked (a step per slice) before the first
        is recorded (a step per slice); the services stay dirty for the next `Core.flush`. All
        are recorded as accepted at the request's `now`, or at another member's `accepted`."""
        at = now if accepted is None else accepted
        batch = isinstance(data, dict) and "reports" in data
        if batch:
            reject_unknown(data, {"reports"}, "")
        reports = data["reports"] if batch else [data]
        most = self.core.config.limits.max_reports_per_batch
        if not isinstance(reports, list):
            raise ValidationError("reports", "must be a list")
        if len(reports) > most:
            raise QuotaExceeded("limits.max_reports_per_batch",
                                f"{len(reports)} reports in one batch, at most {most}")
        owners = owners_of((r.get("dbid") for r in reports if isinstance(r, dict)),
                           self.core.catalogue.instances)  # (as the gate admitted them)
        parsed: list[tuple[str, Metrics]] = []
        for part in slices(reports):
            if parsed:
                now = _later((yield []), now)
            for i, raw in enumerate(part, len(parsed)):
                where = f"reports[{i}]." if batch else ""
                parsed.append(metrics_from_dict(raw, where))  # all checked before any is
                check_report(self.core, parsed[-1][0], raw.get("dsid"), where)  # recorded
        recorded = 0
        for k, part in enumerate(slices(parsed)):
            if k:
                now = _later((yield []), now)
            recorded += self.core.intake.apply(part, now, at, accepted is not None, owners)
        instances = self.core.catalogue.instances
        commands = self.core.states.take(list(dict.fromkeys(
            dbid for dbid, _ in parsed if same(owners, instances, dbid))))
        return Reply(200, {"accepted": recorded, "commands": commands})

    # --- views --------------------------------------------------------------------------
    def _decisions(self, args: list[str], _: Any, now: float) -> Steps:
        """The decisions, after recomputing the dirty services (one a step; only the named
        service's, for /decisions/{service})."""
        if args and args[0] not in self.core.catalogue.services:
            raise NotFound("service", args[0])
        intents: list[Intent] = []
        for k, name in enumerate([args[0]] if args else self.core.intake.pending()):
            if k:
                now = _later((yield intents), now)
            intents = self.core.flush(now, name)
        held = self.core.engine.decisions
        if not args:
            self.views.keep(held)
        mine = [d for (_, name), d in sorted(held.items()) if not args or name == args[0]]
        relying: dict[int, list[int]] = {}  # a D-Router's ingress -> the forwarders on it
        for fwd, router in sorted(self.core.decisions.router_of.items()):
            relying.setdefault(router, []).append(fwd)
        rows: list[dict[str, Any]] = []
        texts: list[str] = []
        work = 0  # a row made (and encoded) again costs about as much as 100 reused
        for d in mine:
            if work >= 100 * DECISION_SLICE:
                work = 0
                yield intents
                intents = []
            row, text, fresh = self.views.row(d, relying.get(d.ingress, []))
            rows.append(dict(row))
            texts.append(text)
            work += 100 if fresh else 1
        return Reply(200, Rows(rows, self.views.body(args[0] if args else "", texts)), intents)

    def _bindings(self, args: list[str], _: Any, now: float) -> Reply:
        if args and args[0] not in self.core.catalogue.services:
            raise NotFound("service", args[0])
        rows = bindings_view(self.core)
        if args:
            rows = [r for r in rows if r["service"] == args[0]]
        return Reply(200, rows)

    def _topology(self, args: list[str], _: Any, now: float) -> Reply:
        return Reply(200, topology_view(self.core))

    def _stats(self, args: list[str], _: Any, now: float) -> Reply:
        return Reply(200, stats_view(self.core))


# the most path segments after the resource each route takes (others: 1)
MAX_ARGS = {("POST", "services"): 0, ("POST", "instances"): 2, ("POST", "metrics"): 0,
            ("GET", "topology"): 0, ("GET", "stats"): 0}


NOTHING = (b"", b"null", b"{}")  # what a call that takes no body may be sent all the same


def allowed(methods: set[str]) -> tuple[str, ...]:
    """A 405's `Allow`: `methods`, and HEAD wherever GET is (the server answers it)."""
    return tuple(sorted(methods | ({"HEAD"} if "GET" in methods else set())))


def _check_path(parts: list[str], most: int) -> None:
    """Raise unless the path has at most `most` segments after its resource, each a safe
    name (controller/validate.py; an IPv4 address is one)."""
    if len(parts) - 1 > most:
        raise ValidationError("path", f"at most {most} segment(s) after /{parts[0]}")
    for part in parts[1:]:
        check_name(part, "path")


def _in_steps(items: list[T], size: int,
              view: Callable[[T], Any]) -> Generator[list[Intent], float | None, list[Any]]:
    """`view` of every item, `size` items a step (a long list held the event loop)."""
    rows: list[Any] = []
    for part in slices(items, size):
        if rows:
            yield []
        rows += [view(x) for x in part]
    return rows


def _later(sent: float | None, now: float) -> float:
    """The time a step goes on at: what the caller sent, else the same."""
    return now if sent is None else sent


def _with_caveats(svc: Service) -> dict[str, Any]:
    """The service as stored, plus `warnings` when its settings have a known caveat."""
    out = svc.to_dict()
    warnings = caveats(svc)
    if warnings:
        out["warnings"] = warnings
    return out

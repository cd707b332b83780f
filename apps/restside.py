"""The REST side of the Dyncast app (a mixin of `apps.dyncast_app.DyncastApp`): a request served
in the API's bounded steps with the event loop running between two, refusals counted and logged,
the configuration reload (POST and SIGHUP), the Prometheus exposition, and JSON replies encoded a
slice at a time. Boundary: shell; it reads the app's state (`core`, `api`, `metrics`, `reloader`)
and sends intents through the app's `send`."""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import parse_qsl

from apps import logs
from apps.framework import hub
from controller.api import NOTHING, Reply, allowed
from controller.auth.verifier import Signed
from controller.cluster.claims import SERVICES
from controller.model import METRIC_KEYS
from controller.validate import NAME_RE
from controller.views import Rows

LOG = logging.getLogger("dyncast")
# the `reason` labels of dyncast_reports_rejected_total: a report's fields and the request's
# own; any other field at fault (an unknown key: the client's text) is "other", so that no
# client can add label values (and series) at will
REPORT_FAULTS = frozenset(METRIC_KEYS | {"report", "reports", "instance", "body", "path",
                                         "limits.max_reports_per_batch"})
ENCODE_SLICE = 5  # list items (a decision: all of a service's instances) encoded a step
RELOAD_PATH = "/dyncast/v1/config/reload"
CLUSTER_PATH = "/dyncast/v1/cluster"
SHELL_RESOURCES = frozenset({"cluster", "config/reload"})  # the two above: listed with the API's


class RestSide:
    """What the app does for the WSGI controllers (`apps/rest.py`); the app provides `send`."""

    core: Any
    api: Any
    metrics: Any
    reloader: Any
    rejects: Any
    config: Any
    datapaths: dict[int, Any]
    _reported: Any
    _hup: bool
    gc_pauses: Any
    stall_watch: Any  # apps.stallwatch.StallWatch, or None
    cluster_view: Any  # apps.cluster.ClusterSide
    share: Any  # apps.changefeed.SharedSide
    doomed: Any  # apps.changefeed.SharedSide
    claims: Any = None  # apps.dsidclaims.DsidClaims: a cluster member's (apps/cluster.py)


    def api_call(self, method: str, path: str, body: bytes, query: str = "",
                 signed: Signed | None = None) -> Reply:
        """Serve a REST request (called from a WSGI green thread) step by step, sending each
        step's intents and letting the event loop run before the next step (`signed`: the
        agent's signature the gate accepted it under). The API takes no query parameter, and
        no body on a GET, a DELETE or a reload (`{}` and `null` are none): one sent is a 400
        (a parameter ignored could be an option the caller thinks applied, e.g. a
        deadline)."""
        refused = _extras(method, path, body, query)
        if refused is not None:
            self._rejected(method, path, refused)
            return refused
        if path.rstrip("/") == RELOAD_PATH:
            return self._reload_call(method)
        if path.rstrip("/") == CLUSTER_PATH:  # the shell's: leases, roles (apps/cluster.py)
            return self.cluster_view() if method == "GET" else Reply(
                405, {"error": f"{method} not allowed on {CLUSTER_PATH}", "field": "path"},
                allow=allowed({"GET"}))
        claim = None if self.claims is None or not path.startswith(SERVICES) else \
            self.claims.before(method, path, body,
                               {n: s.dsid for n, s in self.core.catalogue.services.items()})
        if isinstance(claim, Reply):  # a cluster's D-SID claim refused (apps/dsidclaims.py)
            self._rejected(method, path, claim)
            return claim
        at = time.time()  # accepted then (its reports, for the cluster's other members)
        doomed = self.doomed(method, path)  # (the instances it withdraws with it, for them)
        reply = self._serve(method, path, body, at)
        if claim is not None:
            self.claims.after(claim, reply.status)
        if reply.status >= 400:
            self._rejected(method, path, reply)
        else:  # a cluster's other members apply it too
            self.share(method, path, body, reply, at, doomed, signed)
        return reply

    def _serve(self, method: str, path: str, body: bytes, start: float | None = None,
               accepted: float | None = None, remote: bool = False) -> Reply:
        """Serve an API request step by step from `start` (default now); also another member's
        change (`remote`), which that member `accepted` then (apps/changefeed.py)."""
        try:
            steps = self.api.steps(method, path, body,
                                   time.time() if start is None else start, accepted, remote)
            step = next(steps)
            while not isinstance(step, Reply):
                self.send(step)
                hub.sleep(0)
                step = steps.send(time.time())
        except Exception:
            self.core.counters["errors"] += 1
            LOG.exception("dyncast: exception serving %s %s", method, path)
            return Reply(500, {"error": "internal error (see the controller log)"})
        self.send(step.intents)
        if self.core.intake.dirty:
            self._reported.set()
        return step

    def _rejected(self, method: str, path: str, reply: Reply) -> None:
        """Count a refused request (a metrics report, by the field at fault) and log it
        (rate-limited: apps/logs.py)."""
        body = reply.body if isinstance(reply.body, dict) else {}
        fault = str(body.get("field", ""))
        if method == "POST" and path.rstrip("/").endswith("/metrics"):  # a report, not a 405
            self.metrics.shell.reports_rejected[report_fault(fault)] += 1
        self.rejects.reject(method, path, reply.status, fault, str(body.get("error", "")))

    def _reload_call(self, method: str) -> Reply:
        """POST /dyncast/v1/config/reload: re-read the configuration file."""
        if method != "POST":
            return Reply(405, {"error": f"{method} not allowed on {RELOAD_PATH}",
                               "field": "path"}, allow=allowed({"POST"}))
        out = self.reloader.reload(time.time(), "http")
        self.send(out.intents)
        return Reply(out.status, out.body)

    def _on_sighup(self, signum: int, frame: Any) -> None:
        """SIGHUP: only note it (a signal handler may interrupt the hub itself)."""
        self._hup = True

    def _swapped(self, config: Any) -> None:
        """A reload applied `config`: the shell's intervals and the log levels follow it."""
        self.config = config
        logs.configure(config.logging)
        self.rejects.per_minute = config.logging.rejected_per_minute
        if self.claims is not None:  # the file's services may be new: claimed at the next beat
            self.claims.started = False

    def metrics_text(self) -> bytes:
        """GET /metrics: the Prometheus exposition."""
        self.metrics.shell.switches_connected = len(self.datapaths)
        self.metrics.shell.gc_longest_s = self.gc_pauses.longest_s
        if self.stall_watch is not None:
            self.metrics.shell.stall_longest_s = self.stall_watch.longest_s
        return self.metrics.scrape()

    def encode(self, value: Any) -> bytes:
        """A reply body as JSON; a long list a slice at a time, letting the event loop run in
        between (5,000 instances' decisions take about 90 ms to encode). Compact: with an
        indent, json falls back to its pure-Python encoder, about 3x slower."""
        if isinstance(value, Rows):  # GET /decisions: encoded by the API, a row at a time
            return value.body
        if not isinstance(value, list) or len(value) <= ENCODE_SLICE:
            return json.dumps(value, sort_keys=True).encode() + b"\n"
        parts = []
        for i in range(0, len(value), ENCODE_SLICE):
            if i:
                hub.sleep(0)
            parts.append(json.dumps(value[i:i + ENCODE_SLICE], sort_keys=True)[1:-1])
        return ("[" + ", ".join(parts) + "]\n").encode()


def report_fault(fault: str) -> str:
    """The `reason` label a refused report counts under: its field at fault (a batch's
    `reports[i].` prefix dropped) when that is one of REPORT_FAULTS, else "other"."""
    if fault.startswith("reports["):
        fault = fault.partition(".")[2] or "report"
    return fault if fault in REPORT_FAULTS else "other"


def _extras(method: str, path: str, body: bytes, query: str) -> Reply | None:
    """The 400 for a query string, or a body where the call takes none (None: neither)."""
    if query:
        names = [name for name, _ in parse_qsl(query, keep_blank_values=True)] or [query]
        shown = ", ".join(n if NAME_RE.fullmatch(n) else repr(n)[:40] for n in names[:5])
        return Reply(400, {"error": f"this API takes no query parameters (got: {shown}); "
                                    "options go in the JSON body", "field": "query"})
    if (method == "POST" and path.rstrip("/") == RELOAD_PATH
            and b"".join(body.split()) not in NOTHING):
        return Reply(400, {"error": f"{method} {path} takes no body", "field": "body"})
    return None  # (a GET's or a DELETE's body: the API's, after its route is known)

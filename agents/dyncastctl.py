"""`dyncastctl`: the operator's command line over the controller's REST API (/dyncast/v1/).

Boundary: stdlib (and the project's signing helpers); speaks HTTP/JSON to one controller with
the operator's token (--token-file, $DYNCAST_TOKEN_FILE), over HTTPS with --ca-file
(agents/tls.py), and prints aligned tables, or with --json the API's own JSON; `keys` makes
agent keys and tokens (agents/keys.py), offline. Exit status: 0 done; 1 the API refused (its
error on stderr); 2 the controller could not be reached, or the command line is wrong (an
option, or a file it names: token, key, CA, --body, a `keys` table).

    dyncastctl services | instances | decisions [SERVICE] | bindings [SERVICE] | stats
    dyncastctl service add svc3 --dsid 10.0.100.3 --protocol udp --port 5000 --key source
    dyncastctl service remove svc3
    dyncastctl drain 10.0.0.31 [--deadline 60]        dyncastctl undrain 10.0.0.31
    dyncastctl activate 10.0.0.41       dyncastctl deactivate 10.0.0.41 [--deadline 60]
    dyncastctl history 10.0.0.41        (an instance's state transitions, oldest first)
    dyncastctl reload|topology|register|withdraw|instance|report|service show/set (ctlmore)
    dyncastctl keys agent dma-e2 --prefix 10.0.0.21/32 --table agents.toml --key-file e2.key
    dyncastctl keys token ops --role admin --table tokens.toml --token-file admin.token
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from agents import ctlmore, keys, tls
from agents.signing import ENV_KEY_FILE, ENV_TOKEN_FILE, CredentialError, Signer, bearer
from controller.auth.policy import classify

DEFAULT_CONTROLLER = "http://127.0.0.1:8080"
ENV_CONTROLLER = "DYNCASTCTL_CONTROLLER"
PREFIX = "/dyncast/v1/"
DEFAULT_PORT = 8000  # `service add` port for tcp/udp when none is given


class CtlError(Exception):
    """A failure reported as one line on stderr; `status` is the exit status it means."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Client:
    """The REST API of the controller at `base`."""

    def __init__(self, base: str, timeout: float, auth: dict[str, str] | None = None,
                 signer: Signer | None = None, context: ssl.SSLContext | None = None) -> None:
        self.base = base.rstrip("/")  # https:// verified with `context` (agents/tls.py)
        self.opener = urllib.request.build_opener(
            *([] if context is None else [tls.https_handler(context)]))
        self.timeout = timeout
        self.auth = auth or {}  # the Authorization header (agents/signing.py)
        self.signer = signer  # signs the agent calls (register, report, withdraw) if given
        self.agent = signer.agent if signer is not None else ""

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One request; the decoded JSON reply, or CtlError (1: API refused, 2: unreachable)."""
        data = None if body is None else json.dumps(body).encode()
        url = self.base + PREFIX + path
        creds = self.auth
        if self.signer is not None and classify(method, PREFIX + path) == "agent":
            creds = self.signer.headers(method, urlsplit(url).path, data or b"")
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              "Accept": "application/json", **creds})
        try:
            with self.opener.open(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise CtlError(1, f"{method} {PREFIX}{path}: {_api_error(exc)}") from None
        except urllib.error.URLError as exc:
            raise CtlError(2, self._unreachable(exc.reason)) from None
        except (OSError, http.client.HTTPException) as exc:
            raise CtlError(2, self._unreachable(exc)) from None
        try:
            return json.loads(raw)
        except ValueError:
            raise CtlError(2, f"the controller at {self.base} answered {PREFIX}{path} with "
                              "something that is not JSON") from None

    def _unreachable(self, reason: object) -> str:
        """The one line that says the controller could not be reached, and why."""
        text = reason.strerror if isinstance(reason, OSError) else None
        text = text or str(reason) or type(reason).__name__
        return f"cannot reach the controller at {self.base}: {text}"


def _api_error(exc: urllib.error.HTTPError) -> str:
    """`404 Not Found: unknown instance: ... (field: ...)` from an error reply."""
    try:
        body = json.loads(exc.read())
    except (OSError, ValueError, http.client.HTTPException):
        body = None
    text = f"{exc.code} {exc.reason}"
    if isinstance(body, dict) and body.get("error"):
        text += f": {body['error']}"
        if body.get("field"):
            text += f" (field: {body['field']})"
    return text


# --- formatting -----------------------------------------------------------------------------
def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart, headers first."""
    cells = [list(headers), *(list(r) for r in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in cells)


def _num(value: Any, fmt: str = "g") -> str:
    """A number for a table cell; `-` when absent."""
    return "-" if value is None else format(value, fmt)


def _service_row(s: dict[str, Any]) -> list[str]:
    """NAME D-SID PROTO/PORT KEY IDLE/HARD WEIGHTS."""
    proto = s.get("protocol") or "any"
    if s.get("port") is not None:
        proto += f"/{s['port']}"
    aff, w = s["affinity"], s["weights"]
    return [s["name"], s["dsid"], proto, aff["key"],
            f"{aff['idle_timeout']}/{aff['hard_timeout']}",
            f"{_num(w['network'])}/{_num(w['compute'])}"]


def _instance_row(i: dict[str, Any], now: float) -> list[str]:
    """D-BID SERVICE STATE LOCATION BINDINGS CPU SESSIONS QUEUE PLACED AGE (PLACED: new flows
    placed on it since its last report)."""
    loc = i.get("location")
    m = i.get("metrics") or {}
    at = i.get("metrics_at")
    return [i["dbid"], i["service"], i["state"],
            "-" if not loc else f"{loc['dpid']}:{loc['port']}", str(i.get("bindings", 0)),
            _num(m.get("cpu"), ".2f"),
            f"{m['sessions']}/{m['capacity']}" if m else "-", _num(m.get("queue")),
            str(i.get("placed_since_report", 0)),
            "-" if at is None else f"{max(0.0, now - at):.1f}s"]


def _decision_rows(decisions: list[dict[str, Any]]) -> Iterable[list[str]]:
    """One row per candidate of each (ingress, service) decision."""
    for d in decisions:
        for c in d["candidates"]:
            yield [str(d["ingress"]), d["service"], c["dbid"], c["state"],
                   _num(c["network_ms"], ".2f"), _num(c["compute_ms"], ".2f"),
                   _num(c["cost"], ".2f"), f"{100.0 * c['share']:.1f}%", c["reason"] or "-"]


def _binding_row(b: dict[str, Any]) -> list[str]:
    """ID SERVICE CLIENT D-SID INSTANCE INGRESS."""
    f = b["flow"]
    client = f["src"] + ("" if f.get("sport") is None else f":{f['sport']}")
    dsid = f["dsid"] + ("" if f.get("dport") is None else f":{f['dport']}")
    return [str(b["id"]), b["service"], client, dsid, b["dbid"], str(b["ingress"])]


# --- commands: each returns (the API's JSON, the human text) ------------------------------------
Result = tuple[Any, str]


def cmd_services(api: Client, args: argparse.Namespace) -> Result:
    """List the services."""
    body = api.call("GET", "services")
    return body, table(["NAME", "D-SID", "PROTO/PORT", "KEY", "IDLE/HARD", "WEIGHTS N/C"],
                       map(_service_row, body))


def cmd_service_add(api: Client, args: argparse.Namespace) -> Result:
    """Create a service from the options."""
    svc: dict[str, Any] = {"name": args.name, "dsid": args.dsid}
    port = args.port
    if args.protocol != "any":
        svc["protocol"] = args.protocol
        if port is None and args.protocol in ("tcp", "udp"):
            port = DEFAULT_PORT
    if port:  # 0 = every port
        svc["port"] = port
    svc["affinity"] = {"key": args.key, "idle_timeout": args.idle_timeout,
                       "hard_timeout": args.hard_timeout}
    svc["weights"] = {"network": args.weight_network, "compute": args.weight_compute}
    if args.base_delay_ms is not None:
        svc["base_delay_ms"] = args.base_delay_ms
    if args.budget_ms is not None:
        svc["delay_budget_ms"] = args.budget_ms
    body = api.call("POST", "services", svc)
    row = _service_row(body)
    return body, f"created service {row[0]}: D-SID {row[1]} {row[2]}, key {row[3]}"


def cmd_service_remove(api: Client, args: argparse.Namespace) -> Result:
    """Delete a service with its instances, bindings and flow entries."""
    body = api.call("DELETE", "services/" + quote(args.name, safe=""))
    return body, f"removed service {body.get('deleted', args.name)} (with its instances and " \
                 "bindings)"


def cmd_instances(api: Client, args: argparse.Namespace) -> Result:
    """List the instances with state, location and their latest metrics."""
    body = api.call("GET", "instances")
    now = time.time()  # the controller stamps metrics with its wall clock too
    return body, table(["D-BID", "SERVICE", "STATE", "LOCATION", "BINDINGS", "CPU",
                        "SESSIONS", "QUEUE", "PLACED", "AGE"],
                       (_instance_row(i, now) for i in body))


def cmd_decisions(api: Client, args: argparse.Namespace) -> Result:
    """Per ingress and service, each candidate's costs and share of new flows."""
    body = api.call("GET", "decisions" + _one(args.service))
    return body, table(["INGRESS", "SERVICE", "INSTANCE", "STATE", "NETWORK_MS",
                        "COMPUTE_MS", "COST", "SHARE", "REASON"], _decision_rows(body))


def cmd_bindings(api: Client, args: argparse.Namespace) -> Result:
    """The affinity table."""
    body = api.call("GET", "bindings" + _one(args.service))
    return body, table(["ID", "SERVICE", "CLIENT", "D-SID", "INSTANCE", "INGRESS"],
                       map(_binding_row, body))


def cmd_drain(api: Client, args: argparse.Namespace) -> Result:
    """Stop new flows to an instance; its bound flows stay until they end (or the deadline)."""
    req = {} if args.deadline is None else {"deadline_s": args.deadline}
    body = api.call("POST", f"instances/{quote(args.dbid, safe='')}/drain", req)
    until = "they end" if args.deadline is None else f"they end or {args.deadline:g} s pass"
    return body, (f"drained {body['dbid']} ({body['service']}): state {body['state']}, "
                  f"{body.get('bindings', 0)} bound flow(s) stay until {until}")


def cmd_undrain(api: Client, args: argparse.Namespace) -> Result:
    """Let a drained instance take new flows again."""
    body = api.call("POST", f"instances/{quote(args.dbid, safe='')}/undrain", {})
    return body, f"undrained {body['dbid']} ({body['service']}): state {body['state']}"


def cmd_activate(api: Client, args: argparse.Namespace) -> Result:
    """Send an inactive instance's D-MA the reactivation trigger."""
    body = api.call("POST", f"instances/{quote(args.dbid, safe='')}/activate", {})
    return body, (f"activating {body['dbid']} ({body['service']}): its D-MA ({body['dma']}) "
                  "gets the trigger with its next report")


def cmd_deactivate(api: Client, args: argparse.Namespace) -> Result:
    """Drain an instance, then have its D-MA stop it once no flow is bound to it."""
    req = {} if args.deadline is None else {"deadline_s": args.deadline}
    body = api.call("POST", f"instances/{quote(args.dbid, safe='')}/deactivate", req)
    return body, (f"deactivating {body['dbid']} ({body['service']}): state {body['state']}, "
                  f"stopped once its {body.get('bindings', 0)} bound flow(s) have ended")


def cmd_history(api: Client, args: argparse.Namespace) -> Result:
    """An instance's state transitions with time, event and reason (oldest first)."""
    body = api.call("GET", f"instances/{quote(args.dbid, safe='')}")
    rows = [[time.strftime("%H:%M:%S", time.localtime(h["at"])) + f".{int(h['at'] % 1 * 10)}",
             h["from"], h["to"], h["event"], h["reason"]] for h in body.get("history", [])]
    return body, table(["AT", "FROM", "TO", "EVENT", "REASON"], rows)


def cmd_stats(api: Client, args: argparse.Namespace) -> Result:
    """The controller's counters, one `name value` line each."""
    body = api.call("GET", "stats")
    return body, "\n".join(f"{k} {body[k]}" for k in sorted(body))


def _one(service: str | None) -> str:
    """The `/{service}` path suffix, or nothing."""
    return "" if service is None else "/" + quote(service, safe="")


# --- command line ---------------------------------------------------------------------------
MAX_TIMEOUT_S = 86400.0  # a socket timeout must fit the C clock: `inf` was a traceback


def _positive(text: str) -> float:
    """argparse type: a number of seconds > 0, at most MAX_TIMEOUT_S."""
    value = float(text)
    if not 0 < value <= MAX_TIMEOUT_S:
        raise argparse.ArgumentTypeError(f"must be > 0 and at most {MAX_TIMEOUT_S:g}, got {text}")
    return value


def _add_globals(p: argparse.ArgumentParser, top: bool) -> None:
    """--controller, --json, --timeout; accepted before and after the command (the
    subcommands' copies default to SUPPRESS so they do not undo the top-level ones)."""
    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    p.add_argument("--controller", metavar="URL",
                   default=default(os.environ.get(ENV_CONTROLLER) or DEFAULT_CONTROLLER),
                   help=f"controller base URL (default ${ENV_CONTROLLER} or "
                        f"{DEFAULT_CONTROLLER})")
    p.add_argument("--json", action="store_true", default=default(False),
                   help="print the API's JSON instead of a table")
    p.add_argument("--timeout", type=_positive, metavar="S", default=default(5.0),
                   help="seconds to wait for the controller (default 5)")
    p.add_argument("--token-file", metavar="FILE", default=default(None),
                   help=f"operator token to send (default ${ENV_TOKEN_FILE}; "
                        "docs/security.md)")
    p.add_argument("--key-file", metavar="FILE",
                   default=default(os.environ.get(ENV_KEY_FILE) or None),
                   help="an agent key: register, withdraw and report are signed with it "
                        f"(default ${ENV_KEY_FILE})")
    tls.add_arguments(p, suppress=not top)


def _command(sub: Any, name: str, run: Callable[[Client, argparse.Namespace], Result],
             ) -> argparse.ArgumentParser:
    """A subcommand parser that runs `run`, with the global options."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=(run.__doc__ or "").splitlines()[0],
                                                description=run.__doc__)
    _add_globals(p, top=False)
    p.set_defaults(run=run)
    return p


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    ap = argparse.ArgumentParser(prog="dyncastctl", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_globals(ap, top=True)
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _command(sub, "services", cmd_services)
    svc = sub.add_parser("service", help="add, remove, show or set a service").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    add = _command(svc, "add", cmd_service_add)
    add.add_argument("name")
    add.add_argument("--dsid", required=True, help="the anycast IPv4 address")
    add.add_argument("--protocol", choices=["tcp", "udp", "icmp", "any"], default="tcp")
    add.add_argument("--port", type=int, default=None,
                     help=f"default {DEFAULT_PORT} for tcp/udp; 0 = every port")
    add.add_argument("--key", default="5-tuple", help="5-tuple, 3-tuple or source")
    add.add_argument("--idle-timeout", type=int, default=30, metavar="S")
    add.add_argument("--hard-timeout", type=int, default=0, metavar="S")
    add.add_argument("--weight-network", type=float, default=1.0, metavar="W")
    add.add_argument("--weight-compute", type=float, default=1.0, metavar="W")
    add.add_argument("--base-delay-ms", type=float, default=None, metavar="MS",
                     help="compute delay of an idle instance (controller default if omitted)")
    add.add_argument("--budget-ms", type=float, default=None, metavar="MS",
                     help="delay budget: avoid instances predicted to miss it")
    _command(svc, "remove", cmd_service_remove).add_argument("name")
    _command(sub, "instances", cmd_instances)
    _command(sub, "decisions", cmd_decisions).add_argument("service", nargs="?")
    _command(sub, "bindings", cmd_bindings).add_argument("service", nargs="?")
    drain = _command(sub, "drain", cmd_drain)
    drain.add_argument("dbid")
    drain.add_argument("--deadline", type=float, default=None, metavar="S",
                       help="after S seconds, move the flows still bound to it")
    _command(sub, "undrain", cmd_undrain).add_argument("dbid")
    _command(sub, "activate", cmd_activate).add_argument("dbid")
    deactivate = _command(sub, "deactivate", cmd_deactivate)
    deactivate.add_argument("dbid")
    deactivate.add_argument("--deadline", type=float, default=None, metavar="S",
                            help="after S seconds, move the flows still bound to it")
    _command(sub, "history", cmd_history).add_argument("dbid")
    _command(sub, "stats", cmd_stats)
    ctlmore.add(sub, svc, _command)
    keys.add_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, make the request(s), print; return the exit status."""
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        if args.command == "keys":
            print(keys.run(args), flush=True)
            return 0
        auth = bearer(args.token_file)
        signer = Signer.from_file(args.key_file) if args.key_file else None
        context = tls.context_from_args(args) if args.controller.startswith("https:") else None
    except (keys.KeysError, CredentialError, tls.TlsError) as exc:  # a file it names: 2, as
        print(f"dyncastctl: {exc}", file=sys.stderr)  # documented (1 means the API refused)
        return 2
    try:
        url = urlsplit(args.controller)
    except ValueError as exc:  # e.g. `http://[::1` (an unclosed IPv6 address)
        ap.error(f"--controller: {exc}: {args.controller!r}")
    if url.scheme not in ("http", "https") or not url.netloc:
        ap.error(f"--controller must be an http:// or https:// URL, got {args.controller!r}")
    try:
        body, text = args.run(Client(args.controller, args.timeout, auth, signer, context), args)
    except CtlError as exc:
        print(f"dyncastctl: {exc}", file=sys.stderr)
        return exc.status
    except ctlmore.BodyError as exc:
        print(f"dyncastctl: {exc}", file=sys.stderr)
        return 2
    try:
        print(json.dumps(body, indent=2, sort_keys=True) if args.json else text, flush=True)
    except BrokenPipeError:  # e.g. `dyncastctl decisions | head`: quietly stop writing
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The rest of `dyncastctl`: commands completing its cover of /dyncast/v1 (docs/openapi.yaml).

Boundary: stdlib only, like agents/dyncastctl.py, which adds these to its parser (`add`).

    dyncastctl service show svc1          dyncastctl service set svc1 --body svc1.json
    dyncastctl register 10.0.100.1 10.0.0.21 [--dma NAME] [--inactive]
    dyncastctl withdraw 10.0.0.21         dyncastctl instance 10.0.0.21
    dyncastctl report --body report.json  (one D-MA report or {"reports": [...]}; - = stdin)
    dyncastctl topology                   dyncastctl reload   (re-read the config file)
    dyncastctl cluster                    (members, leases, the master of each switch)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

Result = tuple[Any, str]


class Api(Protocol):
    """What the commands need of dyncastctl's Client."""

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One request; the decoded JSON reply."""


class BodyError(Exception):
    """A --body that cannot be read or is not JSON."""


def _body(path: str) -> Any:
    """The JSON in file `path` (- for stdin)."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        return json.loads(text)
    except (OSError, ValueError) as exc:
        raise BodyError(f"--body {path}: {exc}") from None


def cmd_service_show(api: Api, args: argparse.Namespace) -> Result:
    """Show one service as the API stores it."""
    body = api.call("GET", "services/" + quote(args.name, safe=""))
    return body, json.dumps(body, indent=2, sort_keys=True)


def cmd_service_set(api: Api, args: argparse.Namespace) -> Result:
    """Replace a service with the JSON table in --body (PUT)."""
    body = api.call("PUT", "services/" + quote(args.name, safe=""), _body(args.body))
    return body, f"replaced service {body['name']}"


def cmd_register(api: Api, args: argparse.Namespace) -> Result:
    """Register (or refresh) an instance of the service at a D-SID."""
    req: dict[str, Any] = {"dsid": args.dsid, "dbid": args.dbid, "active": not args.inactive}
    dma = args.dma or getattr(api, "agent", "")  # signed (--key-file): the key's agent
    if dma:
        req["dma"] = dma
    body = api.call("POST", "instances", req)
    return body, f"registered {body['dbid']} ({body['service']}): state {body['state']}"


def cmd_withdraw(api: Api, args: argparse.Namespace) -> Result:
    """Withdraw an instance (its bound flows move to a live one)."""
    body = api.call("DELETE", "instances/" + quote(args.dbid, safe=""))
    return body, f"withdrew {body.get('withdrawn', args.dbid)}"


def cmd_instance(api: Api, args: argparse.Namespace) -> Result:
    """Show one instance in full (state, metrics, location, bindings, commands)."""
    body = api.call("GET", "instances/" + quote(args.dbid, safe=""))
    return body, json.dumps(body, indent=2, sort_keys=True)


def cmd_report(api: Api, args: argparse.Namespace) -> Result:
    """Send a D-MA metrics report (or a batch) from --body."""
    body = api.call("POST", "metrics", _body(args.body))
    return body, f"accepted {body['accepted']} report(s); {len(body['commands'])} command(s)"


def cmd_topology(api: Api, args: argparse.Namespace) -> Result:
    """Switches, links (rate, utilisation, delay, cost) and hosts."""
    body = api.call("GET", "topology")
    links = [f"{lk.get('src')} -> {lk.get('dst')}  cost {lk.get('cost_ms')} ms"
             for lk in body.get("links", [])]
    return body, "\n".join([f"{len(body.get('switches', []))} switches, "
                            f"{len(body.get('hosts', []))} hosts", *links])


def cmd_cluster(api: Api, args: argparse.Namespace) -> Result:
    """The cluster's members and leases, and which member masters which switch."""
    body = api.call("GET", "cluster")
    if not body.get("enabled"):
        return body, "no cluster: one controller ([cluster] is not enabled)"
    lease = "held" if body["lease_held"] else "NOT held"
    members = [f"{m['member_id']:<16} {'live' if m['live'] else 'dead':<5} epoch {m['epoch']:<8} "
               f"{m['address']}" for m in body["members"]]
    roles = body["roles"]
    switches = [f"{d}  master {m:<16} our role {roles.get(d, 'none')}"
                for d, m in sorted(body["masters"].items())]
    return body, "\n".join([f"this member: {body['member_id']}, lease {lease} "
                            f"({body['lease_left_s']} s left)", *members, *switches])


def cmd_reload(api: Api, args: argparse.Namespace) -> Result:
    """Have the controller re-read its configuration file (as SIGHUP does)."""
    body = api.call("POST", "config/reload")
    lines = [f"reloaded {body['reloaded']}" + ("" if body["changed"] else " (no change)")]
    for key in ("services_added", "services_changed", "services_removed", "applied"):
        if body[key]:
            lines.append(f"{key.replace('_', ' ')}: {', '.join(body[key])}")
    if body["restart_required"]:
        lines.append("NOT applied, need a restart: " + ", ".join(body["restart_required"]))
    return body, "\n".join(lines)


Command = Callable[[Any, str, Callable[[Any, argparse.Namespace], Result]],
                   argparse.ArgumentParser]


def add(sub: Any, service_sub: Any, command: Command) -> None:
    """Add these commands to dyncastctl's parser (`command` makes one subcommand)."""
    command(service_sub, "show", cmd_service_show).add_argument("name")
    put = command(service_sub, "set", cmd_service_set)
    put.add_argument("name")
    put.add_argument("--body", required=True, metavar="FILE", help="JSON table (- = stdin)")
    reg = command(sub, "register", cmd_register)
    reg.add_argument("dsid")
    reg.add_argument("dbid")
    reg.add_argument("--dma", default="", help="the D-MA's name")
    reg.add_argument("--inactive", action="store_true", help="register it inactive")
    command(sub, "withdraw", cmd_withdraw).add_argument("dbid")
    command(sub, "instance", cmd_instance).add_argument("dbid")
    command(sub, "report", cmd_report).add_argument("--body", required=True, metavar="FILE",
                                                    help="JSON report or batch (- = stdin)")
    command(sub, "topology", cmd_topology)
    command(sub, "reload", cmd_reload)
    command(sub, "cluster", cmd_cluster)

"""docs/openapi.yaml against what the real server answers, as an operator's client sees it: the
app behind the hardened server over HTTP (tests/test_schema_fuzz.py's `server`, each framework).
Every route of the framework's table is described (in `paths`, or by name in the document's
description when it is not JSON); every reply of a request made for each operation - success,
and each refusal: no credential, a read token, a body too large, a body not JSON, bad input,
an unknown name, a conflict - is a status the operation lists, with a body matching the
schema the document gives that status (openapi-core)."""

from __future__ import annotations

import json
import re
import socket
from typing import Any

import pytest
import requests
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from apps.rest import APP_KEY, RestController
from apps.web import WebController
from tests.test_fastpath import framework_context
from tests.test_openapi import HOST, SPEC, document
from tests.test_schema_fuzz import Server, server  # the module's fixture

__all__ = ["server"]

ROOT = ("/healthz", "/readyz")  # at the port's root; the rest under /dyncast/v1
NEW = {"name": "qa1", "dsid": "10.0.100.11", "protocol": "udp", "port": 5000}
DBID = "10.0.0.41"
REG = {"dsid": NEW["dsid"], "dbid": DBID, "dma": "dma-fuzz"}
LOAD = {"dbid": DBID, "cpu": 0.1, "sessions": 1, "queue": 0, "capacity": 10}
AGENT_OPS = {"registerInstance", "reportMetrics", "withdrawInstance"}
# (operationId, path arguments, body, who: admin/agent, expected status), in this order
CASES: list[tuple[str, dict[str, str], Any, str, int]] = [
    ("listResources", {}, None, "admin", 200),
    ("listServices", {}, None, "admin", 200),
    ("createService", {}, NEW, "admin", 201),
    ("createService", {}, NEW, "admin", 409),
    ("createService", {}, {"name": "qa2"}, "admin", 400),
    ("getService", {"name": "qa1"}, None, "admin", 200),
    ("getService", {"name": "nope"}, None, "admin", 404),
    ("getService", {"name": "bad%20name"}, None, "admin", 400),
    ("replaceService", {"name": "qa1"}, {**NEW, "port": 5001}, "admin", 200),
    ("replaceService", {"name": "nope"}, {**NEW, "name": "nope"}, "admin", 404),
    ("replaceService", {"name": "qa1"}, {**NEW, "name": "qa3"}, "admin", 400),
    ("replaceService", {"name": "qa1"}, {**NEW, "dsid": "10.0.100.2"}, "admin", 409),
    ("listInstances", {}, None, "admin", 200),
    ("registerInstance", {}, REG, "agent", 201),
    ("registerInstance", {}, REG, "agent", 200),
    ("registerInstance", {}, {**REG, "dsid": "10.0.100.99"}, "agent", 404),
    ("registerInstance", {}, {"dsid": NEW["dsid"], "dma": "dma-fuzz"}, "agent", 400),
    ("registerInstance", {}, {**REG, "dsid": "10.0.100.2"}, "agent", 409),
    ("registerInstance", {}, {**REG, "dma": "someone-else"}, "agent", 403),
    ("getInstance", {"dbid": DBID}, None, "admin", 200),
    ("getInstance", {"dbid": "10.0.0.99"}, None, "admin", 404),
    ("reportMetrics", {}, LOAD, "agent", 200),
    ("reportMetrics", {}, {**LOAD, "dbid": "10.0.0.99"}, "agent", 404),
    ("reportMetrics", {}, {"dbid": DBID}, "agent", 400),
    ("drainInstance", {"dbid": DBID}, {"deadline_s": 60}, "admin", 200),
    ("drainInstance", {"dbid": DBID}, {"deadline_s": -1}, "admin", 400),
    ("drainInstance", {"dbid": "10.0.0.99"}, None, "admin", 404),
    ("activateInstance", {"dbid": DBID}, None, "admin", 409),
    ("activateInstance", {"dbid": DBID}, {"x": 1}, "admin", 400),
    ("activateInstance", {"dbid": "10.0.0.99"}, None, "admin", 404),
    ("undrainInstance", {"dbid": DBID}, None, "admin", 200),
    ("undrainInstance", {"dbid": DBID}, None, "admin", 409),
    ("undrainInstance", {"dbid": DBID}, {"x": 1}, "admin", 400),
    ("undrainInstance", {"dbid": "10.0.0.99"}, None, "admin", 404),
    ("deactivateInstance", {"dbid": DBID}, None, "admin", 200),
    ("deactivateInstance", {"dbid": DBID}, {"x": 1}, "admin", 400),
    ("deactivateInstance", {"dbid": "10.0.0.99"}, None, "admin", 404),
    ("listDecisions", {}, None, "admin", 200),
    ("serviceDecisions", {"service": "qa1"}, None, "admin", 200),
    ("serviceDecisions", {"service": "nope"}, None, "admin", 404),
    ("serviceDecisions", {"service": "bad%20name"}, None, "admin", 400),
    ("listBindings", {}, None, "admin", 200),
    ("serviceBindings", {"service": "qa1"}, None, "admin", 200),
    ("serviceBindings", {"service": "nope"}, None, "admin", 404),
    ("serviceBindings", {"service": "bad%20name"}, None, "admin", 400),
    ("getTopology", {}, None, "admin", 200),
    ("getStats", {}, None, "admin", 200),
    ("getCluster", {}, None, "admin", 200),
    ("reloadConfig", {}, None, "admin", 200),
    ("withdrawInstance", {"dbid": DBID}, None, "agent", 200),
    ("withdrawInstance", {"dbid": DBID}, None, "agent", 404),
    ("withdrawInstance", {"dbid": "x"}, None, "agent", 400),
    ("deleteService", {"name": "qa1"}, None, "admin", 200),
    ("deleteService", {"name": "qa1"}, None, "admin", 404),
    ("deleteService", {"name": "bad%20name"}, None, "admin", 400),
    ("healthz", {}, None, "none", 200),
    ("readyz", {}, None, "none", 200),
]
# listed in the document, not produced here: 403 on a read (no GET is refused by role; an
# agent's signature on a GET is no bearer token: 401), 400 on a read of an instance (any
# dbid not known is a 404), 409 on a drain (from any state), the quotas' 429 (their limits
# are large here: tests/test_auth.py, test_reload.py make them), 400 and 409 on a
# reload (a bad or conflicting file: test_openapi.py), 503 from /readyz
# (test_cluster_shell.py), 403 on an instance of another agent (one agent here: test_auth.py),
# activate's 200 (an instance the D-MA reported inactive) and deactivate's 409, a cluster
# member's 503 on a D-SID claim the store did not answer (test_cluster_claims.py)
NOT_MADE = {("reportMetrics", 403), ("withdrawInstance", 403), ("activateInstance", 200),
            ("deactivateInstance", 409), ("getInstance", 400), ("drainInstance", 409),
            ("createService", 429), ("registerInstance", 429), ("reportMetrics", 429),
            ("reloadConfig", 400), ("reloadConfig", 409), ("reloadConfig", 429),
            ("readyz", 503), ("createService", 503), ("replaceService", 503)}


def _operations() -> dict[str, tuple[str, str, set[int]]]:
    """operationId -> (method, path, the statuses it lists)."""
    out = {}
    for path, ops in document()["paths"].items():
        for method, op in ops.items():
            if method not in ("parameters", "servers"):
                out[op["operationId"]] = (method.upper(), path, {int(s) for s in op["responses"]})
    return out


def _send(srv: Server, spec: OpenAPI, op: str, args: dict[str, str], body: Any, who: str,
          raw: bytes | None = None, ctype: str = "application/json") -> int:
    """Make the request for `op` over HTTP; validate the reply against the document (its
    status must be one `op` lists, its body the schema listed for it); return the status."""
    method, template = _operations()[op][:2]
    path = template.format(**args)
    full = path if path in ROOT else "/dyncast/v1" + path.rstrip("/") + ("/" if path == "/"
                                                                          else "")
    data = raw if raw is not None else b"" if body is None else json.dumps(body).encode()
    headers = {"Content-Type": ctype} if data else {}
    if who in ("admin", "read"):
        headers["Authorization"] = f"Bearer {srv.admin if who == 'admin' else srv.reader}"
    elif who == "agent":
        headers.update(srv.signer.headers(method, full, data))
    reply = requests.request(method, srv.url + full, data=data, headers=headers, timeout=10)
    request = MockRequest(HOST, method.lower(), full)
    try:
        spec.validate_response(request, MockResponse(
            reply.content, status_code=reply.status_code,
            content_type=reply.headers.get("Content-Type", "")))
    except Exception as exc:  # openapi-core's errors: the one that failed, with its cause
        raise AssertionError(f"{method} {full} ({who}): {reply.status_code} {reply.text[:300]}"
                             f" does not conform: {exc!r} {exc.__cause__!r}") from None
    return reply.status_code


def test_every_route_the_server_serves_is_described() -> None:
    """The framework's route table (the app's REST and web controllers): a route outside
    /dyncast/v1 (whose routes test_openapi.py checks against the API) is a path of the
    document with its methods, or named in the document's description (the Prometheus
    exposition, the web view); that HEAD is answered wherever GET is is said too."""
    context = framework_context()
    context.register(RestController, {APP_KEY: object()})
    context.register(WebController, {})
    doc = document()
    text = doc["info"]["description"]
    routes = [(r.routepath, set((r.conditions or {}).get("method") or ()))
              for r in context.mapper.matchlist]
    assert len(routes) >= 8, routes
    for path, methods in routes:
        if path.startswith("/dyncast/v1"):
            continue
        if "servers" in doc["paths"].get(path, {}):  # described at the port's root
            assert methods - {"HEAD"} == {m.upper() for m in doc["paths"][path]
                                           if m not in ("servers", "parameters")}, path
        else:
            named = path.split("{")[0].rstrip("/") + ("/" if "{" in path else "")
            assert f"GET {named}" in text, f"{path} is neither a path nor named: {named}"
    assert "`HEAD` is answered wherever `GET` is" in text


def test_every_reply_of_every_operation_is_as_documented(server: Server) -> None:
    """Each operation made to succeed and to fail as it can (CASES), and for every one a
    request without a credential, with a read token, with a body over the limit and with a
    body that is not JSON: each reply a status the operation lists and its body that status'
    schema; every status the document lists is produced but the few in NOT_MADE."""
    spec = OpenAPI.from_file_path(str(SPEC))
    operations = _operations()
    seen: set[tuple[str, int]] = set()
    for op, args, body, who, status in CASES:
        got = _send(server, spec, op, args, body, who)
        assert got == status, (op, args, body, got)
        seen.add((op, got))
    sample = {"name": "svc1", "service": "svc1", "dbid": "10.0.0.99"}
    for op, (method, _, _) in operations.items():
        open_op = op in ("healthz", "readyz")
        bare = _send(server, spec, op, sample, None, "none")
        assert bare == (200 if open_op else 401), (op, bare)
        read = _send(server, spec, op, sample, None, "read")
        if not open_op and method != "GET":
            # (a withdrawal without a signature is an operator's: a read token gets 403)
            signed_only = AGENT_OPS - {"withdrawInstance"}
            assert read == (401 if op in signed_only else 403), (op, read)
        big = _send(server, spec, op, sample, None, "admin", raw=b"x" * (1 << 21))
        assert big == 413, (op, big)
        text = _send(server, spec, op, sample, None, "admin", raw=b"{}", ctype="text/plain")
        assert text == 415, (op, text)
        seen |= {(op, bare), (op, read), (op, big), (op, text)}
    listed = {(op, s) for op, (_, _, statuses) in operations.items() for s in statuses}
    unseen = listed - seen - NOT_MADE - {(op, 403) for op, (m, _, _) in operations.items()
                                         if m == "GET"}
    assert sorted(unseen) == [], sorted(unseen)
    assert seen - listed == set()


@pytest.mark.parametrize("status", [413, 415])
def test_every_operation_lists_the_refusals_any_request_can_get(status: int) -> None:
    """A body over the limit (413) or not JSON (415) is refused on any operation, a GET's
    too: each lists it (the document described them only for operations that take a body)."""
    missing = [op for op, (_, _, statuses) in _operations().items() if status not in statuses]
    assert missing == []


@pytest.mark.parametrize(("head", "status"), [
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n", 400),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 70000 + b"\r\n\r\n", 431),
    (b"GET /healthz HTTP/2.0\r\n\r\n", 505),
    (b"GET /dyncast/v1/%ff HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\n\r\n", 400)])
def test_the_servers_own_refusals_are_described(server: Server, head: bytes,
                                                status: int) -> None:
    """What the server refuses before any route (a framing or size problem) is a status the
    document's description lists as the server's, with the API's error body."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    got = int(data.split(b" ", 2)[1])
    body = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert got == status and set(body) == {"error", "field"}, data[:300]
    text = " ".join(document()["info"]["description"].split())
    server_part = text.split("the server itself may refuse", 1)[1]
    assert re.search(rf"\b{status} \(", server_part), status

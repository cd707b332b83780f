"""Requests generated from docs/openapi.yaml (schemathesis), sent over HTTP to the real server:
apps/restserver.py serving the framework's route table with the app's controllers behind the
security gate, the app built as the manager builds it (tests/test_app_smoke.py), in a process
of its own, under each framework. Every reply must be documented: no 5xx, a status code the
operation lists, a JSON body matching its schema, a 4xx body naming the field at fault, and a
refused request that could change something changes nothing (services, instances, metrics).
With the test operators' and D-MA's credentials (made as tests/test_security_gate.py makes
them) for the fuzzing; with a `read` token only GETs pass; without any credential every
request gets 401; a body as text/plain gets 415; a method the document does not list, 405.
What it found is pinned down in tests/test_schema_found.py.

Bounded: a fixed seed (derandomized), `EXAMPLES` valid and `EXAMPLES` invalid requests an
operation, `BARE_EXAMPLES` for each other pass (about 30-45 s for both frameworks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from agents import keys
from agents.signing import Signer, read_token
from tests.fakes import FRAMEWORKS
from tests.test_app_smoke import CONFIG, DSID

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "docs" / "openapi.yaml"
EXAMPLES = 30  # per operation and generation mode
BARE_EXAMPLES = 4
AGENT_OPERATIONS = {"registerInstance", "reportMetrics", "withdrawInstance"}  # signed by a D-MA
OPEN_OPERATIONS = {"healthz", "readyz"}  # need nothing
SERVER = """
import sys
from apps import compat
compat.monkey_patch(thread=True)
from apps import framework
from apps.restserver import RestServer, ServerSettings
from apps.security import Gate
from apps.configfile import load_config
from controller.channel import Listen

if framework.FRAMEWORK == "ryu":
    context = framework.WSGIApplication()
else:  # os-ken's context starts its own server when created: build it without
    from routes import Mapper
    context = framework.WSGIApplication.__new__(framework.WSGIApplication)
    context.config, context.mapper, context.registory = {}, Mapper(), {}
from apps.dyncast_app import DyncastApp
app = DyncastApp(wsgi=context)  # registers its controllers and installs the guard
config = load_config(None)
server = RestServer(Gate(context), Listen("127.0.0.1", 0), ServerSettings.from_config(config))
print(server.port, flush=True)
server.serve_forever()
"""
SECURITY = """
[security]
agents_file = "agents.toml"
tokens_file = "tokens.toml"
"""


@dataclass
class Server:
    """The served app's address and the test credentials."""

    url: str  # http://127.0.0.1:PORT
    admin: str
    reader: str
    signer: Signer
    proc: subprocess.Popen[str]


@pytest.fixture(scope="module", params=FRAMEWORKS or [pytest.param("none", marks=pytest.mark.skip(
    reason="neither ryu nor os_ken is installed"))])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The app on one framework behind the hardened server, with an admin and a read token and
    one D-MA allowed every address."""
    tmp = tmp_path_factory.mktemp(f"schema-{request.param}")
    keys.add_agent(tmp / "agents.toml", tmp / "dma.key", "dma-fuzz", ["0.0.0.0/0"],
                   max_instances=1000)
    keys.add_token(tmp / "tokens.toml", tmp / "admin.token", "ops", "admin")
    keys.add_token(tmp / "tokens.toml", tmp / "read.token", "viewer", "read")
    url = f"sqlite:///{tmp / 'store.db'}"
    (tmp / "dyncast.toml").write_text(CONFIG.format(url=url) + SECURITY)
    env = {**os.environ, "PYTHONPATH": str(REPO), "DYNCAST_CONFIG": str(tmp / "dyncast.toml"),
           "DYNCAST_FRAMEWORK": request.param.replace("_", "-")}
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True,
                            cwd=tmp, env=env)
    assert proc.stdout is not None
    try:
        port = int(proc.stdout.readline())
        yield Server(f"http://127.0.0.1:{port}", read_token(tmp / "admin.token"),
                     read_token(tmp / "read.token"), Signer.from_file(tmp / "dma.key"), proc)
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode in (0, -15), proc.returncode


SCHEMA = schemathesis.openapi.from_path(str(SPEC))
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


def _name(op: Any) -> str:
    return str(op.definition.raw.get("operationId") or op.label)


def _request(server: Server, case: Any, token: str | None,
             content_type: str | None = None) -> requests.Response:
    """Send `case` to the server with the bearer `token`, or with none; a D-MA's operation
    with the admin token is signed by the agent instead. The body is serialised here so that
    the signature covers the bytes sent."""
    op = case.operation
    base = server.url if op.path in ("/healthz", "/readyz") else server.url + "/dyncast/v1"
    kwargs = case.as_transport_kwargs(base_url=base)
    headers = {k: v for k, v in (kwargs.get("headers") or {}).items()
               if k.lower() != "authorization" and not k.lower().startswith("x-dyncast")}
    raw = b""
    if "json" in kwargs:
        raw = json.dumps(kwargs.pop("json")).encode()
        headers.setdefault("Content-Type", "application/json")
    elif kwargs.get("data") is not None:
        data = kwargs.pop("data")
        raw = data.encode() if isinstance(data, str) else bytes(data)
    if token == server.admin and _name(op) in AGENT_OPERATIONS:
        prepared = requests.Request(kwargs["method"], kwargs["url"],
                                    params=kwargs.get("params")).prepare()
        # signed over the request target as sent (percent-escapes and query kept)
        headers.update(server.signer.headers(kwargs["method"], prepared.path_url, raw))
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if content_type is not None:
        headers["Content-Type"] = content_type
    kwargs["headers"] = headers
    kwargs["data"] = raw
    kwargs.setdefault("timeout", 10)
    return requests.request(**kwargs)


KNOWN_SERVICE = {"name": "svc9", "dsid": "10.0.100.9", "protocol": "udp", "port": 9000}
KNOWN_INSTANCE = "10.0.0.29"  # registered for svc1 by the signing agent


def _even(value: Any) -> bool:
    return sum(map(ord, str(value))) % 2 == 0


def _steer(server: Server, case: Any, mode: GenerationMode) -> None:
    """Valid requests mostly name unknown services, instances and D-SIDs: for half of them
    (by a hash of what was drawn) name a service and an instance that exist (made again first
    if an earlier request removed them), and make registrations by the signing agent, so that
    the success paths are fuzzed too."""
    name, body, params = _name(case.operation), case.body, case.path_parameters or {}
    steer = _even(params) if params else _even(body)
    if mode is not GenerationMode.POSITIVE:
        # an invalid batch led by a valid report for an instance that exists: the batch is
        # refused, so the valid report must not be recorded either
        reports = body.get("reports") if isinstance(body, dict) else None
        if name == "reportMetrics" and steer and isinstance(reports, list):
            _ensure(server)
            reports.insert(0, {"dbid": KNOWN_INSTANCE, "cpu": 0.5, "queue": 0, "capacity": 10,
                               "sessions": 1 + sum(map(ord, str(reports))) % 9999})
        return
    if name == "registerInstance" and isinstance(body, dict):
        body["dma"] = "dma-fuzz"
        if steer:
            body["dsid"] = DSID
    elif name == "reportMetrics" and isinstance(body, dict) and steer:
        for report in body.get("reports", [body]):
            report["dbid"] = KNOWN_INSTANCE
            report.pop("dsid", None)
    if not steer or not params:
        return
    _ensure(server)
    for key in ("name", "service"):
        if key in params:
            params[key] = KNOWN_SERVICE["name"]
            if isinstance(body, dict) and "name" in body:
                body["name"] = KNOWN_SERVICE["name"]
    if "dbid" in params:
        params["dbid"] = KNOWN_INSTANCE


def _ensure(server: Server) -> None:
    """KNOWN_SERVICE and KNOWN_INSTANCE exist (each request answered as documented)."""
    admin = {"Authorization": f"Bearer {server.admin}"}
    api = f"{server.url}/dyncast/v1"
    if requests.get(f"{api}/services/svc9", headers=admin, timeout=10).status_code == 404:
        reply = requests.post(f"{api}/services", json=KNOWN_SERVICE, headers=admin, timeout=10)
        assert reply.status_code == 201, reply.text
    raw = json.dumps({"dsid": DSID, "dbid": KNOWN_INSTANCE, "dma": "dma-fuzz"}).encode()
    signed = server.signer.headers("POST", "/dyncast/v1/instances", raw)
    reply = requests.post(f"{api}/instances", data=raw, timeout=10,
                          headers={**signed, "Content-Type": "application/json"})
    assert reply.status_code in (200, 201), reply.text


def names_the_field(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 4xx reply is `{"error": ..., "field": ...}` with both non-empty strings."""
    if 400 <= response.status_code < 500:
        try:
            body = json.loads(response.content)
        except ValueError:
            raise AssertionError(f"{response.status_code} body is not JSON: "
                                 f"{response.content[:200]!r}") from None
        assert isinstance(body, dict), f"{response.status_code} body is not an object: {body!r}"
        assert isinstance(body.get("error"), str) and body["error"], f"no error: {body!r}"
        assert isinstance(body.get("field"), str) and body["field"], f"no field: {body!r}"
    return None


def _state(server: Server) -> tuple[Any, Any]:
    """The services and the instances' registrations and metrics, as the API shows them."""
    auth = {"Authorization": f"Bearer {server.reader}"}
    services = requests.get(f"{server.url}/dyncast/v1/services", headers=auth, timeout=10)
    instances = requests.get(f"{server.url}/dyncast/v1/instances", headers=auth, timeout=10)
    assert services.status_code == instances.status_code == 200
    return services.json(), sorted((i["service"], i["dbid"], i["state"], i["draining"],
                                    json.dumps(i.get("metrics"), sort_keys=True))
                                   for i in instances.json())


def _fuzz(server: Server, op: Any, mode: GenerationMode, examples: int, token: str | None,
          check: Callable[[Any, requests.Response], None],
          content_type: str | None = None) -> None:
    """`examples` requests for `op` (fixed seed), each `check`ed; a refused one that could
    change something (not a GET) must leave the services and instances as they were."""
    changes = op.method.upper() != "GET"

    @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        _steer(server, case, mode)
        before = _state(server) if changes else None
        response = _request(server, case, token, content_type)
        check(case, response)
        if changes and response.status_code >= 400:
            assert _state(server) == before, (case.as_curl_command(), response.text)

    assert server.proc.poll() is None, "the server has exited"
    run()


def _validated(case: Any, response: requests.Response) -> None:
    case.validate_response(response, checks=[*CHECKS, names_the_field])


def _bare(case: Any, response: requests.Response) -> None:
    name = _name(case.operation)
    if name in OPEN_OPERATIONS:
        assert response.status_code in (200, 503), (name, response.status_code)
        return
    assert response.status_code == 401, (name, response.status_code, response.text)
    _validated(case, response)


def _read_only(case: Any, response: requests.Response) -> None:
    _validated(case, response)
    if case.operation.method.upper() != "GET":
        assert response.status_code in (401, 403), (case.as_curl_command(), response.text)


def _id(op: Any) -> str:
    return _name(op)


@pytest.mark.parametrize(("op", "mode"), [
    *((op, GenerationMode.POSITIVE) for op in OPERATIONS),
    # invalid requests: for the operations that take something to get wrong
    *((op, GenerationMode.NEGATIVE) for op in OPERATIONS
      if len(op.body) or len(op.path_parameters))],
    ids=lambda v: _id(v) if not isinstance(v, GenerationMode) else str(v))
def test_every_generated_request_gets_a_documented_reply(server: Server, op: Any,
                                                         mode: GenerationMode) -> None:
    """With credentials: no 5xx; the status, content type and body as documented; a 4xx
    names the field."""
    _fuzz(server, op, mode, EXAMPLES, server.admin, _validated)


@pytest.mark.parametrize("op", OPERATIONS, ids=_id)
def test_without_credentials_every_request_is_refused(server: Server, op: Any) -> None:
    """No token and no signature: 401 naming the field (the health checks need nothing)."""
    _fuzz(server, op, GenerationMode.POSITIVE, BARE_EXAMPLES, None, _bare)


@pytest.mark.parametrize("op", OPERATIONS, ids=_id)
def test_a_read_token_reads_and_changes_nothing(server: Server, op: Any) -> None:
    """A `read` token: GETs answered as documented, every other operation refused (403, or
    401 for a D-MA's operation, which wants a signature) and nothing changed."""
    _fuzz(server, op, GenerationMode.POSITIVE, BARE_EXAMPLES, server.reader, _read_only)


def test_every_operation_is_fuzzed() -> None:
    """The document's operations were all found (a bad $ref would hide some)."""
    names = {_id(op) for op in OPERATIONS}
    assert len(names) == len(OPERATIONS) >= 20, sorted(names)
    assert names >= AGENT_OPERATIONS | OPEN_OPERATIONS



@pytest.mark.parametrize("op", [op for op in OPERATIONS if len(op.body)], ids=_id)
def test_a_body_that_is_not_json_is_refused(server: Server, op: Any) -> None:
    """A valid body sent as text/plain: 415 naming Content-Type, as documented, nothing
    changed."""
    def refused(case: Any, response: requests.Response) -> None:
        _validated(case, response)
        if response.request.body:  # drain and deactivate may come without a body
            assert response.status_code == 415, (case.as_curl_command(), response.text)
            assert response.json()["field"] == "Content-Type"

    _fuzz(server, op, GenerationMode.POSITIVE, BARE_EXAMPLES, server.admin, refused,
          "text/plain")


SAMPLE = {"name": "svc1", "service": "svc1", "dbid": "10.0.0.21"}


def test_a_method_the_document_does_not_list_is_refused_naming_the_path(server: Server) -> None:
    """Every path of the document with each method it does not list (and PATCH, OPTIONS):
    a JSON 400, 404 or 405 naming the path, never the framework's HTML page or a 5xx."""
    api = {op.path for op in OPERATIONS} - {"/healthz", "/readyz"}
    for path in sorted(api):
        listed = {op.method.upper() for op in OPERATIONS if op.path == path}
        url = server.url + "/dyncast/v1" + path.format(**SAMPLE)
        for method in sorted({"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"} - listed):
            reply = requests.request(method, url, timeout=10, data=b"{}",
                                     headers={"Authorization": f"Bearer {server.admin}",
                                              "Content-Type": "application/json"})
            assert reply.status_code in (400, 404, 405), (method, url, reply.text)
            assert reply.json()["field"] == "path", (method, url, reply.text)

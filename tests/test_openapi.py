"""docs/openapi.yaml: a valid OpenAPI 3.1 document, covering every route of controller/api.py,
and real replies of the app (requests made through its API, both frameworks) conform to it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_spec_validator import validate

from controller.api import Api
from controller.config import ControllerConfig
from controller.core import Core
from tests import test_app_smoke
from tests.test_app_smoke import CLIENT, CONFIG, DSID, INSTANCE, Shell

shell = test_app_smoke.shell  # the fixture: the app on each framework
SPEC = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
HOST = "http://127.0.0.1:8080"


def document() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    return data


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_every_route_of_the_api_is_described() -> None:
    """Each (method, resource) the API routes, and the shell's (the reload, the cluster, the
    health checks), has an operation."""
    paths = document()["paths"]
    described = {(m.upper(), p.strip("/").split("/")[0]) for p, ops in paths.items()
                 for m in ops if m not in ("parameters", "servers")}
    shell_routes = {("POST", "config"), ("GET", "cluster"), ("GET", "healthz"),
                    ("GET", "readyz")}
    routed = set(Api(Core(ControllerConfig()))._routes) | shell_routes
    assert routed - described == set()
    assert described - routed == {("GET", "")}  # the resource list


def call(shell: Shell, spec: OpenAPI, method: str, path: str, body: Any = None,
         status: int | None = None) -> Any:
    """Make the request through the app; validate request and reply against the document."""
    data = b"" if body is None else json.dumps(body).encode()
    reply = shell.app.api_call(method, f"/dyncast/v1/{path}", data)
    if status is not None:
        assert reply.status == status, (method, path, reply.body)
    request = MockRequest(HOST, method.lower(), f"/dyncast/v1/{path}", data=data or None)
    if reply.status < 400:
        spec.validate_request(request)
    spec.validate_response(request, MockResponse(shell.app.encode(reply.body),
                                                 status_code=reply.status))
    return reply.body


def test_real_replies_conform(shell: Shell) -> None:
    spec = OpenAPI.from_file_path(str(SPEC))
    shell.connect()
    shell.arp_from(INSTANCE)
    shell.arp_from(CLIENT)
    call(shell, spec, "GET", "", status=200)
    call(shell, spec, "GET", "services", status=200)
    call(shell, spec, "GET", "services/svc1", status=200)
    new = {"name": "svc3", "dsid": "10.0.100.3", "protocol": "udp", "port": 5000}
    call(shell, spec, "POST", "services", new, status=201)
    call(shell, spec, "PUT", "services/svc3", {**new, "port": 5001}, status=200)
    call(shell, spec, "POST", "services", new, status=409)
    call(shell, spec, "GET", "services/nope", status=404)
    call(shell, spec, "POST", "instances", {"dsid": DSID, "dbid": INSTANCE[0], "dma": "t"},
         status=201)
    call(shell, spec, "POST", "instances", {"dsid": DSID, "dbid": INSTANCE[0], "dma": "t"},
         status=200)
    call(shell, spec, "POST", "instances", {"dsid": DSID}, status=400)
    report = {"dbid": INSTANCE[0], "cpu": 0.1, "sessions": 0, "queue": 0, "capacity": 10}
    call(shell, spec, "POST", "metrics", report, status=200)
    call(shell, spec, "POST", "metrics", {"reports": [report, report]}, status=200)
    shell.syn(40000)
    call(shell, spec, "GET", "instances", status=200)
    call(shell, spec, "GET", f"instances/{INSTANCE[0]}", status=200)
    call(shell, spec, "GET", "decisions", status=200)
    call(shell, spec, "GET", "decisions/svc1", status=200)
    assert call(shell, spec, "GET", "bindings", status=200)
    call(shell, spec, "GET", "bindings/svc1", status=200)
    for view in ("decisions", "bindings"):  # a service that does not exist: 404 naming it
        assert call(shell, spec, "GET", f"{view}/nosuch", status=404)["field"] == "service"
    call(shell, spec, "GET", "topology", status=200)
    call(shell, spec, "GET", "stats", status=200)
    call(shell, spec, "GET", "cluster", status=200)
    call(shell, spec, "POST", f"instances/{INSTANCE[0]}/drain", {"deadline_s": 60}, status=200)
    call(shell, spec, "POST", f"instances/{INSTANCE[0]}/undrain", status=200)
    call(shell, spec, "POST", f"instances/{INSTANCE[0]}/deactivate", status=200)
    call(shell, spec, "POST", f"instances/{INSTANCE[0]}/activate")
    call(shell, spec, "POST", "config/reload", status=200)
    Path(os.environ["DYNCAST_CONFIG"]).write_text(CONFIG.format(url=shell.store_url)
                                                  + "\n[controller\n")
    call(shell, spec, "POST", "config/reload", status=400)
    call(shell, spec, "DELETE", f"instances/{INSTANCE[0]}", status=200)
    call(shell, spec, "DELETE", "services/svc3", status=200)
    assert shell.app.core.counters["errors"] == 0


@pytest.mark.parametrize("path", ["services", "instances", "decisions", "bindings"])
def test_every_list_view_is_an_array(path: str) -> None:
    schema = document()["paths"][f"/{path}"]["get"]["responses"]["200"]["content"]
    assert schema["application/json"]["schema"]["type"] == "array"


def test_the_health_replies_conform(shell: Shell) -> None:
    """/healthz and /readyz (at the port's root, outside /dyncast/v1) answer as described."""
    spec = OpenAPI.from_file_path(str(SPEC))
    for path, ready in (("/healthz", False), ("/readyz", True)):
        status, body = shell.app.health(ready)
        assert status == 200
        request = MockRequest("http://127.0.0.1:8080", "get", path)
        spec.validate_request(request)
        spec.validate_response(request, MockResponse(shell.app.encode(body),
                                                     status_code=status))

"""What tests/test_schema_fuzz.py found (requests generated from docs/openapi.yaml, sent to
the real server), each pinned down in-process: the request that found it, fixed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_core.validation.request.exceptions import InvalidRequestBody

from apps.rest import APP_KEY, RestController
from apps.restserver import BodyLimit
from apps.restside import RestSide
from controller.api import Api, Reply
from controller.config import ControllerConfig
from controller.core import Core
from tests.test_fastpath import call, framework_context
from tests.test_openapi import HOST, document


class ApiApp:
    """The app's REST side over a real Api (no switches, no store)."""

    encode = RestSide.encode

    def __init__(self) -> None:
        self.api = Api(Core(ControllerConfig()))

    def api_call(self, method: str, path: str, body: bytes, query: str = "",
                 signed: Any = None) -> Reply:
        return self.api.handle(method, path, body, 1000.0)


@pytest.mark.parametrize("path", ["/dyncast/v1", "/dyncast/v1/"])
def test_the_resource_list_is_served_with_or_without_the_slash(path: str) -> None:
    """GET / under the document's server `/dyncast/v1` is GET /dyncast/v1/: the framework's
    route table had no route for it (an HTML 404), and /dyncast/v1 got the API's JSON 404."""
    context = framework_context()
    context.register(RestController, {APP_KEY: ApiApp()})
    status, _, body = call(context, "GET", path)
    assert status.startswith("200"), (status, body)
    assert "services" in json.loads(body)["resources"]


def test_refusals_and_bad_paths_are_documented_per_operation() -> None:
    """The gate's 401/403 (e.g. POST /instances signed by dma-fuzz naming "dma": "0.0.0.0":
    403 "dma: must be the signing agent's id") were only in the description's prose, and a
    path segment the API refuses (DELETE /services/%C2%88: 400 naming "path") was not listed
    for getService, deleteService, getInstance: undocumented status codes. Every operation
    behind the gate lists 401 and 403, every one with a path parameter or a body 400, and a
    real 403 reply validates."""
    doc = document()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if method in ("parameters", "servers") or path in ("/healthz", "/readyz"):
                continue
            codes = set(op["responses"])
            assert {"401", "403"} <= codes, (method, path)
            if "{" in path or "requestBody" in op:
                assert "400" in codes, (method, path)
            if "requestBody" in op:  # the gate's 413 and 415 (a text/plain body)
                assert {"413", "415"} <= codes, (method, path)
    spec = OpenAPI.from_dict(doc)
    body = {"dsid": "10.0.100.1", "dbid": "10.0.0.21", "dma": "other"}
    request = MockRequest(HOST, "post", "/dyncast/v1/instances", data=json.dumps(body))
    refusal = {"error": "dma: must be the signing agent's id 'dma-fuzz'", "field": "dma"}
    spec.validate_response(request, MockResponse(json.dumps(refusal).encode(), status_code=403))


GOOD_SERVICE = {"name": "s9", "dsid": "10.0.100.9", "protocol": "tcp", "port": 80,
                "base_delay_ms": 5, "delay_budget_ms": 50, "overlay": False, "buckets": 64}


@pytest.mark.parametrize(("change", "field"), [
    ({"protocol": "any"}, "protocol"), ({"port": 0}, "port"), ({"zz": 1}, "zz"),
    ({"dsid": "999.1.1.1"}, "dsid"), ({"dsid": "127.0.0.1"}, "dsid"),
    ({"dsid": "224.0.0.9"}, "dsid"), ({"buckets": 48}, "buckets"),
    ({"affinity": {"forward": 1}}, "affinity.forward"),
    ({"affinity": {"idle_timeout": 70000}}, "affinity.idle_timeout"),
    ({"weights": {"network": 2000}}, "weights.network"), ({"name": None}, "name")])
def test_the_service_schema_refuses_what_the_api_refuses(change: dict[str, object],
                                                         field: str) -> None:
    """Generated services the document called valid were refused: protocol "any", port 0,
    unknown keys (also in affinity), 999.x addresses, reserved D-SIDs, timeouts and weights
    out of range, no name on a create; and base_delay_ms, delay_budget_ms, overlay and
    buckets were not described. Now the document and the API agree both ways."""
    spec = OpenAPI.from_dict(document())
    good = MockRequest(HOST, "post", "/dyncast/v1/services", data=json.dumps(GOOD_SERVICE))
    spec.validate_request(good)
    assert ApiApp().api_call("POST", "/dyncast/v1/services",
                             json.dumps(GOOD_SERVICE).encode()).status == 201
    body = json.dumps({**GOOD_SERVICE, **change})
    with pytest.raises(InvalidRequestBody):
        spec.validate_request(MockRequest(HOST, "post", "/dyncast/v1/services", data=body))
    reply = ApiApp().api_call("POST", "/dyncast/v1/services", body.encode())
    assert (reply.status, reply.body["field"]) == (400, field), reply.body


def test_a_report_needs_its_load_or_a_score() -> None:
    """A report without cpu/sessions/queue/capacity and without a score, or with sessions or
    a delay over the API's bounds, was valid by the document and refused by the API
    (reports[0].cpu: is required; processing_delay_ms: must be between 0 and 3.6e+06)."""
    spec = OpenAPI.from_dict(document())
    for report, ok in (({"dbid": "10.0.0.21", "cpu": 0.1, "sessions": 0, "queue": 0,
                         "capacity": 1}, True), ({"dbid": "10.0.0.21", "score": 3}, True),
                       ({"dbid": "10.0.0.21", "cpu": 0.1}, False),
                       ({"dbid": "10.0.0.21", "score": 3, "sessions": 10**8}, False),
                       ({"dbid": "10.0.0.21", "score": 3, "processing_delay_ms": 1e308}, False)):
        request = MockRequest(HOST, "post", "/dyncast/v1/metrics", data=json.dumps(report))
        if ok:
            spec.validate_request(request)
        else:
            with pytest.raises(InvalidRequestBody):
                spec.validate_request(request)


def test_an_integral_number_is_an_integer() -> None:
    """POST /metrics {"dbid": ..., "cpu": 0.03, "sessions": 138.0, ...} was refused
    ("sessions: must be an integer, got 138.0") though the document's `integer` (JSON
    Schema's: a number with no fraction) allows it: JSON has one number type. 138.5 is still
    refused, naming the field, and changes nothing."""
    app = ApiApp()
    assert app.api_call("POST", "/dyncast/v1/services", json.dumps(GOOD_SERVICE).encode()
                        ).status == 201
    reg = {"dsid": GOOD_SERVICE["dsid"], "dbid": "10.0.0.21", "dma": "t"}
    assert app.api_call("POST", "/dyncast/v1/instances", json.dumps(reg).encode()).status == 201
    report = {"dbid": "10.0.0.21", "cpu": 0.25, "sessions": 138.0, "queue": 0.0,
              "capacity": 10.0}
    assert app.api_call("POST", "/dyncast/v1/metrics", json.dumps(report).encode()
                        ).status == 200
    (instance,) = app.api_call("GET", "/dyncast/v1/instances", b"").body
    assert instance["metrics"]["sessions"] == 138 and instance["metrics"]["capacity"] == 10
    bad = app.api_call("POST", "/dyncast/v1/metrics",
                       json.dumps({**report, "sessions": 138.5, "cpu": 0.5}).encode())
    assert (bad.status, bad.body["field"]) == (400, "sessions")
    assert app.api_call("GET", "/dyncast/v1/instances", b"").body == [instance]
    service = {**GOOD_SERVICE, "name": "s10", "dsid": "10.0.100.10", "port": 81.0}
    assert app.api_call("POST", "/dyncast/v1/services", json.dumps(service).encode()
                        ).body["port"] == 81


def _served(path: str) -> tuple[str, bytes]:
    """GET `path` through the server's middleware and the framework's routes."""
    context = framework_context()
    context.register(RestController, {APP_KEY: ApiApp()})
    status, _, body = call(BodyLimit(context, 1 << 20), "GET", path)
    return status, body


def test_a_path_that_is_not_utf8_is_refused_naming_the_path() -> None:
    """GET /dyncast/v1/%ff got 500 text/plain under both frameworks: webob decodes the path
    as UTF-8 and raised. The server refuses it first, 400 naming "path"; a UTF-8 path the API
    does not serve is still its own 400."""
    status, body = _served("/dyncast/v1/\xff")
    assert status.startswith("400") and json.loads(body)["field"] == "path", (status, body)
    status, body = _served("/dyncast/v1/services/" + "é".encode().decode("latin-1"))
    assert status.startswith("400") and json.loads(body)["field"] == "path", (status, body)
    assert _served("/dyncast/v1/services")[0].startswith("200")


@pytest.mark.parametrize(("method", "path", "status"), [
    ("PATCH", "/dyncast/v1/services", "405"), ("OPTIONS", "/dyncast/v1/services", "405"),
    ("POST", "/dyncast/v1/", "405"), ("GET", "/dyncast/v1/a/b/c/d/e", "404")])
def test_every_request_under_the_api_gets_a_json_reply_naming_the_path(
        method: str, path: str, status: str) -> None:
    """PATCH/OPTIONS on a resource and paths deeper than any route got the framework's HTML
    404 (no field named), and POST /dyncast/v1/ the resource list: the API now answers every
    request under /dyncast/v1/, 405 for a method a resource does not take."""
    context = framework_context()
    context.register(RestController, {APP_KEY: ApiApp()})
    got, _, body = call(context, method, path)
    assert got.startswith(status) and json.loads(body)["field"] == "path", (got, body)

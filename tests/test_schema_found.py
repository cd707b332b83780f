"""What tests/test_schema_fuzz.py found (requests generated from docs/openapi.yaml, sent to
the real server), each pinned down in-process: the request that found it, fixed."""

from __future__ import annotations

import json

import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from apps.rest import APP_KEY, RestController
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

    def api_call(self, method: str, path: str, body: bytes) -> Reply:
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
    spec = OpenAPI.from_dict(doc)
    body = {"dsid": "10.0.100.1", "dbid": "10.0.0.21", "dma": "other"}
    request = MockRequest(HOST, "post", "/dyncast/v1/instances", data=json.dumps(body))
    refusal = {"error": "dma: must be the signing agent's id 'dma-fuzz'", "field": "dma"}
    spec.validate_response(request, MockResponse(json.dumps(refusal).encode(), status_code=403))

"""What tests/test_schema_fuzz.py found (requests generated from docs/openapi.yaml, sent to
the real server), each pinned down in-process: the request that found it, fixed."""

from __future__ import annotations

import json

import pytest

from apps.rest import APP_KEY, RestController
from apps.restside import RestSide
from controller.api import Api, Reply
from controller.config import ControllerConfig
from controller.core import Core
from tests.test_fastpath import call, framework_context


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

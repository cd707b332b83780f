"""The gate's short way to the API (apps/fastpath.py) answers exactly as the framework's route
to `RestController._serve` does: same status line, headers and body, and the app is asked the
same (method, path, body). Requests the short way must not take still reach the framework."""

from __future__ import annotations

import importlib.util
import io
import json
from typing import Any

import pytest

from apps import fastpath
from apps.framework import FRAMEWORK, WSGIApplication
from apps.rest import APP_KEY, RestController
from apps.restside import RestSide
from apps.security import Gate, install
from controller.api import Reply
from controller.auth.settings import SecuritySettings
from controller.config import ControllerConfig


class ScriptedApp:
    """The app's REST side with a scripted `api_call`: the reply depends only on the request,
    so each way can be asked the same thing and must answer the same."""

    encode = RestSide.encode

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bytes, str]] = []

    def api_call(self, method: str, path: str, body: bytes, query: str = "",
                 signed: Any = None) -> Reply:
        self.calls.append((method, path, body, query))
        if path.endswith("/empty"):
            return Reply(204, {})
        if path.endswith("/fixed"):
            return Reply(405, {"error": f"{method} not allowed", "field": "path"},
                         allow=("GET", "HEAD"))
        if path.endswith("/big"):
            return Reply(200, [{"dbid": f"i{k}", "cpu": k / 10} for k in range(12)])
        if b'"bad"' in body:
            return Reply(422, {"error": "reports[0].cpu: not a number", "field": "reports[0].cpu"})
        return Reply(200, {"method": method, "path": path, "accepted": 1})


def bare_osken() -> Any:
    """os-ken's WSGI context (apps/osken_wsgi.py) without the server its constructor starts."""
    from routes import Mapper

    from apps import osken_wsgi

    ctx = osken_wsgi.WSGIApplication.__new__(osken_wsgi.WSGIApplication)
    ctx.config, ctx.mapper, ctx.registory = {}, Mapper(), {}
    return ctx


def framework_context() -> Any:
    """The running framework's WSGI context, with no server started."""
    return bare_osken() if FRAMEWORK == "os-ken" else WSGIApplication()


def _contexts() -> list[Any]:
    """The framework's WSGI context and, when installed and not that one, os-ken's."""
    out: list[Any] = [pytest.param(framework_context, id="framework")]
    if FRAMEWORK != "os-ken" and importlib.util.find_spec("os_ken") is not None:
        out.append(pytest.param(bare_osken, id="os-ken"))
    return out


def call(gate: Gate, method: str, path: str, body: bytes = b"",
         ctype: str = "application/json") -> tuple[str, list[tuple[str, str]], bytes]:
    """One request through the gate: (status line, headers, body)."""
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], *_: Any) -> None:
        got["status"], got["headers"] = status, list(headers)

    path, _, query = path.partition("?")
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "SCRIPT_NAME": "",
               "QUERY_STRING": query, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080",
               "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
               "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
               "CONTENT_TYPE": ctype if body else ""}
    data = b"".join(gate(environ, start_response))
    return got["status"], got["headers"], data


REQUESTS = [
    ("POST", "/dyncast/v1/metrics", b'{"dbid": "i1", "cpu": 0.5}'),
    ("POST", "/dyncast/v1/metrics", b'{"dbid": "i1", "cpu": "bad"}'),
    ("POST", "/dyncast/v1/metrics", b"{}"),
    ("GET", "/dyncast/v1", b""),
    ("GET", "/dyncast/v1/services", b""),
    ("GET", "/dyncast/v1/services", b'{"odd": "a body on a GET"}'),
    ("GET", "/dyncast/v1/decisions/svc1", b""),
    ("PUT", "/dyncast/v1/instances/svc1/i-1.a~b", b"{}"),
    ("DELETE", "/dyncast/v1/instances/svc1/i1", b""),
    ("POST", "/dyncast/v1/instances/i1/drain", b""),
    ("POST", "/dyncast/v1/instances/i1/drain?deadline_s=5", b""),  # (handed on, to refuse)
    ("GET", "/dyncast/v1/x/empty", b""),
    ("POST", "/dyncast/v1/x/fixed", b"{}"),
    ("GET", "/dyncast/v1/x/big", b""),
]
ELSEWHERE = [  # not what the short way takes: the framework answers (or the route's own 404)
    ("GET", "/dyncast/v1/"),
    ("GET", "/dyncast/v1/a/b/c/d"),
    ("GET", "/dyncast/v1/a%20b"),
    ("GET", "/dyncast/v1//x"),
    ("PATCH", "/dyncast/v1/services"),
    ("HEAD", "/dyncast/v1/services"),
    ("GET", "/nowhere"),
]


def gates(make: Any, fast: bool) -> tuple[Gate, ScriptedApp]:
    """A gate (no auth) in front of a new context with the REST controller registered; the
    app attached for the short way when `fast`."""
    ctx, app = make(), ScriptedApp()
    ctx.register(RestController, {APP_KEY: app})
    install(ctx, ControllerConfig(security=SecuritySettings(auth=False)), lambda: {})
    if fast:
        fastpath.attach(ctx, app)
    return Gate(ctx), app


@pytest.mark.parametrize("make", _contexts())
def test_the_short_way_answers_as_the_route_does(make: Any) -> None:
    long_gate, long_app = gates(make, fast=False)
    short_gate, short_app = gates(make, fast=True)
    for method, path, body in REQUESTS:
        assert fastpath.routed({"REQUEST_METHOD": method,
                                "PATH_INFO": path.partition("?")[0]}), path
        want = call(long_gate, method, path, body)
        got = call(short_gate, method, path, body)
        assert got == want, (method, path)
    assert short_app.calls == long_app.calls and len(long_app.calls) == len(REQUESTS)
    assert long_app.calls[REQUESTS.index(("POST", "/dyncast/v1/instances/i1/drain?deadline_s=5",
                                          b""))][3] == "deadline_s=5"
    assert json.loads(call(short_gate, "GET", "/dyncast/v1/x/big")[2])[11]["dbid"] == "i11"
    assert ("Allow", "GET, HEAD") in call(short_gate, "POST", "/dyncast/v1/x/fixed", b"{}")[1]


@pytest.mark.parametrize("make", _contexts())
def test_other_requests_still_reach_the_framework(make: Any) -> None:
    long_gate, _ = gates(make, fast=False)
    short_gate, short_app = gates(make, fast=True)
    for method, path in ELSEWHERE:
        assert not fastpath.routed({"REQUEST_METHOD": method, "PATH_INFO": path}), path
        assert call(short_gate, method, path) == call(long_gate, method, path), (method, path)
    # the framework's catch-all route under /dyncast/v1/ hands it to the API (a JSON reply)
    assert ("GET", "/dyncast/v1/a/b/c/d", b"", "") in short_app.calls


@pytest.mark.parametrize("make", _contexts())
def test_the_gate_still_refuses_before_the_short_way(make: Any) -> None:
    """A body of the wrong type or over the limit is refused by the gate, the app never asked."""
    short_gate, app = gates(make, fast=True)
    status, _, data = call(short_gate, "POST", "/dyncast/v1/metrics", b"{}", ctype="text/plain")
    assert status.startswith("415") and json.loads(data)["field"] == "Content-Type"
    big = b"[" + b"0," * (1 << 20) + b"0]"
    status, _, data = call(short_gate, "POST", "/dyncast/v1/metrics", big)
    assert status.startswith("413") and json.loads(data)["field"] == "body"
    assert app.calls == []

"""The API's short way through the web stack: a request the gate has admitted for one of the
routes `apps/rest.py` serves with the app's `api_call` is handed to that call directly, without
webob's request and response objects, Routes' matching or a controller instance per request.

Boundary: shell, WSGI. Only what the framework would route to `RestController._serve` takes the
short way, and its reply is the same (status line, headers, body: tests/test_fastpath.py
compares both ways): a method of `METHODS` on `/dyncast/v1` or up to three plain
path segments below it (letters, digits, `-._~`: nothing webob would quote, no empty segment,
no trailing slash), no SCRIPT_NAME. Everything else (GET /metrics, /healthz, the web view,
odd paths, HEAD) goes through the framework as before. The gate has already read the body and
checked size, content type and credentials; `api_call` does the rest (depth, validation), as
on the long way. With one metric report per POST, the long way spent about a third of the
controller's CPU in webob, Routes and the controller object (docs/benchmarks.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from webob.util import status_reasons

METHODS = ["GET", "POST", "PUT", "DELETE"]  # the API routes' (apps/rest.py)
APP_ATTR = "dyncast_api_app"  # on the WSGI context: the app whose api_call serves the API
SIGNED_KEY = "dyncast.signed"  # in the environ: the agent's signature the gate accepted, or None
_ROUTED = re.compile(r"/dyncast/v1(?:/[A-Za-z0-9._~-]+){0,3}")
_METHODS = frozenset(METHODS)
_BODILESS = frozenset((204, 304))  # webob drops these replies' body and entity headers
StartResponse = Callable[..., Any]


def attach(wsgi_context: Any, app: Any) -> None:
    """Let the gate in front of `wsgi_context` hand API requests to `app` (its `api_call` and
    `encode`, as `apps.rest.RestController` uses them)."""
    setattr(wsgi_context, APP_ATTR, app)


def routed(environ: dict[str, Any]) -> bool:
    """Whether the framework would route this request to `RestController._serve`."""
    return (environ.get("REQUEST_METHOD") in _METHODS and not environ.get("SCRIPT_NAME")
            and _ROUTED.fullmatch(environ.get("PATH_INFO", "")) is not None)


def serve(app: Any, environ: dict[str, Any], body: bytes,
          start_response: StartResponse) -> list[bytes]:
    """`RestController._serve`'s reply, without the framework."""
    reply = app.api_call(environ["REQUEST_METHOD"], environ["PATH_INFO"], body,
                         environ.get("QUERY_STRING", ""), environ.get(SIGNED_KEY))
    data = app.encode(reply.body)
    status = int(reply.status)
    line = f"{status} {status_reasons.get(status, 'Unknown')}"
    if status in _BODILESS or status < 200:
        start_response(line, [])
        return []
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    if reply.allow:
        headers.append(("Allow", ", ".join(reply.allow)))
    start_response(line, headers)
    return [data]

"""JSON error replies where the framework's route table answered HTML: everywhere the REST
server answers, an API client gets the API's error shape.

Boundary: WSGI only, in front of the framework's context (Ryu's or ours for os-ken: both keep
a Routes `mapper`); the gate (apps/security.py) calls it for every admitted request the
API's fast path does not take. A path no route serves gets 404 naming `path`; a path that is
served, asked with a method none of its routes takes (`POST /healthz`), 405 with `Allow`;
the routes' own replies pass unchanged, except a 404 or 405 that is not JSON (the web view's
"no such file"), which becomes the same JSON error. HEAD is served as GET (RFC 9110 9.3.2:
every path that answers GET answers HEAD alike: status and headers, no body, which the server
leaves out), and `Allow` names HEAD wherever it names GET.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
REASONS = {404: "Not Found", 405: "Method Not Allowed"}


def allowed(mapper: Any, environ: dict[str, Any]) -> list[str]:
    """The methods some route takes for this request's path (none: no route serves it); HEAD
    wherever GET is."""
    return [m for m in METHODS if mapper.match(environ={**environ, "REQUEST_METHOD": m}) or (
        m == "HEAD" and mapper.match(environ={**environ, "REQUEST_METHOD": "GET"}))]


def serve(inner: Any, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """`inner`'s reply to the request, or the JSON 404/405 in place of the framework's."""
    method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")
    if method == "HEAD":  # the GET reply; the server sends a HEAD's without its body
        environ = {**environ, "REQUEST_METHOD": "GET"}
    mapper = getattr(inner, "mapper", None)
    if mapper is not None and not mapper.match(environ=environ):
        methods = allowed(mapper, environ)
        if not methods:
            return error(start_response, 404, f"no such resource: {path}")
        return error(start_response, 405, f"{method} not allowed on {path}", methods)
    seen: list[tuple[str, list[tuple[str, str]], Any]] = []
    written: list[bytes] = []

    def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen.append((status, headers, exc_info))
        return written.append

    result: Iterable[bytes] = inner(environ, capture)
    if not seen:  # an app that starts its reply with the body's first chunk
        result = [b"".join(result)]
    status, headers, exc_info = seen[-1]
    code = int(status.split(" ", 1)[0])
    ctype = next((v for k, v in headers if k.lower() == "content-type"), "")
    if code in REASONS and not ctype.lower().startswith("application/json"):
        close = getattr(result, "close", None)
        if close is not None:
            close()
        allow = next((v for k, v in headers if k.lower() == "allow"), "")
        return error(start_response, code, f"no such resource: {path}" if code == 404 else
                     f"{method} not allowed on {path}", allow.split(", ") if allow else None)
    if exc_info is None:
        start_response(status, headers)
    else:
        start_response(status, headers, exc_info)
    if not written:
        return result
    try:  # what the app wrote (WSGI's `write`) comes first
        return [*written, *result]
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()


def error(start_response: StartResponse, status: int, message: str,
          allow: list[str] | None = None) -> list[bytes]:
    """A JSON error naming the path, in the API's shape; a 405 says what is allowed."""
    data = json.dumps({"error": message, "field": "path"}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    if status == 405:
        headers.append(("Allow", ", ".join(allow or [])))
    start_response(f"{status} {REASONS[status]}", headers)
    return [data]

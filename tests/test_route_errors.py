"""Outside /dyncast/v1/ too, the REST server's errors are JSON: over HTTP to the real app
behind the real server under each installed framework (tests/test_schema_fuzz.py's server), an
unknown path gets 404 naming `path`, a wrong method on a served path 405 with `Allow`, and
what /healthz, /metrics and the web view serve is unchanged."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from apps import routeerrors
from tests.test_schema_fuzz import Server, server  # the module's fixture

__all__ = ["server"]


def _get(srv: Server, method: str, path: str) -> requests.Response:
    return requests.request(method, srv.url + path, timeout=10,
                            headers={"Authorization": f"Bearer {srv.admin}"})


@pytest.mark.parametrize("path", ["/nowhere", "/", "/dyncast", "/healthz/x", "/metrics/",
                                  "/dyncast/ui/no-such-file.js", "/dyncast/uix"])
def test_a_path_nothing_serves_is_a_json_404_naming_the_path(server: Server,
                                                              path: str) -> None:
    """The framework answered these with an HTML 404 (the web view: a text/plain one)."""
    for method in ("GET", "HEAD") if path.startswith("/dyncast/ui/") else ("GET",):
        reply = _get(server, method, path)
        assert reply.status_code == 404, (method, path, reply.text)
        assert reply.headers["Content-Type"] == "application/json"
    reply = _get(server, "GET", path)
    assert reply.json() == {"error": f"no such resource: {path}", "field": "path"}


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("POST", "/healthz", "GET, HEAD"), ("DELETE", "/readyz", "GET, HEAD"),
    ("PUT", "/metrics", "GET, HEAD"), ("POST", "/dyncast/ui/", "GET, HEAD"),
    ("DELETE", "/dyncast/ui/index.html", "GET, HEAD"), ("PATCH", "/dyncast/ui", "GET, HEAD")])
def test_a_method_a_served_path_does_not_take_is_a_json_405_with_allow(
        server: Server, method: str, path: str, allow: str) -> None:
    """Was the framework's HTML 404: the path is served, by other methods, named in Allow."""
    reply = _get(server, method, path)
    assert (reply.status_code, reply.headers.get("Allow")) == (405, allow), reply.text
    assert reply.headers["Content-Type"] == "application/json"
    if method != "HEAD":
        assert reply.json() == {"error": f"{method} not allowed on {path}", "field": "path"}


@pytest.mark.parametrize(("path", "status"), [
    ("/healthz", 200), ("/readyz", 200), ("/dyncast/v1/services", 200), ("/dyncast/v1/", 200),
    ("/dyncast/v1/topology", 200), ("/dyncast/ui/", 200), ("/dyncast/v1/nowhere", 404),
    ("/nowhere", 404), ("/dyncast/v1/services/no-such", 404)])
def test_head_answers_as_get_without_the_body(server: Server, path: str, status: int) -> None:
    """HEAD gets GET's status and headers (RFC 9110 9.3.2), the body left out; it was a 405
    on every route but the web view's (a monitor's HEAD probe of /healthz failed)."""
    got = _get(server, "GET", path)
    head = _get(server, "HEAD", path)
    assert (got.status_code, head.status_code) == (status, status), head.headers
    assert head.content == b"" and head.headers["Content-Type"] == got.headers["Content-Type"]
    assert head.headers.get("Content-Length") == str(len(got.content))


def _until(sock: socket.socket, data: bytes, marker: bytes) -> bytes:
    """`data` and what the socket sends next, up to and with a second `marker`'s end or EOF."""
    while data.count(marker) < 2:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("path", ["/healthz", "/metrics", "/dyncast/v1/services",
                                  "/dyncast/ui/", "/dyncast/v1/metrics", "/nowhere"])
def test_head_sends_no_body_so_the_next_reply_on_the_connection_is_read(server: Server,
                                                                         path: str) -> None:
    """On one kept-alive connection a HEAD then a GET: right after the HEAD's header block
    comes the GET's status line (the server sent the HEAD's body too, which a client reads
    as the next reply: http.client's BadStatusLine once the body outgrows its read buffer)."""
    host, port = server.url.removeprefix("http://").split(":")
    auth = f"Authorization: Bearer {server.admin}\r\nHost: {host}\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"HEAD {path} HTTP/1.1\r\n{auth}\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        sock.sendall(f"GET /healthz HTTP/1.1\r\n{auth}\r\n".encode())
        data = _until(sock, data, b"\r\n\r\n")
    after_head = data.split(b"\r\n\r\n", 1)[1]
    assert after_head.startswith(b"HTTP/1.1 200 "), after_head[:200]


def test_head_needs_what_get_needs(server: Server) -> None:
    """HEAD is a read: without a token, what GET refuses HEAD refuses alike."""
    for path in ("/metrics", "/dyncast/v1/services"):
        got = requests.get(server.url + path, timeout=10)
        head = requests.head(server.url + path, timeout=10)
        assert (got.status_code, head.status_code) == (401, 401) and head.content == b""
    assert requests.head(server.url + "/healthz", timeout=10).status_code == 200


def test_what_the_other_routes_serve_is_unchanged(server: Server) -> None:
    """Health, metrics and the web view answer as before; the API's own errors too."""
    assert requests.get(server.url + "/healthz", timeout=10).json()["status"] == "alive"
    metrics = _get(server, "GET", "/metrics")
    assert metrics.status_code == 200 and metrics.headers["Content-Type"].startswith("text/plain")
    page = _get(server, "GET", "/dyncast/ui/")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    moved = requests.get(server.url + "/dyncast/ui", timeout=10, allow_redirects=False)
    assert moved.status_code == 301 and moved.headers["Location"].endswith("/dyncast/ui/")
    api = _get(server, "GET", "/dyncast/v1/nowhere")
    assert api.json() == {"error": "no such resource: /dyncast/v1/nowhere", "field": "path"}
    assert requests.get(server.url + "/nowhere", timeout=10).status_code == 401  # auth first


def _through(app: object) -> tuple[str, list[tuple[str, str]], bytes]:
    """One GET /x through routeerrors in front of `app` (no route table): its reply."""
    got: list[tuple[str, list[tuple[str, str]]]] = []
    body = routeerrors.serve(app, {"REQUEST_METHOD": "GET", "PATH_INFO": "/x"},
                             lambda status, headers: got.append((status, headers)))
    return got[-1][0], got[-1][1], b"".join(body)


def test_an_app_that_writes_or_starts_lazily_is_passed_through() -> None:
    """A reply begun with WSGI's `write`, or started only when its body is iterated, keeps
    its status and every byte; a lazy text/plain 404 still becomes the JSON one."""
    def writer(environ: object, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])(b"a")
        return [b"b"]

    def lazy(status: str) -> Any:
        def app(environ: object, start_response: Any) -> Iterator[bytes]:
            start_response(status, [("Content-Type", "text/plain")])
            yield b"c"
        return app

    assert _through(writer)[::2] == ("200 OK", b"ab")
    assert _through(lazy("201 Created"))[::2] == ("201 Created", b"c")
    status, headers, body = _through(lazy("404 Not Found"))
    assert (status, json.loads(body)) == ("404 Not Found", {"error": "no such resource: /x",
                                                            "field": "path"})
    assert ("Content-Type", "application/json") in headers

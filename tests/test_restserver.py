"""The hardened REST server, over real sockets: keep-alive and its limits, deadlines, connection
caps, body limits, HTTPS."""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SERVER = """
import json, sys
from apps import compat
compat.monkey_patch(thread=True)
import eventlet
from apps.restserver import RestServer, ServerSettings
from controller.channel import Listen, TlsFiles

def app(environ, start_response):
    body = environ["wsgi.input"].read()
    if environ["PATH_INFO"] == "/slow":
        eventlet.sleep(2.5)
    if "HTTP_X_WHERE" in environ:  # where the request went
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps([environ["PATH_INFO"], environ.get("QUERY_STRING") or ""]).encode()]
    if environ["PATH_INFO"] == "/type":
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(environ.get("CONTENT_TYPE")).encode()]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"len": len(body)}).encode()]

tls = json.loads(sys.argv[1])
limits = dict(request_timeout_s=2.0, max_connections=6, max_connections_per_client=3,
              max_body_bytes=1024, keepalive_idle_s=1.0, max_requests_per_connection=3)
limits.update(json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
settings = ServerSettings(tls=TlsFiles(**tls) if tls else None, **limits)
server = RestServer(app, Listen("127.0.0.1", 0), settings)
print(server.port, flush=True)
server.serve_forever()
"""


def _start(tls: dict[str, str] | None,
           limits: dict[str, float] | None = None) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER, json.dumps(tls),
                             json.dumps(limits or {})],
                            stdout=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    """A plain-HTTP server: 2 s request deadline, 1 s idle, 3 requests a connection,
    6 connections (3 per client), 1 KiB bodies."""
    proc, port = _start(None)
    yield port
    proc.terminate()
    proc.wait(10)


def _request(port: int, raw: bytes, timeout: float = 5.0,
             source: str = "127.0.0.1") -> bytes:
    """One request on a new connection; its answer (read by its Content-Length)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0)) as sock:
        sock.sendall(raw)
        return _read_reply(sock)


def _read_reply(sock: socket.socket) -> bytes:
    """One HTTP answer, head and body, read by its Content-Length (the connection stays)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    found = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    assert found, head
    while len(body) < int(found.group(1)):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        body += chunk
    return head + b"\r\n\r\n" + body


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _post(path: str, body: bytes, headers: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{headers}\r\n").encode() + body


def test_a_request_within_the_limits_is_served(port: int) -> None:
    """A small POST is answered 200 with its body read."""
    reply = _request(port, _post("/x", b'{"a": 1}'))
    assert reply.startswith(b"HTTP/1.1 200"), reply
    assert reply.endswith(b'{"len": 8}')


def test_a_content_type_not_sent_reaches_the_app_as_none(port: int) -> None:
    """eventlet filled in text/plain for a request without a Content-Type, and the gate's 415
    then said "got 'text/plain'" to a client that sent none; the type sent is passed on."""
    reply = _request(port, b"POST /type HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
    assert reply.partition(b"\r\n\r\n")[2] == b'""', reply
    reply = _request(port, _post("/type", b"{}"))
    assert reply.partition(b"\r\n\r\n")[2] == b'"application/json"', reply


def test_an_oversized_body_is_refused_by_its_length_before_it_is_sent(port: int) -> None:
    """Content-Length over the limit: 413 at once, without the server waiting for the body,
    and the connection closed (what follows is the unread body, not a request)."""
    head = (b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n")
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        reply = _read_all(sock)
    assert reply.startswith(b"HTTP/1.1 413"), reply
    assert b"max_body_bytes" in reply and b"Connection: close" in reply
    assert time.monotonic() - started < 1.5  # answered well before the 2 s deadline


def test_a_body_without_a_length_gets_411_and_the_connection_closes(port: int) -> None:
    """Chunked transfer (a body of unknown length) is refused with 411, then closed."""
    raw = b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        assert _read_all(sock).startswith(b"HTTP/1.1 411")


@pytest.mark.parametrize(("head", "status", "field"), [
    (b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
     400, "Content-Length"),
    (b"POST /x HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\n{}",
     400, "headers"),
    (b"GET /x HTTP/2.0\r\nHost: x\r\n\r\n", 505, "request line"),
    (b"GET /x HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 9000 + b"\r\n\r\n", 431, "headers"),
    # eventlet answered these itself: a text/plain 400 without a field, an empty 414
    (b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked"
     b"\r\n\r\n0\r\n\r\n", 400, "Transfer-Encoding"),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "request line"),
    # RFC 9112 3.2: an HTTP/1.1 request without Host gets 400 (it was served)
    (b"GET /x HTTP/1.1\r\n\r\n", 400, "Host"),
    (b"GET http://x/x HTTP/1.1\r\n\r\n", 400, "Host"),
])
def test_a_bad_head_gets_its_4xx_naming_the_field_and_the_connection_closes(
        port: int, head: bytes, status: int, field: str) -> None:
    """A duplicate Content-Length, an obs-fold, an HTTP version past 1.x, a header line over
    the limit, a length and a transfer coding at once (RFC 9112 6.1: a smuggling vector), a
    request line over eventlet's limit: refused with JSON naming the field
    (apps/httphead.py), the connection closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        reply = _read_all(sock)
    assert reply.startswith(b"HTTP/1.1 %d" % status), reply
    assert b"Connection: close" in reply
    assert json.loads(reply.partition(b"\r\n\r\n")[2])["field"] == field


@pytest.mark.parametrize(("target", "path", "query"), [
    ("http://x:8080/where?a=1", "/where", "a=1"),
    ("HTTPS://x/where", "/where", ""),
    ("http://x", "/", ""),
    ("http://x?a", "/", "a"),
    ("//where", "/where", ""),  # a path, never //host/path
    ("/where?b", "/where", "b")])
def test_an_absolute_form_target_is_served_as_its_path(port: int, target: str, path: str,
                                                        query: str) -> None:
    """RFC 9112 3.2.2: a server accepts the absolute-form (`http://host/path`); it names the
    path it holds (it was a 404: the whole URL was taken for the path). An HTTP/1.0 request
    needs no Host."""
    for version, host in (("1.1", "Host: x\r\n"), ("1.0", "")):
        reply = _request(port, f"GET {target} HTTP/{version}\r\n{host}X-Where: 1\r\n\r\n"
                         .encode())
        assert reply.startswith(b"HTTP/1.1 200"), reply
        assert json.loads(reply.partition(b"\r\n\r\n")[2]) == [path, query]


def test_a_kept_alive_connection_serves_a_second_request_after_a_lf_only_head(port: int) -> None:
    """Lines ended by a bare LF are read (RFC 9112 2.2), and the connection stays usable."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /x HTTP/1.1\nHost: x\nContent-Length: 2\n\n{}")
        assert _read_reply(sock).endswith(b'{"len": 2}')
        sock.sendall(_post("/x", b"[1]"))
        assert _read_reply(sock).endswith(b'{"len": 3}')


def _seconds_until_closed(sock: socket.socket, trickle: bytes, most: float) -> float | None:
    """Send `trickle` a byte every 0.1 s until the server closes the connection: the seconds
    that took (None: still open after `most` s)."""
    started = time.monotonic()
    sock.settimeout(0.1)
    for k in range(int(most / 0.1)):
        try:
            sock.sendall(trickle[k % len(trickle):][:1])
            if sock.recv(1024) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass
        except OSError:
            return time.monotonic() - started
    return None


def test_a_request_that_never_finishes_is_dropped_after_the_deadline(port: int) -> None:
    """Slowloris: a header trickled byte by byte is cut off request_timeout_s after its first
    byte, and meanwhile other clients are served at once."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /x HTTP/1.1\r\n")
        started = time.monotonic()
        reply = _request(port, _post("/x", b"{}"), source="127.0.0.9")
        assert reply.startswith(b"HTTP/1.1 200") and time.monotonic() - started < 0.5
        took = _seconds_until_closed(sock, b"X", 6.0)
        elapsed = time.monotonic() - started
    assert took is not None, "the server still held a request trickled for 6 s"
    assert 1.5 < elapsed < 3.5, elapsed


def test_a_slow_request_on_a_kept_alive_connection_is_cut_too(port: int) -> None:
    """Keep-alive does not lift the deadline: the second request on a connection, trickled,
    is cut request_timeout_s after its first byte like the first would be."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(_post("/x", b"{}"))
        assert _read_reply(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /x HTTP/1.1\r\n")
        took = _seconds_until_closed(sock, b"X", 6.0)
    assert took is not None and 1.5 < took < 3.5, took


def test_a_body_that_never_comes_gets_408_after_the_deadline(port: int) -> None:
    """A Content-Length promised but never sent does not hold the connection: 408, closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
        reply = _read_all(sock)
        assert 1.5 < time.monotonic() - started < 3.5
    assert reply.startswith(b"HTTP/1.1 408"), reply
    assert b"request_timeout_s" in reply and b"Connection: close" in reply


def test_the_handler_is_not_cut_by_the_read_deadline(port: int) -> None:
    """Once the request is read, a handler slower than the deadline still answers."""
    assert _request(port, _post("/slow", b"{}")).startswith(b"HTTP/1.1 200")


def test_a_connection_carries_several_requests_up_to_its_limit(port: int) -> None:
    """Keep-alive: requests 1 and 2 on one connection are answered and it stays open; the 3rd
    (max_requests_per_connection) is answered with Connection: close, then it is closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for k in range(3):
            sock.sendall(_post("/x", b'{"k": %d}' % k))
            reply = _read_reply(sock)
            assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b'{"len": 8}'), reply
            assert (b"Connection: close" in reply) == (k == 2), reply
        assert sock.recv(1024) == b""


def test_an_idle_kept_alive_connection_is_closed_after_the_idle_timeout(port: int) -> None:
    """After its answer a connection waits keepalive_idle_s (1 s) for the next request, no
    longer; one that asks again in time is served."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(_post("/x", b"{}"))
        assert _read_reply(sock).startswith(b"HTTP/1.1 200")
        time.sleep(0.5)
        sock.sendall(_post("/x", b"{}"))
        assert _read_reply(sock).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert sock.recv(1024) == b""
        assert 0.7 < time.monotonic() - started < 2.5


def test_keepalive_idle_zero_serves_one_request_per_connection() -> None:
    """keepalive_idle_s = 0: the answer says Connection: close and the connection closes,
    HTTP/1.1 or not."""
    proc, port = _start(None, {"keepalive_idle_s": 0})
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(_post("/x", b"{}"))
            reply = _read_all(sock)
        assert reply.startswith(b"HTTP/1.1 200") and b"Connection: close" in reply, reply
    finally:
        proc.terminate()
        proc.wait(10)


def _busy(port: int, source: str) -> socket.socket:
    """A connection in the middle of a request (its first line sent, the headers not)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    sock.sendall(b"GET /x HTTP/1.1\r\n")
    return sock


def test_idle_connections_at_the_per_client_cap_make_room(port: int) -> None:
    """3 idle connections from one address (the cap): a 4th is served and the connection idle
    longest is closed; 3 connections in the middle of requests: the 4th gets 503."""
    held = []
    try:
        for _ in range(3):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=5,
                                                 source_address=("127.0.0.5", 0)))
            held[-1].sendall(_post("/x", b"{}"))
            assert _read_reply(held[-1]).startswith(b"HTTP/1.1 200")
        assert _request(port, _post("/x", b"{}"), source="127.0.0.5").startswith(
            b"HTTP/1.1 200")
        assert held[0].recv(1024) == b""  # the oldest idle one made room
        for sock in held[1:]:
            sock.sendall(_post("/x", b"{}"))
            assert _read_reply(sock).startswith(b"HTTP/1.1 200")
    finally:
        for sock in held:
            sock.close()
    busy = [_busy(port, "127.0.0.6") for _ in range(3)]
    try:
        time.sleep(0.2)
        reply = _request(port, _post("/x", b"{}"), source="127.0.0.6")
        assert reply.startswith(b"HTTP/1.1 503"), reply
        assert b"max_connections_per_client" in reply
    finally:
        for sock in busy:
            sock.close()
    time.sleep(0.2)
    assert _request(port, _post("/x", b"{}"), source="127.0.0.6").startswith(b"HTTP/1.1 200")


def test_a_burst_of_new_connections_gets_answers_or_503_never_a_close(port: int) -> None:
    """Twelve connections from one address (cap 3), each sending its request as it opens:
    every one gets an answer, 200 or 503; none is closed unanswered to make room. Before, a
    new connection counted as idle from its accept, before its request was read, and the
    burst closed most of them with nothing said."""
    socks = []
    try:
        for _ in range(12):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5,
                                            source_address=("127.0.0.8", 0))
            sock.sendall(_post("/x", b"{}", "Connection: close\r\n"))
            socks.append(sock)
        replies = [_read_all(sock) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    status = [r[:12] for r in replies]
    assert all(s in (b"HTTP/1.1 200", b"HTTP/1.1 503") for s in status), status
    assert status.count(b"HTTP/1.1 200") >= 3, status


def test_a_new_connection_silent_past_the_grace_makes_room(port: int) -> None:
    """Three connections from one address that send nothing: within the grace a fourth is
    refused (their requests may be on their way); past it (0.5 s) one of them is closed and
    the new one is served."""
    silent = [socket.create_connection(("127.0.0.1", port), timeout=5,
                                       source_address=("127.0.0.9", 0)) for _ in range(3)]
    try:
        time.sleep(0.1)
        first = _request(port, _post("/x", b"{}"), source="127.0.0.9")
        assert first.startswith(b"HTTP/1.1 503"), first
        time.sleep(0.6)
        assert _request(port, _post("/x", b"{}"), source="127.0.0.9").startswith(
            b"HTTP/1.1 200")
        silent[0].settimeout(0.2)
        assert silent[0].recv(1024) == b""  # the one silent longest made room
    finally:
        for sock in silent:
            sock.close()


def test_idle_connections_at_the_total_cap_do_not_keep_a_new_client_out(port: int) -> None:
    """6 idle kept-alive connections from two addresses fill the server: a new client is
    served all the same; 6 connections in the middle of requests: the next one gets 503."""
    held = []
    try:
        for source in ("127.0.0.2", "127.0.0.3"):
            for _ in range(3):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5,
                                                source_address=(source, 0))
                sock.sendall(_post("/x", b"{}"))
                assert _read_reply(sock).startswith(b"HTTP/1.1 200")
                held.append(sock)
        for k in range(3):
            reply = _request(port, _post("/x", b"{}"), source=f"127.0.0.{4 + k}")
            assert reply.startswith(b"HTTP/1.1 200"), reply
        assert [sock.recv(1024) for sock in held[:3]] == [b""] * 3  # the oldest idle ones
    finally:
        for sock in held:
            sock.close()
    busy = [_busy(port, source) for source in ("127.0.0.2", "127.0.0.3") for _ in range(3)]
    try:
        time.sleep(0.2)
        reply = _request(port, _post("/x", b"{}"), source="127.0.0.4")
        assert reply.startswith(b"HTTP/1.1 503") and b"max_connections" in reply
    finally:
        for sock in busy:
            sock.close()


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(folder: Path, names: tuple[str, ...]) -> dict[str, Path]:
    """A test CA and, for each name, a key and a certificate it signed (openssl CLI)."""
    out = {"ca": folder / "ca.pem", "ca_key": folder / "ca.key"}
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=dyncast test CA", "-keyout", str(out["ca_key"]), "-out", str(out["ca"]))
    for name in names:
        key, csr, cert = (folder / f"{name}.{ext}" for ext in ("key", "csr", "pem"))
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", str(key), "-out", str(csr))
        ext = folder / f"{name}.ext"
        ext.write_text("subjectAltName = IP:127.0.0.1\n")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(out["ca"]), "-CAkey",
                 str(out["ca_key"]), "-CAcreateserial", "-days", "2", "-out", str(cert),
                 "-extfile", str(ext))
        out[name], out[f"{name}_key"] = cert, key
    return out


def test_https_with_a_test_ca_and_client_certificates(tmp_path: Path) -> None:
    """With rest_cert/rest_key/rest_client_ca: HTTPS works (kept alive, closed when idle) for
    a client the CA signed, and a client without a certificate is refused."""
    pki = make_ca(tmp_path, ("server", "client"))
    proc, port = _start({"cert": str(pki["server"]), "key": str(pki["server_key"]),
                         "ca": str(pki["ca"])})
    try:
        ctx = ssl.create_default_context(cafile=str(pki["ca"]))
        ctx.load_cert_chain(str(pki["client"]), str(pki["client_key"]))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            for _ in range(2):  # kept alive over TLS too
                sock.sendall(_post("/x", b"{}"))
                assert _read_reply(sock).startswith(b"HTTP/1.1 200")
            started = time.monotonic()
            assert sock.recv(1024) == b""  # closed once idle keepalive_idle_s
            assert 0.7 < time.monotonic() - started < 2.5
        anonymous = ssl.create_default_context(cafile=str(pki["ca"]))
        with pytest.raises((ssl.SSLError, ConnectionError)), \
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                anonymous.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(_post("/x", b"{}"))
            _read_all(sock)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(_post("/x", b"{}"))  # plain HTTP to the HTTPS port: no answer
            try:
                answer = _read_all(sock)
            except ConnectionResetError:
                answer = b""
            assert not answer.startswith(b"HTTP/1.1 200")
    finally:
        proc.terminate()
        proc.wait(10)


def test_bytes_waiting_tells_a_request_on_its_way_from_an_idle_or_closed_socket() -> None:
    """What `_close_idle` looks at before it closes a connection: bytes waiting on it (a
    request that has come, not yet read) spare it; none, or its peer gone, do not."""
    from apps.restconns import _bytes_waiting

    ours, theirs = socket.socketpair()
    try:
        ours.setblocking(False)
        assert not _bytes_waiting(ours)
        theirs.sendall(b"GET / HTTP/1.1\r\n")
        time.sleep(0.05)
        assert _bytes_waiting(ours) and _bytes_waiting(ours)  # a peek: still there
        assert ours.recv(64) == b"GET / HTTP/1.1\r\n"
        theirs.close()
        time.sleep(0.05)
        assert not _bytes_waiting(ours)
    finally:
        ours.close()
        theirs.close()

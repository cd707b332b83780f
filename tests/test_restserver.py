"""The hardened REST server, over real sockets: deadlines, connection caps, body limits, HTTPS."""

from __future__ import annotations

import json
import os
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
        eventlet.sleep(1.5)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"len": len(body)}).encode()]

tls = json.loads(sys.argv[1])
settings = ServerSettings(request_timeout_s=1.0, max_connections=6,
                          max_connections_per_client=3, max_body_bytes=1024,
                          tls=TlsFiles(**tls) if tls else None)
server = RestServer(app, Listen("127.0.0.1", 0), settings)
print(server.port, flush=True)
server.serve_forever()
"""


def _start(tls: dict[str, str] | None) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER, json.dumps(tls)],
                            stdout=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    """A plain-HTTP server with 1 s deadline, 6 connections (3 per client), 1 KiB bodies."""
    proc, port = _start(None)
    yield port
    proc.terminate()
    proc.wait(10)


def _request(port: int, raw: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        return _read_all(sock)


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


def test_an_oversized_body_is_refused_by_its_length_before_it_is_sent(port: int) -> None:
    """Content-Length over the limit: 413 at once, without the server waiting for the body."""
    head = (b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n")
    started = time.monotonic()
    reply = _request(port, head)
    assert reply.startswith(b"HTTP/1.1 413"), reply
    assert b"max_body_bytes" in reply
    assert time.monotonic() - started < 0.9  # answered before the 1 s deadline


def test_a_body_without_a_length_gets_411(port: int) -> None:
    """Chunked transfer (a body of unknown length) is refused with 411."""
    raw = b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    assert _request(port, raw).startswith(b"HTTP/1.1 411")


def test_a_request_that_never_finishes_is_dropped_after_the_deadline(port: int) -> None:
    """Slowloris: a header trickled byte by byte is cut off after request_timeout_s."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /x HTTP/1.1\r\n")
        closed = False
        for _ in range(40):
            try:
                sock.sendall(b"X")
            except OSError:
                closed = True
                break
            sock.settimeout(0.1)
            try:
                if sock.recv(1024) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
        assert closed, "the server still held a request trickled for 4 s"
        assert 0.9 < time.monotonic() - started < 3.0


def test_a_body_that_never_comes_is_dropped_after_the_deadline(port: int) -> None:
    """A Content-Length promised but never sent does not hold the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
        _read_all(sock)
        assert 0.9 < time.monotonic() - started < 3.0


def test_the_handler_is_not_cut_by_the_read_deadline(port: int) -> None:
    """Once the request is read, a handler slower than the deadline still answers."""
    assert _request(port, _post("/slow", b"{}")).startswith(b"HTTP/1.1 200")


def test_connections_past_the_per_client_cap_are_refused_and_others_served(port: int) -> None:
    """3 idle connections from one address: the 4th gets 503; when they go, service resumes."""
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    try:
        time.sleep(0.2)
        reply = _request(port, _post("/x", b"{}"))
        assert reply.startswith(b"HTTP/1.1 503"), reply
        assert b"max_connections_per_client" in reply
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    assert _request(port, _post("/x", b"{}")).startswith(b"HTTP/1.1 200")


def test_connections_past_the_total_cap_are_refused(port: int) -> None:
    """6 idle connections from two addresses fill the server; the next one gets 503."""
    held = []
    try:
        for source in ("127.0.0.2", "127.0.0.3"):
            for _ in range(3):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5,
                                                source_address=(source, 0))
                held.append(sock)
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", port), timeout=5,
                                      source_address=("127.0.0.4", 0)) as sock:
            sock.sendall(_post("/x", b"{}"))
            reply = _read_all(sock)
        assert reply.startswith(b"HTTP/1.1 503") and b"max_connections" in reply
    finally:
        for sock in held:
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
    """With rest_cert/rest_key/rest_client_ca: HTTPS works for a client the CA signed, and a
    client without a certificate is refused."""
    pki = make_ca(tmp_path, ("server", "client"))
    proc, port = _start({"cert": str(pki["server"]), "key": str(pki["server_key"]),
                         "ca": str(pki["ca"])})
    try:
        ctx = ssl.create_default_context(cafile=str(pki["ca"]))
        ctx.load_cert_chain(str(pki["client"]), str(pki["client_key"]))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(_post("/x", b"{}"))
            assert _read_all(sock).startswith(b"HTTP/1.1 200")
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

"""The clients' kept-alive connection (agents/httpconn.py) and the D-MA on it against the real
REST server and gate: connections are reused; a connection the server closed (idle, at its
request limit, restarted) costs a new one and never a report or a replay refusal; a retried
signed request is signed again."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agents import keys
from agents.demo_service import ServiceConfig, ServiceServer
from agents.httpconn import AnswerTooLarge, Connection
from agents.signing import Signer

REPO = Path(__file__).resolve().parent.parent

# ---- Connection against a scripted server ------------------------------------------------------


def _answer(body: bytes = b"{}") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


class Scripted:
    """A loopback server that handles its k-th connection with `plan[k]`, recording every
    request's head."""

    def __init__(self, plan: list[Callable[[socket.socket, Scripted], None]]) -> None:
        self.plan, self.heads = plan, []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/dyncast/v1"
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        for step in self.plan:
            conn, _ = self.listener.accept()
            with conn:
                step(conn, self)

    def read_request(self, conn: socket.socket) -> bool:
        """Read one request (no body) and record its head; False if the client closed."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            data += chunk
        self.heads.append(data.decode())
        return True


def _seq(head: str) -> int:
    line = next(x for x in head.split("\r\n") if x.lower().startswith("x-dyncast-seq:"))
    return int(line.split(":", 1)[1])


def test_a_request_that_meets_a_closed_connection_is_signed_again_and_sent_once_more(
        tmp_path: Path) -> None:
    """The server answers a first request, then reads the second and closes without an
    answer: the client opens a new connection and sends it again with a new, higher sequence
    (the same signature twice would be refused as a replay)."""
    def first(conn: socket.socket, srv: Scripted) -> None:
        assert srv.read_request(conn)
        conn.sendall(_answer())
        assert srv.read_request(conn)  # then closed: no answer

    def second(conn: socket.socket, srv: Scripted) -> None:
        assert srv.read_request(conn)
        conn.sendall(_answer(b'{"ok": 1}'))

    srv = Scripted([first, second])
    keys.add_agent(tmp_path / "agents.toml", tmp_path / "a.key", "dma-a", ["10.0.0.0/8"])
    signer = Signer.from_file(tmp_path / "a.key")
    link = Connection(srv.url, 5.0)

    def signed() -> dict[str, str]:
        return signer.headers("GET", "/dyncast/v1/x", b"")

    assert link.request("GET", "/x", None, signed) == (200, b"{}")
    assert link.request("GET", "/x", None, signed) == (200, b'{"ok": 1}')
    assert link.opened == 2 and len(srv.heads) == 3
    assert srv.heads[0].startswith("GET /dyncast/v1/x HTTP/1.1")
    assert _seq(srv.heads[0]) < _seq(srv.heads[1]) < _seq(srv.heads[2])


def test_a_new_connection_that_fails_is_not_retried() -> None:
    """A connection closed before its first answer is an error for the caller, sent once."""
    def close_at_once(conn: socket.socket, srv: Scripted) -> None:
        srv.read_request(conn)

    srv = Scripted([close_at_once, close_at_once])
    link = Connection(srv.url, 5.0)
    with pytest.raises(ConnectionError):
        link.request("POST", "/metrics", b"{}")
    time.sleep(0.1)
    assert len(srv.heads) == 1 and link.opened == 1


def test_answers_are_bounded_and_connections_reused() -> None:
    """Two answers on one connection; an answer past `max_answer` raises and drops it."""
    def serve(conn: socket.socket, srv: Scripted) -> None:
        assert srv.read_request(conn)
        conn.sendall(_answer(b"a" * 10))
        assert srv.read_request(conn)
        conn.sendall(_answer(b"b" * 100))
        srv.read_request(conn)

    link = Connection(Scripted([serve]).url, 5.0, max_answer=50)
    assert link.request("GET", "/x") == (200, b"a" * 10)
    with pytest.raises(AnswerTooLarge):
        link.request("GET", "/x")
    assert link.opened == 1


# ---- the D-MA against the real server and gate ------------------------------------------------

SERVER = """
import json, sys, time
from pathlib import Path
from apps import compat
compat.monkey_patch(thread=True)
from apps.restserver import RestServer, ServerSettings
from apps.security import Gate, install
from controller.api import Api
from controller.auth.settings import SecuritySettings
from controller.channel import Listen
from controller.config import ControllerConfig
from controller.core import Core
from controller.model import service_from_dict

tmp, port = Path(sys.argv[1]), int(sys.argv[2])
settings = SecuritySettings(agents_file=str(tmp / "agents.toml"))
core = Core(ControllerConfig(security=settings))
core.put_service(service_from_dict({"name": "svc1", "dsid": "10.0.100.1", "protocol": "tcp",
                                    "port": 8000}), create=True, now=time.time())
api = Api(core)
seqs = tmp / "seqs.json"  # each agent's last sequence, kept across restarts as the store does
log = open(tmp / "requests.log", "a", buffering=1)

class App:
    def __call__(self, environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        reply = api.handle(environ["REQUEST_METHOD"], environ["PATH_INFO"], body, time.time())
        start_response(f"{reply.status} X", [("Content-Type", "application/json")])
        return [json.dumps(reply.body).encode()]

def persist(agent, seq, key):
    known = json.loads(seqs.read_text()) if seqs.exists() else {}
    seqs.write_text(json.dumps({**known, agent: seq}))

app = App()
install(app, core.config, lambda: core.catalogue.instances,
        json.loads(seqs.read_text()) if seqs.exists() else {}, persist)
gate = Gate(app)

def logged(environ, start_response):
    def answer(status, headers, exc_info=None):
        log.write(f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']} {status.split()[0]} "
                  f"{environ['REMOTE_PORT']}\\n")
        return start_response(status, headers, exc_info)
    return gate(environ, answer)

server = RestServer(logged, Listen("127.0.0.1", port),
                    ServerSettings(keepalive_idle_s=0.8, max_requests_per_connection=5))
print(server.port, flush=True)
server.serve_forever()
"""


def _serve(tmp: Path, port: int) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(tmp), str(port)],
                            stdout=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def _log(tmp: Path) -> list[tuple[str, str, int, int]]:
    """(method, path, status, client port) of every request the server answered."""
    path = tmp / "requests.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(m, p, int(s), int(c)) for m, p, s, c in (x.split() for x in lines)]


def _wait(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def stats_port() -> Iterator[int]:
    """A demo instance whose /stats the D-MA reads."""
    server = ServiceServer(ServiceConfig(name="svc", dbid="127.0.0.1", port=0, capacity=3))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server.server_port
    server.shutdown()
    server.server_close()


def test_the_dma_keeps_reporting_across_idle_closes_request_limits_and_a_restart(
        tmp_path: Path, stats_port: int) -> None:
    """One D-MA (signed calls) against the real server: reports share connections (at most 5
    each, the server's limit); stopped longer than the idle timeout, its next report still
    gets through without an error; after the server restarts (sequences kept) it registers
    again and reports; no call is ever refused 401."""
    keys.add_agent(tmp_path / "agents.toml", tmp_path / "dma.key", "dma-e2", ["10.0.0.0/8"])
    server, port = _serve(tmp_path, 0)
    with open(tmp_path / "dma.err", "w") as err:
        dma = subprocess.Popen(
            [sys.executable, "-m", "agents.dma", "--controller", f"http://127.0.0.1:{port}",
             "--name", "dma-e2", "--key-file", str(tmp_path / "dma.key"), "--instance",
             f"10.0.100.1=10.0.0.21@http://127.0.0.1:{stats_port}/stats", "--interval", "0.2",
             "--min-interval", "0.1", "--threshold", "0"],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL, stderr=err)

    def reports() -> list[tuple[str, str, int, int]]:
        return [r for r in _log(tmp_path) if r[1] == "/dyncast/v1/metrics"]

    try:
        _wait("8 reports", lambda: len(reports()) >= 8)
        per_conn = Counter(r[3] for r in _log(tmp_path))
        assert max(per_conn.values()) > 1, per_conn  # kept alive
        assert max(per_conn.values()) <= 5, per_conn  # max_requests_per_connection
        dma.send_signal(signal.SIGSTOP)
        time.sleep(1.5)  # the server closes its idle connection after 0.8 s
        before = len(reports())
        dma.send_signal(signal.SIGCONT)
        _wait("a report after the idle close", lambda: len(reports()) > before + 2)
        assert "unreachable" not in (tmp_path / "dma.err").read_text()
        server.terminate()
        server.wait(10)
        before = len(reports())
        server, _ = _serve(tmp_path, port)
        _wait("reports after the restart", lambda: len(reports()) > before + 3)
        assert dma.poll() is None
    finally:
        dma.terminate()
        dma.wait(10)
        server.terminate()
        server.wait(10)
    answered = _log(tmp_path)
    assert not [r for r in answered if r[2] == 401], answered
    assert [r[2] for r in reports()].count(200) >= len(reports()) - 1  # one 404 at the restart
    assert "401" not in (tmp_path / "dma.err").read_text()

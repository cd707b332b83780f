"""An agent's signature covers the request target exactly as it was sent, over HTTP through the
real server (apps/restserver.py) and gate: a target that decodes to the same path
(`%2F` for `/`, an escaped letter, a doubled leading slash) or carries a query is another
request, and a signature made for one never admits the other. The real D-MA and dyncastctl,
which sign what they send, still get in."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agents import dyncastctl
from agents.dma.wire import controller_call, controller_link
from agents.signing import Signer
from tests.test_restserver import _read_reply
from tests.test_security_gate import REG

REPO = Path(__file__).resolve().parent.parent
SERVER = """
import sys
from pathlib import Path
from apps import compat
compat.monkey_patch(thread=True)
from apps.restserver import RestServer, ServerSettings
from controller.channel import Listen
from tests.test_security_gate import Lab

lab = Lab(Path(sys.argv[1]))
server = RestServer(lab.gate, Listen("127.0.0.1", 0), ServerSettings())
print(server.port, flush=True)
server.serve_forever()
"""
REPORT = {"dbid": "10.0.0.21", "cpu": 0.25, "sessions": 1, "queue": 0, "capacity": 10}


@dataclass
class Served:
    """The server's address and the agent's key."""

    port: int
    tmp: Path
    signer: Signer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """The gate in front of a real Api (tests/test_security_gate.Lab) behind our server."""
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(tmp_path)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None
    try:
        port = int(proc.stdout.readline())
        yield Served(port, tmp_path, Signer.from_file(tmp_path / "dma-e2.key"))
    finally:
        proc.terminate()
        proc.wait(10)


def _send(served: Served, method: str, target: str, signed: str, body: object = None
          ) -> tuple[int, dict[str, object]]:
    """Send `method target` as raw bytes, signed by the agent over `signed`: (status, JSON)."""
    raw = b"" if body is None else json.dumps(body).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in
                   served.signer.headers(method, signed, raw).items())
    if raw:
        head += "Content-Type: application/json\r\n"
    request = (f"{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{head}"
               f"Content-Length: {len(raw)}\r\n\r\n").encode() + raw
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(request)
        reply = _read_reply(sock)
    head_bytes, _, data = reply.partition(b"\r\n\r\n")
    return int(head_bytes.split()[1]), json.loads(data)


def _register(served: Served) -> None:
    assert _send(served, "POST", "/dyncast/v1/instances", "/dyncast/v1/instances",
                 REG)[0] == 201


@pytest.mark.parametrize(("sent", "signed"), [
    ("/dyncast/v1%2Fmetrics", "/dyncast/v1/metrics"),
    ("/dyncast/v1/metrics", "/dyncast/v1%2Fmetrics"),
    ("/dyncast/v1/%6Detrics", "/dyncast/v1/metrics"),
    ("/dyncast/v1/metrics", "/dyncast/v1/%6detrics"),
    ("/dyncast/v1/%6Detrics", "/dyncast/v1/%6detrics"),
    ("//dyncast/v1/metrics", "/dyncast/v1/metrics"),
    ("/dyncast/v1/metrics?x=1", "/dyncast/v1/metrics"),
    ("/dyncast/v1/metrics?", "/dyncast/v1/metrics"),
    ("/dyncast/v1/metrics", "/dyncast/v1/metrics?x=1")])
def test_a_signature_admits_only_the_target_it_was_made_for(served: Served, sent: str,
                                                            signed: str) -> None:
    """A report signed over one spelling of the path and sent with another is 401 naming the
    signature; the same report signed over what is sent is admitted."""
    _register(served)
    status, body = _send(served, "POST", sent, signed, REPORT)
    assert (status, body["field"]) == (401, "X-Dyncast-Signature"), body
    status, body = _send(served, "POST", sent, sent, REPORT)
    assert status == 200, body


def test_a_withdrawal_signed_for_another_spelling_is_refused(served: Served) -> None:
    """DELETE /instances/10%2E0.0.21 decodes to the D-BID the agent signed a withdrawal for:
    refused, and the instance stays (withdrawn by the signature over what is sent)."""
    _register(served)
    escaped, plain = "/dyncast/v1/instances/10%2E0.0.21", "/dyncast/v1/instances/10.0.0.21"
    assert _send(served, "DELETE", escaped, plain) == (401, _send_error())
    assert _send(served, "DELETE", plain, escaped)[0] == 401
    status, body = _send(served, "DELETE", escaped, escaped)
    assert status == 200, body
    assert _send(served, "DELETE", plain, plain)[0] == 404


def _send_error() -> dict[str, object]:
    return {"error": "X-Dyncast-Signature: does not match the request and the agent's key",
            "field": "X-Dyncast-Signature"}


def test_the_real_dma_and_dyncastctl_still_authenticate(served: Served) -> None:
    """The D-MA's kept-alive link and dyncastctl's agent calls sign the targets they send:
    registration, a report and withdrawal are admitted by our server."""
    link = controller_link(served.url)
    assert controller_call(link, "POST", "/instances", REG, served.signer).status == 201
    assert controller_call(link, "POST", "/metrics", REPORT, served.signer).status == 200
    assert controller_call(link, "DELETE", "/instances/10.0.0.21", None,
                           served.signer).status == 200
    assert controller_call(link, "POST", "/instances", REG).status == 401
    assert dyncastctl.main(["--controller", served.url, "--key-file",
                            str(served.tmp / "dma-e2.key"), "withdraw",
                            "10.0.0.21"]) == 1  # signed and admitted: the API's 404

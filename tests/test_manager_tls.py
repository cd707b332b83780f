"""dyncast-manager's TLS fix: one context for every switch, failures end one connection only."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from apps.manager import fix_tls


class FakeContext:
    """An SSLContext that records what it loaded and wraps sockets as tuples."""

    def __init__(self) -> None:
        self.loaded: list[tuple[str, ...]] = []
        self.verify_mode = 0

    def load_cert_chain(self, cert: str, key: str) -> None:
        self.loaded.append(("chain", cert, key))

    def load_verify_locations(self, ca: str) -> None:
        self.loaded.append(("ca", ca))

    def wrap_socket(self, sock: Any, **kwargs: Any) -> Any:
        return ("tls", sock, tuple(sorted(kwargs)))


class FakeSocket:
    """A socket that knows whether it was closed."""

    closed = False

    def close(self) -> None:
        self.closed = True


def _hub() -> Any:
    """A framework hub whose StreamServer keeps its handler as the frameworks' do (buggy)."""

    class StreamServer:
        def __init__(self, listen_info: Any, handle: Any = None, backlog: Any = None,
                     spawn: Any = "default", **ssl_args: Any) -> None:
            self.handle = handle
            self.ssl_args = ssl_args

    return SimpleNamespace(StreamServer=StreamServer)


def test_every_connection_is_wrapped_with_the_one_context() -> None:
    """Two switches in a row both get a TLS socket from the context loaded once."""
    hub, ctx, seen = _hub(), FakeContext(), []
    fix_tls(hub)
    server = hub.StreamServer(("127.0.0.1", 6653), lambda s, a: seen.append(s), ssl_ctx=ctx,
                              certfile="c.pem", keyfile="k.pem", cert_reqs=2, ca_certs="ca.pem")
    server.handle("sock1", ("127.0.0.1", 1))
    server.handle("sock2", ("127.0.0.1", 2))
    assert seen == [("tls", "sock1", ("server_side",)), ("tls", "sock2", ("server_side",))]
    assert ctx.loaded == [("chain", "c.pem", "k.pem"), ("ca", "ca.pem")]
    assert ctx.verify_mode == 2


def test_a_failed_connection_is_logged_and_closed_not_raised(
        caplog: pytest.LogCaptureFixture) -> None:
    """A handshake failure or a socket closed under its reader ends that connection only."""
    hub = _hub()
    fix_tls(hub)

    def handle(sock: Any, addr: Any) -> None:
        raise ValueError("Read on closed or unwrapped SSL socket.")

    server = hub.StreamServer(("127.0.0.1", 6653), handle, ssl_ctx=FakeContext(),
                              certfile="c.pem", keyfile="k.pem")
    sock = FakeSocket()
    with caplog.at_level("INFO", logger="dyncast"):
        server.handle(sock, ("127.0.0.1", 3))
    assert sock.closed
    assert "OpenFlow TLS connection from ('127.0.0.1', 3) ended" in caplog.text


def test_a_plain_server_is_left_as_it_was() -> None:
    """Without TLS the framework's own constructor does everything."""
    hub = _hub()
    fix_tls(hub)
    server = hub.StreamServer(("127.0.0.1", 6653), print)
    assert server.handle is print and server.ssl_args == {}

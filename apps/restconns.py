"""The REST server's connections: their caps, HTTP/1.1 keep-alive, and each request's deadline.

Boundary: the shell's socket side, eventlet's green threads and its wsgi protocol; used by
apps/restserver.py only. The limits (`restserver.ServerSettings`, from `[channel]`):
  - every connection runs in a green thread of `Pool`, at most `max_connections` in all and
    `max_connections_per_client` from one address. At a cap, the connection that has waited
    longest for its next request (one *idle*: no byte of a request read or waiting on its
    socket, and kept alive after a request or silent for FIRST_BYTE_GRACE_S since it was
    accepted) - of that client for the per-client cap, of anyone for the total - is closed to
    make room; only when none is idle is the new connection refused (503). Idle kept-alive
    clients cannot lock others out; a client whose idle connection is closed opens a new one
    (HTTP clients do), and a burst of new connections gets answers or 503s, never a close;
  - between requests a connection waits at most `keepalive_idle_s` (the first request too)
    for the first byte of the next, then it is closed: eventlet's own `keepalive=<seconds>`
    is a timeout per socket read, which a client sending a byte every few seconds never hits;
  - from that first byte, the request - line, headers and body - must be read within
    `request_timeout_s` (`RequestDeadline`; slowloris), which restserver.BodyLimit lifts once
    the body is read, so the handler is never cut short;
  - after `max_requests_per_connection` requests the answer says `Connection: close`;
  - `keepalive_idle_s = 0`: one request per connection, as before keep-alive.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import eventlet
import eventlet.wsgi
import greenlet
from eventlet import greenio, patcher

from apps import httphead
from controller.channel import TlsFiles

if TYPE_CHECKING:
    from apps.restserver import ServerSettings

LOG = logging.getLogger("dyncast.rest")
# a new connection is not closed to make room before it has waited this long for its first
# request (unless kept alive after one): its request may be on its way
FIRST_BYTE_GRACE_S = 0.5
_select = patcher.original("select").select  # a look that never yields to the hub
CLOSE_KEY = "dyncast.close_connection"  # environ: call it to close the connection after the answer
# environ: the request target exactly as received (latin-1 text of its bytes, percent-escapes,
# query and leading slashes kept): what an agent's signature covers (apps/security.py)
TARGET_KEY = "dyncast.request_target"
_REASONS = {400: "Bad Request", 414: "URI Too Long", 431: "Request Header Fields Too Large",
            505: "HTTP Version Not Supported"}


class RequestDeadline(eventlet.Timeout):  # type: ignore[misc]  # eventlet is untyped
    """The time one request (or a TLS handshake) has to be read, from its first byte."""


# the deadline of the request each connection's green thread is reading
_deadlines: dict[Any, RequestDeadline] = {}


def arm(seconds: float) -> RequestDeadline:
    """Start the current green thread's request deadline."""
    deadline = RequestDeadline(seconds)
    _deadlines[greenlet.getcurrent()] = deadline
    return deadline


def lift() -> None:
    """Lift the current green thread's request deadline, if any (its request is read)."""
    deadline = _deadlines.pop(greenlet.getcurrent(), None)
    if deadline is not None:
        deadline.cancel()


@dataclass(eq=False, slots=True)
class Conn:
    """One connection the pool serves."""

    client: str
    sock: Any
    idle_since: float | None = None  # when it began waiting for a request; None: busy
    served: int = 0  # requests begun on it
    counted: bool = True  # held against the caps (False once closed to make room)


class _Refused:
    """What the pool returns for a connection it refused: linking closes it at once."""

    def link(self, func: Callable[..., Any], *args: Any) -> None:
        func(None, *args)


class Pool(eventlet.GreenPool):  # type: ignore[misc]  # eventlet is untyped
    """Green threads for connections, capped in all and per client address."""

    def __init__(self, settings: ServerSettings) -> None:
        # the caps are ours (room for connections closed but not yet gone): never block accept()
        super().__init__(2 * settings.max_connections + 1)
        self.settings = settings
        self.context = server_context(settings.tls) if settings.tls else None
        self.conns: dict[int, Conn] = {}  # id of eventlet's [address, socket, state] -> ours
        self.open = 0  # connections counted against max_connections
        self.per_client: Counter[str] = Counter()
        self.refused = 0
        self.closed_idle = 0  # idle connections closed to make room

    def protocol(self) -> type[Protocol]:
        """eventlet's HTTP protocol, bound to this pool."""
        return type("BoundProtocol", (Protocol,), {"pool": self})

    def spawn(self, func: Callable[..., Any], conn: list[Any]) -> Any:
        """Serve the connection `conn` ([address, socket, state]) unless a cap is reached and
        no idle connection can make room."""
        client = str(conn[0][0]) if isinstance(conn[0], tuple) else str(conn[0])
        cap = None
        if (self.per_client[client] >= self.settings.max_connections_per_client
                and not self._close_idle(client)):
            cap = "max_connections_per_client"
        elif self.open >= self.settings.max_connections and not self._close_idle(None):
            cap = "max_connections"
        if cap is not None:
            self.refused += 1
            LOG.warning("REST: refused a connection from %s: channel.%s reached", client, cap)
            _refuse(conn[1], cap)
            return _Refused()
        rec = Conn(client, conn[1])  # busy until its green thread waits for a request
        self.conns[id(conn)] = rec
        self.open += 1
        self.per_client[client] += 1
        return super().spawn(self._serve, func, conn, rec)

    def _close_idle(self, client: str | None) -> bool:
        """Close the connection idle longest (of `client` if given); False if none is idle.
        Idle: waiting for a request with none of its bytes on the socket, and either kept
        alive after one or waiting FIRST_BYTE_GRACE_S for its first (a burst of new
        connections whose requests are on their way is not closed unanswered)."""
        now = time.monotonic()
        idle = sorted((c for c in self.conns.values() if c.counted and c.idle_since is not None
                       and (client is None or c.client == client)
                       and (c.served or now - c.idle_since >= FIRST_BYTE_GRACE_S)),
                      key=lambda c: c.idle_since or 0.0)
        for victim in idle:
            if _bytes_waiting(victim.sock):
                continue  # its request has come: its thread will read it
            self._uncount(victim)
            self.closed_idle += 1
            LOG.info("REST: closed an idle connection of %s to make room", victim.client)
            greenio.shutdown_safe(victim.sock)  # its wait for a request ends with nothing read
            return True
        return False

    def _uncount(self, rec: Conn) -> None:
        if rec.counted:
            rec.counted = False
            self.open -= 1
            self.per_client[rec.client] -= 1
            if self.per_client[rec.client] <= 0:
                del self.per_client[rec.client]

    def _serve(self, func: Callable[..., Any], conn: list[Any], rec: Conn) -> None:
        """Run the wsgi server's handler for `conn` (after the TLS handshake, under a deadline)."""
        try:
            if self.context is not None:
                arm(self.settings.request_timeout_s)
                conn[1] = rec.sock = self.context.wrap_socket(conn[1], server_side=True)
                lift()
            func(conn)
        except RequestDeadline:
            LOG.info("REST: dropped %s: request not read within %g s", rec.client,
                     self.settings.request_timeout_s)
        except (OSError, ssl.SSLError) as exc:
            LOG.info("REST: connection from %s failed: %s", rec.client, exc)
        finally:
            lift()
            self._uncount(rec)
            self.conns.pop(id(conn), None)


class Protocol(eventlet.wsgi.HttpProtocol):  # type: ignore[misc]  # eventlet is untyped
    """eventlet's HTTP/1.1 protocol with our idle wait, request deadline and request count."""

    pool: Pool
    target = ""  # the last request line's target, as received

    def __init__(self, conn_state: list[Any], server: Any) -> None:
        self.rec = self.pool.conns[id(conn_state)]
        super().__init__(conn_state, server)

    def _read_request_line(self) -> str:
        """Wait (idle) for a request's first byte, then read its line under the deadline."""
        settings, rec = self.pool.settings, self.rec
        if self.rfile.closed or not rec.counted:
            return ""
        rec.idle_since = time.monotonic()
        try:
            self.connection.settimeout(settings.keepalive_idle_s or settings.request_timeout_s)
            first = self.rfile.peek(1)
        except (OSError, ValueError):  # idle too long, reset, or closed to make room
            first = b""
        finally:
            rec.idle_since = None
        if not first or not rec.counted:
            return ""
        rec.served += 1
        arm(settings.request_timeout_s)
        self.connection.settimeout(self.server.socket_timeout)
        line: str = super()._read_request_line()
        limit = self.server.url_length_limit
        if len(line) >= limit:  # eventlet's own answer is an empty, fieldless 414
            self._refuse_head(httphead.HeadError(414, "request line", "a request line of "
                                                 f"{limit} bytes or more"))
            return ""  # eventlet closes the connection
        return line

    def parse_request(self) -> bool:
        """The request line and header fields (apps/httphead.py, in place of the stdlib's
        `email` parser: what the stdlib's `parse_request` sets, from an exact RFC 9112 parse);
        a head refused gets its 4xx naming the field and closes the connection. The last
        request a connection may carry closes it."""
        self.command = None
        self.request_version = self.default_request_version
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        try:
            method, target, version = httphead.request_line(self.raw_requestline)
            # the buffered socket file itself, not eventlet's wrapper around it (a Python call
            # a line, and its limits are httphead's too); `fp` is where the wrapper keeps it
            rfile: Any = getattr(self.rfile, "fp", self.rfile)
            self.headers = httphead.read_fields(rfile.readline)
        except httphead.HeadError as exc:
            self._refuse_head(exc)
            return False
        if version >= (1, 1) and "host" not in self.headers:
            self._refuse_head(httphead.HeadError(400, "Host", "an HTTP/1.1 request must carry "
                                                 "a Host header (RFC 9112 3.2)"))
            return False
        self.command, self.path, self.target = method, httphead.origin_form(target), target
        self.request_version = f"HTTP/{version[0]}.{version[1]}"
        keep = version >= (1, 1) and self.protocol_version >= "HTTP/1.1"
        connection = (self.headers.get("connection") or "").lower()
        keep = keep or (connection == "keep-alive" and self.protocol_version >= "HTTP/1.1")
        self.close_connection = connection == "close" or not keep
        expect = (self.headers.get("expect") or "").lower()
        if expect == "100-continue" and version >= (1, 1) and not self.handle_expect_100():
            return False
        if self.rec.served >= self.pool.settings.max_requests_per_connection:
            self.close_connection = True
        return True

    def _refuse_head(self, exc: httphead.HeadError) -> None:
        """Answer a refused head with its status and the field, then close the connection."""
        body = json.dumps({"error": exc.message, "field": exc.field}).encode()
        reason = _REASONS.get(exc.status, "Bad Request")
        self.close_connection = True
        self.wfile.write(f"HTTP/1.1 {exc.status} {reason}\r\nContent-Type: application/json"
                         f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                         .encode() + body)
        self.wfile.flush()

    def handle_one_request(self) -> None:
        """One request; its deadline ends with it whatever happened."""
        try:
            super().handle_one_request()
        finally:
            lift()

    def get_environ(self) -> dict[str, Any]:
        """eventlet's environ, with the means to close the connection after this answer and
        the request target as received (eventlet's PATH_INFO is percent-decoded); an empty
        CONTENT_TYPE when the request has none (PEP 3333: "may be empty or absent")."""
        env: dict[str, Any] = super().get_environ()
        if self.headers.get("content-type") is None:
            env["CONTENT_TYPE"] = ""  # not eventlet's text/plain: the client sent none
        env[CLOSE_KEY] = self.close_after
        env[TARGET_KEY] = self.target
        return env

    def close_after(self) -> None:
        """Close the connection once the answer is sent (`Connection: close`)."""
        self.close_connection = True


def _bytes_waiting(sock: Any) -> bool:
    """True when bytes wait to be read on `sock` (its peer's end, too, is such a byte:
    False). Never blocks: a peek at the non-blocking socket under eventlet's green one."""
    try:
        if isinstance(sock, ssl.SSLSocket):
            return sock.pending() > 0 or bool(_select([sock.fileno()], [], [], 0)[0])
        raw = getattr(sock, "fd", sock)  # (eventlet's GreenSocket would wait for a byte)
        return bool(raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except (BlockingIOError, InterruptedError):
        return False  # nothing there
    except (OSError, ValueError):
        return False  # reset or closed: nothing a request will come from


def _refuse(sock: Any, cap: str) -> None:
    """Tell a refused client why, if its socket takes it at once; never wait for it."""
    body = json.dumps({"error": f"too many connections (channel.{cap})", "field": cap}).encode()
    try:
        sock.settimeout(0.0)
        sock.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                  b"Connection: close\r\nContent-Length: " + str(len(body)).encode() +
                  b"\r\n\r\n" + body)
    except OSError:
        pass


def server_context(tls: TlsFiles) -> ssl.SSLContext:
    """An SSL context serving `tls.cert`; requiring client certificates signed by `tls.ca`."""
    from eventlet.green import ssl as green_ssl

    ctx: ssl.SSLContext = green_ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(tls.cert, tls.key)
    if tls.ca is not None:
        ctx.load_verify_locations(tls.ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx

"""The REST API's web server, hardened, for Ryu and os-ken alike (eventlet's wsgi underneath).

Boundary: the shell's socket side of the REST API. It serves any WSGI app with the limits of
the `[channel]` table (controller/channel.py) and `[limits].max_body_bytes`:
  - one request per connection (no keep-alive), which must be read - headers and body - within
    `request_timeout_s`, else the connection is dropped (a request that never finishes holds
    nothing for long); each socket operation also times out after that long;
  - at most `max_connections` connections at once, `max_connections_per_client` from one
    client address; a connection past either gets 503 and is closed;
  - the body's size is judged from Content-Length before a byte of it is read: 413 when over
    the limit, 411 when a body comes without a length (Transfer-Encoding);
  - HTTPS when `rest_cert`/`rest_key` are set (client certificates required when
    `rest_client_ca` is); the handshake runs in the connection's own green thread, under
    the same deadline, never in the accept loop.
Ryu's manager starts it through the `start_service` apps/framework.py patches in, os-ken's
through apps/osken_wsgi.py; both serve the app behind apps/security.py's Gate.
"""

from __future__ import annotations

import io
import json
import logging
import os
import ssl
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import eventlet
import eventlet.wsgi
import greenlet

from controller.channel import Listen, TlsFiles
from controller.config import ControllerConfig

LOG = logging.getLogger("dyncast.rest")
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """The limits one server enforces."""

    request_timeout_s: float = 10.0
    max_connections: int = 256
    max_connections_per_client: int = 32
    max_body_bytes: int = 1 << 20
    tls: TlsFiles | None = None

    @classmethod
    def from_config(cls, config: ControllerConfig) -> ServerSettings:
        """The settings the controller's configuration asks for."""
        ch = config.channel
        return cls(ch.request_timeout_s, ch.max_connections, ch.max_connections_per_client,
                   config.limits.max_body_bytes, ch.rest_tls)


# the deadline of the request each connection's green thread is reading
_deadlines: dict[Any, eventlet.Timeout] = {}


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


class _Refused:
    """What the pool returns for a connection it refused: linking closes it at once."""

    def link(self, func: Callable[..., Any], *args: Any) -> None:
        func(None, *args)


class _Pool(eventlet.GreenPool):  # type: ignore[misc]  # eventlet is untyped
    """Green threads for connections, capped in all and per client address."""

    def __init__(self, settings: ServerSettings) -> None:
        super().__init__(settings.max_connections + 1)  # the cap is ours: never block accept()
        self.settings = settings
        self.context = server_context(settings.tls) if settings.tls else None
        self.per_client: Counter[str] = Counter()
        self.refused = 0

    def spawn(self, func: Callable[..., Any], conn: list[Any]) -> Any:
        """Serve the connection `conn` ([address, socket, state]) unless a cap is reached."""
        client = str(conn[0][0]) if isinstance(conn[0], tuple) else str(conn[0])
        cap = None
        if self.running() >= self.settings.max_connections:
            cap = "max_connections"
        elif self.per_client[client] >= self.settings.max_connections_per_client:
            cap = "max_connections_per_client"
        if cap is not None:
            self.refused += 1
            LOG.warning("REST: refused a connection from %s: channel.%s reached", client, cap)
            _refuse(conn[1], cap)
            return _Refused()
        self.per_client[client] += 1
        return super().spawn(self._serve, func, conn, client)

    def _serve(self, func: Callable[..., Any], conn: list[Any], client: str) -> None:
        """Run the wsgi server's handler for `conn` under the request deadline."""
        me = greenlet.getcurrent()
        deadline = eventlet.Timeout(self.settings.request_timeout_s)
        _deadlines[me] = deadline
        try:
            if self.context is not None:
                conn[1] = self.context.wrap_socket(conn[1], server_side=True)
            func(conn)
        except eventlet.Timeout as exc:
            if exc is not deadline:
                raise
            LOG.info("REST: dropped %s: request not read within %g s", client,
                     self.settings.request_timeout_s)
        except (OSError, ssl.SSLError) as exc:
            LOG.info("REST: connection from %s failed: %s", client, exc)
        finally:
            deadline.cancel()
            _deadlines.pop(me, None)
            self.per_client[client] -= 1
            if self.per_client[client] <= 0:
                del self.per_client[client]


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


class BodyLimit:
    """WSGI middleware: judge the body by its Content-Length, read it, then lift the deadline."""

    def __init__(self, app: WsgiApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Any:
        if environ.get("HTTP_TRANSFER_ENCODING"):
            return _reply(start_response, 411, "a body needs a Content-Length "
                          "(Transfer-Encoding is not accepted)", "Content-Length")
        text = environ.get("CONTENT_LENGTH") or "0"
        if not text.isdigit() or len(text) > 12:
            return _reply(start_response, 400, "Content-Length must be a number of bytes",
                          "Content-Length")
        length = int(text)
        if length > self.max_body_bytes:
            return _reply(start_response, 413, f"body of {length} bytes is over "
                          f"limits.max_body_bytes ({self.max_body_bytes})", "Content-Length")
        body = environ["wsgi.input"].read(length) if length else b""
        if len(body) != length:
            return _reply(start_response, 400, "body shorter than its Content-Length",
                          "Content-Length")
        deadline = _deadlines.pop(greenlet.getcurrent(), None)
        if deadline is not None:
            deadline.cancel()  # the request is read: the handler is not cut short
        environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)


def _reply(start_response: StartResponse, status: int, message: str, field: str) -> list[bytes]:
    """A JSON error reply in the API's shape."""
    reasons = {400: "Bad Request", 411: "Length Required", 413: "Content Too Large"}
    body = json.dumps({"error": message, "field": field}).encode()
    start_response(f"{status} {reasons[status]}", [("Content-Type", "application/json"),
                                                   ("Content-Length", str(len(body))),
                                                   ("Connection", "close")])
    return [body]


class RestServer:
    """The REST API's server on `listen`, with `settings`' limits; call it to serve forever."""

    def __init__(self, app: WsgiApp, listen: Listen, settings: ServerSettings) -> None:
        family = 10 if ":" in listen.host else 2  # AF_INET6 / AF_INET
        self.socket = eventlet.listen((listen.host, listen.port), family=family, backlog=128)
        self.app = BodyLimit(app, settings.max_body_bytes)
        self.settings = settings
        self.pool = _Pool(settings)
        scheme = "https" if settings.tls else "http"
        LOG.info("REST API on %s://%s", scheme, listen)

    @property
    def port(self) -> int:
        """The port it listens on (useful when 0 was asked)."""
        return int(self.socket.getsockname()[1])

    def serve_forever(self) -> None:
        """Accept and serve connections until the process ends."""
        environ = {"wsgi.url_scheme": "https"} if self.settings.tls else None
        eventlet.wsgi.server(self.socket, self.app, log=LOG, custom_pool=self.pool,
                             keepalive=False, socket_timeout=self.settings.request_timeout_s,
                             log_output=False, environ=environ)

    def __call__(self) -> None:
        self.serve_forever()


def configured(app: WsgiApp, host: str | None = None, port: int | None = None) -> RestServer:
    """A server for `app` as DYNCAST_CONFIG says, `host`/`port` overriding [channel].rest_listen."""
    from apps.configfile import load_config

    config = load_config(os.environ.get("DYNCAST_CONFIG"))
    listen = config.channel.rest_listen
    listen = Listen(host if host is not None else listen.host,
                    port if port is not None else listen.port)
    return RestServer(app, listen, ServerSettings.from_config(config))



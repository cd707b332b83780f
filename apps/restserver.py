"""The REST API's web server, hardened, for Ryu and os-ken alike (eventlet's wsgi underneath).

Boundary: the shell's socket side of the REST API. It serves any WSGI app with the limits of
the `[channel]` table (controller/channel.py) and `[limits].max_body_bytes`:
  - HTTP/1.1 keep-alive with limits (apps/restconns.py): a connection idle `keepalive_idle_s`
    is closed; each request - headers and body - must be read within `request_timeout_s` of
    its first byte, else the connection is dropped (a request that never finishes holds
    nothing for long; a body that stops coming gets 408); each socket operation also times
    out after that long; `max_requests_per_connection` requests, then `Connection: close`;
  - at most `max_connections` connections at once, `max_connections_per_client` from one
    client address; at a cap the connection idle longest makes room, and only when none is
    idle does the new one get 503 and is closed;
  - a path that is not UTF-8 (e.g. `/dyncast/v1/%ff`) gets 400 naming it (the frameworks'
    webob raised on it: a 500);
  - the body's size is judged from Content-Length before a byte of it is read: 413 when over
    the limit, 411 when a body comes without a length (Transfer-Encoding); the connection is
    closed after these answers (the body is not read);
  - a HEAD's reply is its headers only (RFC 9110 9.3.2): eventlet sends whatever body the app
    returns, and on a kept-alive connection the client read those bytes as the next reply;
  - HTTPS when `rest_cert`/`rest_key` are set (client certificates required when
    `rest_client_ca` is); the handshake runs in the connection's own green thread, under
    the request deadline, never in the accept loop.
Ryu's manager starts it through the `start_service` apps/framework.py patches in, os-ken's
through apps/osken_wsgi.py; both serve the app behind apps/security.py's Gate.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import eventlet
import eventlet.wsgi

from apps.restconns import CLOSE_KEY, Pool, RequestDeadline, lift
from controller.channel import Listen, TlsFiles
from controller.config import ControllerConfig
from controller.errors import ConfigError

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
    keepalive_idle_s: float = 5.0  # 0: one request per connection
    max_requests_per_connection: int = 1000

    @classmethod
    def from_config(cls, config: ControllerConfig) -> ServerSettings:
        """The settings the controller's configuration asks for."""
        ch = config.channel
        return cls(ch.request_timeout_s, ch.max_connections, ch.max_connections_per_client,
                   config.limits.max_body_bytes, ch.rest_tls, ch.keepalive_idle_s,
                   ch.max_requests_per_connection)


class BodyLimit:
    """WSGI middleware: judge the body by its Content-Length, read it, then lift the deadline."""

    def __init__(self, app: WsgiApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Any:
        reply = self._serve(environ, start_response)
        if environ.get("REQUEST_METHOD") != "HEAD":
            return reply
        try:  # run the app's reply to its end (it may start the response lazily), send none of it
            for _ in reply:
                pass
        finally:
            close = getattr(reply, "close", None)
            if close is not None:
                close()
        return []

    def _serve(self, environ: dict[str, Any], start_response: StartResponse) -> Any:
        try:  # the WSGI path is its bytes as latin-1; webob decodes them as UTF-8 (else 500)
            environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8")
        except UnicodeError:
            return _reply(start_response, 400, "the path must be UTF-8 (its %-escapes too)",
                          "path", environ)
        if environ.get("HTTP_TRANSFER_ENCODING"):
            return _reply(start_response, 411, "a body needs a Content-Length "
                          "(Transfer-Encoding is not accepted)", "Content-Length", environ)
        text = environ.get("CONTENT_LENGTH") or "0"
        if not text.isdigit() or len(text) > 12:
            return _reply(start_response, 400, "Content-Length must be a number of bytes",
                          "Content-Length", environ)
        length = int(text)
        if length > self.max_body_bytes:
            return _reply(start_response, 413, f"body of {length} bytes is over "
                          f"limits.max_body_bytes ({self.max_body_bytes})", "Content-Length",
                          environ)
        try:
            body = environ["wsgi.input"].read(length) if length else b""
        except RequestDeadline:
            return _reply(start_response, 408, "body not received within "
                          "channel.request_timeout_s", "body", environ)
        if len(body) != length:
            return _reply(start_response, 400, "body shorter than its Content-Length",
                          "Content-Length", environ)
        lift()  # the request is read: the handler is not cut short
        environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)


def _reply(start_response: StartResponse, status: int, message: str, field: str,
           environ: dict[str, Any]) -> list[bytes]:
    """A JSON error reply in the API's shape; the connection is closed after it (the body, if
    any, was not read: what follows on the connection is not a request)."""
    reasons = {400: "Bad Request", 408: "Request Timeout", 411: "Length Required",
               413: "Content Too Large"}
    body = json.dumps({"error": message, "field": field}).encode()
    close = environ.get(CLOSE_KEY)
    if close is not None:
        close()  # eventlet then sends `Connection: close`
    start_response(f"{status} {reasons[status]}", [("Content-Type", "application/json"),
                                                   ("Content-Length", str(len(body)))])
    return [body]


class RestServer:
    """The REST API's server on `listen`, with `settings`' limits; call it to serve forever."""

    def __init__(self, app: WsgiApp, listen: Listen, settings: ServerSettings) -> None:
        family = 10 if ":" in listen.host else 2  # AF_INET6 / AF_INET
        self.socket = eventlet.listen((listen.host, listen.port), family=family, backlog=128)
        self.app = BodyLimit(app, settings.max_body_bytes)
        self.settings = settings
        self.pool = Pool(settings)
        scheme = "https" if settings.tls else "http"
        LOG.info("REST API on %s://%s", scheme, listen)

    @property
    def port(self) -> int:
        """The port it listens on (useful when 0 was asked)."""
        return int(self.socket.getsockname()[1])

    def serve_forever(self) -> None:
        """Accept and serve connections until the process ends."""
        environ = {"wsgi.url_scheme": "https"} if self.settings.tls else None
        # `protocol` is marked deprecated in eventlet's docstring, yet it is how eventlet lets a
        # server read its requests its own way (restconns.Protocol: idle wait, deadline, count)
        eventlet.wsgi.server(self.socket, self.app, log=LOG, custom_pool=self.pool,
                             protocol=self.pool.protocol(),
                             keepalive=self.settings.keepalive_idle_s > 0,
                             socket_timeout=self.settings.request_timeout_s,
                             log_output=False, debug=False, environ=environ,
                             # our replies' header names are written capitalised already:
                             # eventlet's re-capitalising cost ~4 us a reply (split, encode)
                             capitalize_response_headers=False)

    def __call__(self) -> None:
        self.serve_forever()


def configured(app: WsgiApp, host: str | None = None, port: int | None = None) -> RestServer:
    """A server for `app` as DYNCAST_CONFIG says, `host`/`port` overriding [channel].rest_listen."""
    from apps.configfile import load_config

    source = os.environ.get("DYNCAST_CONFIG")
    config = load_config(source)
    listen = config.channel.rest_listen
    listen = Listen(host if host is not None else listen.host,
                    port if port is not None else listen.port)
    try:
        return RestServer(app, listen, ServerSettings.from_config(config))
    except OSError as exc:  # the manager ends with this line, not eventlet's traceback
        raise ConfigError(source or "(defaults)", "channel.rest_listen", f"cannot listen on "
                          f"{listen} (or --wsapi-host/--wsapi-port): {exc.strerror}") from None



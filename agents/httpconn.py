"""One kept-alive HTTP/1.1 connection to the controller's REST API, for its clients.

Boundary: a socket through http.client; no policy. `Connection.request` sends each request on
the connection it keeps open (the controller keeps it alive for `[channel].keepalive_idle_s`
between requests and `max_requests_per_connection` requests, docs/channels.md). When a
connection that has already carried an answer fails before any answer to this request comes
(the controller closed it as idle or at its request limit, or restarted), the request is sent
once more on a new connection, its headers made afresh: `headers` is called per attempt, so a
signed request is signed again with a new sequence, never sent twice with one the controller
has seen (it would refuse that as a replay, docs/security.md). The controller closes only a
connection on which no byte of a request was read, so the first attempt was not served. A
failure on a new connection, or a timeout, is not retried: the caller sees it. Answers are
read up to `max_answer` bytes; a longer one raises `AnswerTooLarge` and drops the connection.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

# what a kept-alive connection closed by the peer looks like on the next request
STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
         ConnectionAbortedError)
Headers = Callable[[], Mapping[str, str]]


class AnswerTooLarge(http.client.HTTPException):
    """An HTTP answer longer than the client reads."""


class Connection:
    """A kept-alive connection to `base_url` (http:// or https:// with `tls`, verifying by
    default as urllib does); paths given to `request` are appended to the URL's path."""

    def __init__(self, base_url: str, timeout: float, tls: ssl.SSLContext | None = None,
                 max_answer: int = 1 << 20) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{base_url!r}: expected http://HOST[:PORT] or https://...")
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port
        self.prefix = parts.path.rstrip("/")
        self.timeout, self.tls, self.max_answer = timeout, tls, max_answer
        self._conn: http.client.HTTPConnection | None = None
        self._answers = 0  # answers the current connection carried
        self.opened = 0  # connections opened so far (to tell reuse in tests and benchmarks)

    def _open(self) -> http.client.HTTPConnection:
        self.opened += 1
        self._answers = 0
        if self.https:
            self._conn = http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout,
                context=self.tls or ssl.create_default_context())
        else:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: Headers = dict) -> tuple[int, bytes]:
        """(status, body) of one request; OSError or http.client.HTTPException if no answer."""
        for attempt in (1, 2):
            reused = self._conn is not None and self._answers > 0
            conn = self._conn or self._open()
            try:
                conn.request(method, self.prefix + path, body, dict(headers()))
                response = conn.getresponse()
                data = response.read(self.max_answer + 1)
            except STALE:
                self.close()
                if reused and attempt == 1:
                    continue
                raise
            except BaseException:
                self.close()
                raise
            if len(data) > self.max_answer:
                self.close()
                raise AnswerTooLarge(f"answer larger than {self.max_answer} bytes")
            if response.will_close or not response.isclosed():
                self.close()  # the server closes it, or the body was not read to its end
            else:
                self._answers += 1
            return response.status, data
        raise AssertionError("unreachable")  # pragma: no cover

"""The D-MA's HTTP: one call to the controller or to an instance, with bounded answers.

Boundary: sockets; no policy. `controller_call` is the one request path to the controller:
on one kept-alive connection (agents/httpconn.py; a request that meets a connection the
controller closed is signed again and sent once more on a new one). `call` (urllib, a
connection per request) reads the instances' /stats.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from agents.dma.metrics import (
    MAX_JSON_CHARS,
    InstanceStats,
    loads_bounded,
    parse_stats,
    stats_problem,
)
from agents.httpconn import AnswerTooLarge, Connection
from agents.signing import Signer
from agents.tls import https_handler

API = "/dyncast/v1"
CONTROLLER_TIMEOUT = 2.0  # seconds for one call to the controller
STATS_TIMEOUT = 1.0  # seconds for one read of an instance's /stats
LOG_BODY_CHARS = 200
MAX_ANSWER_BYTES = MAX_JSON_CHARS  # the most read of one answer (then parsed, or refused)


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status and body text."""

    status: int
    body: str

    def brief(self) -> str:
        """The status and the start of the body, for one log line."""
        return f"HTTP {self.status}: {self.body.strip()[:LOG_BODY_CHARS]}"


class UnreachableError(Exception):
    """No HTTP answer at all (refused, timed out, connection dropped)."""


def call(opener: urllib.request.OpenerDirector, method: str, url: str,
         body: Mapping[str, Any] | None, timeout: float, signer: Signer | None = None) -> Answer:
    """Make one HTTP request with an optional JSON body, signed by `signer` if given;
    UnreachableError if nothing answers."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if signer is not None:
        for name, value in signer.headers(method, urlsplit(url).path, data or b"").items():
            request.add_header(name, value)
    try:
        with opener.open(request, timeout=timeout) as response:
            return Answer(response.status, response.read().decode(errors="replace"))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.read().decode(errors="replace"))
    except (OSError, http.client.HTTPException) as exc:
        raise UnreachableError(str(getattr(exc, "reason", exc)) or type(exc).__name__) from None


def controller_link(controller: str, tls: ssl.SSLContext | None = None) -> Connection:
    """The kept-alive connection to the REST API of `controller` (its base URL)."""
    return Connection(controller.rstrip("/") + API, CONTROLLER_TIMEOUT, tls,
                      MAX_ANSWER_BYTES)


def controller_call(link: Connection, method: str, path: str,
                    body: Mapping[str, Any] | None, signer: Signer | None = None) -> Answer:
    """One request to the controller on `link` (`path` under /dyncast/v1), with an optional
    JSON body, signed by `signer` if given (afresh for each attempt); UnreachableError if
    nothing answers."""
    data = None if body is None else json.dumps(body).encode()

    def headers() -> dict[str, str]:
        out = {} if data is None else {"Content-Type": "application/json"}
        if signer is not None:
            out.update(signer.headers(method, link.prefix + path, data or b""))
        return out

    try:
        status, raw = link.request(method, path, data, headers)
    except (OSError, http.client.HTTPException) as exc:
        raise UnreachableError(str(exc) or type(exc).__name__) from None
    return Answer(status, raw.decode(errors="replace"))


def read_stats(opener: urllib.request.OpenerDirector,
               url: str) -> tuple[InstanceStats | None, str]:
    """Read and validate one instance's `/stats`: (stats, "") or (None, why it is unusable)."""
    try:
        answer = call(opener, "GET", url, None, STATS_TIMEOUT)
    except (UnreachableError, http.client.HTTPException) as exc:
        return None, f"unreachable: {exc}"
    if answer.status != 200:
        return None, f"HTTP {answer.status}"
    try:
        data = loads_bounded(answer.body)
    except ValueError as exc:
        return None, f"not readable JSON: {str(exc)[:LOG_BODY_CHARS]}"
    problem = stats_problem(data)
    return (None, problem) if problem else (parse_stats(data), "")


def fetch_stats(opener: urllib.request.OpenerDirector, url: str) -> InstanceStats | None:
    """Read and validate one instance's `/stats`; None if that fails in any way."""
    return read_stats(opener, url)[0]


class BoundedAnswers(urllib.request.BaseHandler):
    """Makes every answer's body readable up to MAX_ANSWER_BYTES only (AnswerTooLarge past it),
    error answers included: a peer cannot make the D-MA read without end."""

    handler_order = 100  # before HTTPErrorProcessor (1000): error answers are bounded too

    def http_response(self, request: urllib.request.Request,
                      response: http.client.HTTPResponse) -> http.client.HTTPResponse:
        """Bound `response.read`."""
        read, consumed = response.read, 0

        def bounded(amt: int | None = None) -> bytes:
            nonlocal consumed
            room = MAX_ANSWER_BYTES + 1 - consumed
            data = read(room if amt is None else min(amt, room))
            consumed += len(data)
            if consumed > MAX_ANSWER_BYTES:
                raise AnswerTooLarge(f"answer larger than {MAX_ANSWER_BYTES} bytes")
            return data

        response.read = bounded  # type: ignore[method-assign]  # this one response only
        return response

    https_response = http_response


def opener(tls: ssl.SSLContext | None = None) -> urllib.request.OpenerDirector:
    """The D-MA's HTTP opener: no proxies, bounded answers; https:// URLs opened with `tls`
    (agents/tls.py), else with urllib's default (verifying against the system's CAs)."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({}),
                                                  BoundedAnswers()]
    if tls is not None:
        handlers.append(https_handler(tls))
    return urllib.request.build_opener(*handlers)

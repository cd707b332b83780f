"""The D-MA's HTTP: one call to the controller or to an instance, with bounded answers.

Boundary: sockets via urllib; no policy. `call` is the one request path to the controller.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agents.dma.metrics import InstanceStats, parse_stats

CONTROLLER_TIMEOUT = 2.0  # seconds for one call to the controller
STATS_TIMEOUT = 1.0  # seconds for one read of an instance's /stats
LOG_BODY_CHARS = 200


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
         body: Mapping[str, Any] | None, timeout: float) -> Answer:
    """Make one HTTP request with an optional JSON body; UnreachableError if nothing answers."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with opener.open(request, timeout=timeout) as response:
            return Answer(response.status, response.read().decode(errors="replace"))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.read().decode(errors="replace"))
    except (OSError, http.client.HTTPException) as exc:
        raise UnreachableError(str(getattr(exc, "reason", exc)) or type(exc).__name__) from None


def fetch_stats(opener: urllib.request.OpenerDirector, url: str) -> InstanceStats | None:
    """Read and validate one instance's `/stats`; None if that fails in any way."""
    try:
        answer = call(opener, "GET", url, None, STATS_TIMEOUT)
        return parse_stats(json.loads(answer.body)) if answer.status == 200 else None
    except (UnreachableError, ValueError):
        return None

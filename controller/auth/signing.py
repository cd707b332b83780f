"""Agent request signatures: the canonical string and its HMAC-SHA256.

A D-MA signs every call with its own key over
    dyncast-hmac-sha256 \\n METHOD \\n TARGET \\n SHA-256(body) hex \\n TIMESTAMP \\n AGENT \\n SEQ
where TARGET is the request target exactly as sent (`/dyncast/v1/metrics`: the path with its
percent-escapes as they are, `?query` if any), never a decoded form: two targets the server
would decode alike (`/a%2Fb`, `/a/b`) have different signatures. It
sends AGENT, TIMESTAMP (Unix seconds), SEQ (an integer that rises with every call) and the
signature (hex) in the headers below. The timestamp and sequence are signed as the exact text
sent, so both sides hash the same bytes. Shared by the controller and the clients
(`agents/signing.py`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

SCHEME = "dyncast-hmac-sha256"
AGENT_HEADER = "X-Dyncast-Agent"
TIMESTAMP_HEADER = "X-Dyncast-Timestamp"
SEQ_HEADER = "X-Dyncast-Seq"
SIGNATURE_HEADER = "X-Dyncast-Signature"
TIMESTAMP_RE = re.compile(r"[0-9]{1,12}(\.[0-9]{1,6})?")
SEQ_RE = re.compile(r"[0-9]{1,19}")
SIGNATURE_RE = re.compile(r"[0-9a-f]{64}")
KEY_BYTES = 32  # the length of a key `dyncastctl keys agent` makes


@dataclass(frozen=True, slots=True)
class Stamp:
    """Who signs, when and which call: the header texts, signed exactly as sent."""

    agent: str
    timestamp: str
    seq: str

    @classmethod
    def make(cls, agent: str, timestamp: float, seq: int) -> Stamp:
        """A client's stamp: the time to the millisecond, the sequence as an integer."""
        return cls(agent, f"{timestamp:.3f}", str(seq))


def canonical(method: str, path: str, body: bytes, stamp: Stamp) -> bytes:
    """The bytes an agent signs for one request."""
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join((SCHEME, method.upper(), path, digest, stamp.timestamp, stamp.agent,
                      stamp.seq)).encode()


def sign(key: bytes, method: str, path: str, body: bytes, stamp: Stamp) -> str:
    """The hex HMAC-SHA256 of the request's canonical string under `key`."""
    return hmac.new(key, canonical(method, path, body, stamp), hashlib.sha256).hexdigest()


def signature_matches(key: bytes, signature: str, message: bytes) -> bool:
    """Whether `signature` is the HMAC of `message` under `key` (compared in constant time)."""
    expected = hmac.new(key, message, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def headers(key: bytes, stamp: Stamp, method: str, path: str, body: bytes) -> dict[str, str]:
    """The headers that sign one request (for clients)."""
    return {AGENT_HEADER: stamp.agent, TIMESTAMP_HEADER: stamp.timestamp,
            SEQ_HEADER: stamp.seq, SIGNATURE_HEADER: sign(key, method, path, body, stamp)}

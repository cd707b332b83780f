"""The clients' side of the controller's authentication: an agent's signature headers from its
key file, an operator's bearer token from a token file.

Boundary: reads the key and token files and the clock; builds headers, sends nothing. The
canonical string is `controller.auth.signing`'s, so client and controller hash the same bytes.
A key file (made by `dyncastctl keys agent`, mode 600) is TOML:
    agent = "dma-e2"
    key = "<64 hex digits>"
"""

from __future__ import annotations

import os
import threading
import time
import tomllib
from pathlib import Path

from controller.auth.signing import Stamp, headers
from controller.validate import NAME_RE

ENV_TOKEN_FILE = "DYNCAST_TOKEN_FILE"
ENV_KEY_FILE = "DYNCAST_KEY_FILE"
MAX_FILE_BYTES = 64 << 10


class CredentialError(Exception):
    """A key or token file that cannot be used; the message names the file."""


def _read(path: str | Path) -> str:
    """A small text file's content."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise CredentialError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise CredentialError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CredentialError(f"{path}: not UTF-8") from None


class Signer:
    """Signs requests as one agent. The sequence starts at the time in microseconds and rises
    by at least one a call, so it keeps rising across restarts of the agent."""

    def __init__(self, agent: str, key: bytes) -> None:
        self.agent = agent
        self.key = key
        self._seq = 0
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str | Path) -> Signer:
        """The signer of a key file; CredentialError naming the file if it is not one."""
        try:
            data = tomllib.loads(_read(path))
        except tomllib.TOMLDecodeError as exc:
            raise CredentialError(f"{path}: {exc}") from None
        agent, key = data.get("agent"), data.get("key")
        if not isinstance(agent, str) or not NAME_RE.fullmatch(agent):
            raise CredentialError(f"{path}: agent: must be the agent's name")
        if not isinstance(key, str) or len(key) != 64:
            raise CredentialError(f"{path}: key: must be 64 hex digits")
        try:
            return cls(agent, bytes.fromhex(key))
        except ValueError:
            raise CredentialError(f"{path}: key: must be 64 hex digits") from None

    def headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        """The signature headers for one request (`path` as sent, from /dyncast/...)."""
        now = time.time()
        with self._lock:
            self._seq = max(self._seq + 1, int(now * 1e6))
            seq = self._seq
        return headers(self.key, Stamp.make(self.agent, now, seq), method, path, body)


def read_token(path: str | Path) -> str:
    """An operator token from its file (the first line, stripped)."""
    lines = _read(path).strip().splitlines()
    token = lines[0].strip() if lines else ""
    if not token or len(token) > 256:
        raise CredentialError(f"{path}: must hold one token")
    return token


def bearer(token_file: str | Path | None) -> dict[str, str]:
    """The Authorization header from `token_file`, else env DYNCAST_TOKEN_FILE; {} if
    neither names a file."""
    path = token_file or os.environ.get(ENV_TOKEN_FILE) or None
    return {"Authorization": f"Bearer {read_token(path)}"} if path else {}

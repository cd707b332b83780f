"""The agent table and the operator token table, as values (parsed from their TOML files).

Agent table (`[security] agents_file`), one table per D-MA:
    [[agent]]
    id = "dma-e2"                       # the D-MA's name (`dyncast-dma --name`)
    key = "<64 hex digits>"             # its HMAC key; the D-MA holds the same in its key file
    prefixes = ["10.0.100.0/24", "10.0.0.21/32"]   # the D-SIDs and D-BIDs it may speak for
    max_instances = 16                  # optional: its quota (default [security])
Token table (`[security] tokens_file`): only SHA-256 digests of the tokens are stored.
    [[token]]
    name = "operator"
    role = "admin"                      # or "read"
    sha256 = "<64 hex digits>"
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.errors import ValidationError
from controller.validate import check_integer, check_name, reject_unknown

ROLES = ("read", "admin")
HEX64_RE = re.compile(r"[0-9a-f]{64}")
MAX_AGENT_INSTANCES = 1_000_000


@dataclass(frozen=True, slots=True)
class Agent:
    """One D-MA: its key, the prefixes it may speak for, and its instance quota."""

    id: str
    key: bytes
    prefixes: tuple[ipaddress.IPv4Network, ...]
    max_instances: int
    ranges: tuple[tuple[int, int], ...] = field(init=False)  # each prefix: (network, mask)

    def __post_init__(self) -> None:
        ranges = tuple((int(n.network_address), int(n.netmask)) for n in self.prefixes)
        object.__setattr__(self, "ranges", ranges)  # frozen: set once, here

    def covers(self, address: str) -> bool:
        """Whether `address` (a canonical IPv4 address) is inside one of the prefixes."""
        ip = address_int(address)
        return any(ip & mask == net for net, mask in self.ranges)


@functools.lru_cache(maxsize=1 << 16)
def address_int(address: str) -> int:
    """An IPv4 address as an integer (cached: a D-MA reports the same D-BIDs again and
    again, and ipaddress takes microseconds per parse)."""
    return int(ipaddress.IPv4Address(address))


@dataclass(frozen=True, slots=True)
class Token:
    """An operator token, by the SHA-256 of its text."""

    name: str
    role: str
    digest: bytes


def token_digest(token: str) -> bytes:
    """The SHA-256 of a token's text, as stored in the token table."""
    return hashlib.sha256(token.encode()).digest()


def find_token(tokens: tuple[Token, ...], presented: str) -> Token | None:
    """The token whose digest matches `presented`; every entry is compared, in constant time."""
    digest = token_digest(presented)
    found = None
    for token in tokens:
        if hmac.compare_digest(token.digest, digest):
            found = token
    return found


def agents_from_dict(data: Any, default_quota: int) -> dict[str, Agent]:
    """Parse an agent table (a parsed TOML document); raises ValidationError naming the key."""
    if not isinstance(data, Mapping):
        raise ValidationError("agent", "must be a TOML document")
    reject_unknown(data, {"agent"}, "")
    raw = data.get("agent", [])
    if not isinstance(raw, list):
        raise ValidationError("agent", "must be an array of tables ([[agent]])")
    out: dict[str, Agent] = {}
    for i, item in enumerate(raw):
        where = f"agent[{i}]"
        if not isinstance(item, Mapping):
            raise ValidationError(where, "must be a table")
        reject_unknown(item, {"id", "key", "prefixes", "max_instances"}, where)
        name = check_name(item.get("id"), f"{where}.id")
        if name in out:
            raise ValidationError(f"{where}.id", f"agent {name!r} is listed twice")
        out[name] = Agent(name, _hex_key(item.get("key"), f"{where}.key"),
                          _prefixes(item.get("prefixes"), f"{where}.prefixes"),
                          check_integer(item.get("max_instances", default_quota),
                                        f"{where}.max_instances", 0, MAX_AGENT_INSTANCES))
    return out


def tokens_from_dict(data: Any) -> tuple[Token, ...]:
    """Parse a token table (a parsed TOML document); raises ValidationError naming the key."""
    if not isinstance(data, Mapping):
        raise ValidationError("token", "must be a TOML document")
    reject_unknown(data, {"token"}, "")
    raw = data.get("token", [])
    if not isinstance(raw, list):
        raise ValidationError("token", "must be an array of tables ([[token]])")
    out = []
    for i, item in enumerate(raw):
        where = f"token[{i}]"
        if not isinstance(item, Mapping):
            raise ValidationError(where, "must be a table")
        reject_unknown(item, {"name", "role", "sha256"}, where)
        name = check_name(item.get("name"), f"{where}.name")
        role = item.get("role")
        if role not in ROLES:
            raise ValidationError(f"{where}.role", f"must be one of {', '.join(ROLES)}")
        out.append(Token(name, role, _hex_key(item.get("sha256"), f"{where}.sha256")))
    return tuple(out)


def _hex_key(value: Any, field: str) -> bytes:
    """64 lowercase hex digits as 32 bytes."""
    if not isinstance(value, str) or not HEX64_RE.fullmatch(value):
        raise ValidationError(field, "must be 64 lowercase hex digits")
    return bytes.fromhex(value)


def _prefixes(value: Any, field: str) -> tuple[ipaddress.IPv4Network, ...]:
    """A non-empty list of IPv4 prefixes ("10.0.100.0/24"; a bare address is a /32)."""
    if not isinstance(value, list) or not value:
        raise ValidationError(field, "must be a non-empty list of IPv4 prefixes")
    out = []
    for i, text in enumerate(value):
        if not isinstance(text, str):
            raise ValidationError(f"{field}[{i}]", "must be a string such as '10.0.0.0/24'")
        try:
            out.append(ipaddress.IPv4Network(text, strict=True))
        except ValueError as exc:
            raise ValidationError(f"{field}[{i}]", f"{text[:40]!r}: {exc}") from None
    return tuple(out)

"""Validators for untrusted values (TOML tables, REST bodies): one set of rules, errors that
name the field."""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from collections.abc import Collection, Mapping
from typing import Any

from controller.errors import ValidationError


def parse_ipv4(value: Any, field_name: str) -> str:
    """Return `value` as a canonical dotted IPv4 address or raise naming `field_name`."""
    if value is None:
        raise ValidationError(field_name, "required: an IPv4 address string (missing or null)")
    if not isinstance(value, str):
        raise ValidationError(field_name, f"must be an IPv4 address string, got {value!r}")
    try:
        return _canonical_ipv4(value)
    except ValueError:
        raise ValidationError(field_name, f"{value!r} is not an IPv4 address") from None


@functools.lru_cache(maxsize=1 << 14)
def _canonical_ipv4(text: str) -> str:
    """The canonical form of a valid address (ValueError, not cached, for an invalid one);
    every metric report names its instance: 8.9 us each through `ipaddress`, a cache hit 0.2."""
    return str(ipaddress.IPv4Address(text))


def check_number(value: Any, field_name: str, lo: float, hi: float) -> float:
    """Return a finite number within [lo, hi] or raise naming the field."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(field_name, f"must be a number, got {value!r}")
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ValidationError(field_name, f"must be between {lo:g} and {hi:g}, got {value!r}")
    return float(value)


def check_integer(value: Any, field_name: str, lo: int, hi: int) -> int:
    """Return an integer within [lo, hi] or raise naming the field. JSON has one number type:
    1.0 is the integer 1 (as JSON Schema's "integer" says), taken while exactly a float."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field_name, f"must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ValidationError(field_name, f"must be between {lo} and {hi}, got {value}")
    return value


def check_path(value: Any, field_name: str, empty: bool = True) -> str:
    """A file name: a string without NUL, at most 4096 characters (empty only if `empty`)."""
    if (not isinstance(value, str) or "\x00" in value or len(value) > 4096
            or not (value or empty)):
        raise ValidationError(field_name, "must be a file name")
    return value


def reject_unknown(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    """Raise on the first key of `data` that is not in `allowed`."""
    for key in data:
        if key not in allowed:
            shown = key if NAME_RE.fullmatch(key) else repr(key)[:40]  # echoed: keep it short
            name = f"{where}.{shown}" if where else shown
            raise ValidationError(name, f"unknown key (allowed: {', '.join(sorted(allowed))})")


def sub_table(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    """Return the sub-table `key` of `data` (empty when absent) or raise if it is not a table."""
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ValidationError(f"{where}{key}", "must be a table/object")
    return value


# --- names ------------------------------------------------------------------------------
NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,63}")
NAME_RULE = "1 to 63 characters from A-Z a-z 0-9 . _ -"


def check_name(value: Any, field_name: str) -> str:
    """Return `value` if it is a safe name (a URL path segment and a store key as it is)."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value) or value in (".", ".."):
        raise ValidationError(field_name, f"must be {NAME_RULE} (not '.' or '..'), "
                              f"got {value!r:.80}")
    return value


# --- addresses --------------------------------------------------------------------------
# never a D-SID or a D-BID: this network, loopback, link-local, multicast, reserved (240/4,
# which holds the broadcast address). RFC 1918, 100.64/10 and the TEST-NETs stay allowed.
RESERVED_NETS = tuple(ipaddress.IPv4Network(n) for n in (
    "0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4"))


def address_problem(ip: str, role: str, hosts: Collection[str] = (),
                    others: Collection[str] = ()) -> str | None:
    """Why canonical IPv4 `ip` cannot be a `role` ("D-SID" or "D-BID"), or None when it can.

    `hosts` are addresses learned as hosts (a D-SID there would pull a real host's traffic);
    `others` are the addresses already used in the other role (D-BIDs for a D-SID, D-SIDs for
    a D-BID)."""
    addr = ipaddress.IPv4Address(ip)
    for net in RESERVED_NETS:
        if addr in net:
            return f"{ip} is in reserved range {net}: a {role} must be a unicast address"
    if ip in others:
        return f"{ip} is already a {'D-BID' if role == 'D-SID' else 'D-SID'}"
    if role == "D-SID" and ip in hosts:
        return f"{ip} is a learned host's address"
    return None


def check_address(value: Any, field_name: str, role: str, hosts: Collection[str] = (),
                  others: Collection[str] = ()) -> str:
    """Parse `value` as an IPv4 address fit for `role` (see `address_problem`) or raise."""
    ip = parse_ipv4(value, field_name)
    problem = address_problem(ip, role, hosts, others)
    if problem:
        raise ValidationError(field_name, problem)
    return ip

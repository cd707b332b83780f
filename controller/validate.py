"""Validators for untrusted values (TOML tables, REST bodies): one set of rules, errors that
name the field."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from typing import Any

from controller.errors import ValidationError


def parse_ipv4(value: Any, field_name: str) -> str:
    """Return `value` as a canonical dotted IPv4 address or raise naming `field_name`."""
    if not isinstance(value, str):
        raise ValidationError(field_name, f"must be an IPv4 address string, got {value!r}")
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValidationError(field_name, f"{value!r} is not an IPv4 address") from None


def check_number(value: Any, field_name: str, lo: float, hi: float) -> float:
    """Return a finite number within [lo, hi] or raise naming the field."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(field_name, f"must be a number, got {value!r}")
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ValidationError(field_name, f"must be between {lo:g} and {hi:g}, got {value!r}")
    return float(value)


def check_integer(value: Any, field_name: str, lo: int, hi: int) -> int:
    """Return an integer within [lo, hi] or raise naming the field."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field_name, f"must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ValidationError(field_name, f"must be between {lo} and {hi}, got {value}")
    return value


def reject_unknown(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    """Raise on the first key of `data` that is not in `allowed`."""
    for key in data:
        if key not in allowed:
            name = f"{where}.{key}" if where else key
            raise ValidationError(name, f"unknown key (allowed: {', '.join(sorted(allowed))})")


def sub_table(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    """Return the sub-table `key` of `data` (empty when absent) or raise if it is not a table."""
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ValidationError(f"{where}{key}", "must be a table/object")
    return value

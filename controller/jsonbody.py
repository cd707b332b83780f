"""Untrusted JSON bytes in, a bounded JSON value out: size and nesting depth are checked before
the parser runs, and number literals are bounded before anything computes with them.

An object naming a key twice is refused (which one wins is the reader's guess).
A number literal that is too long, or a float that is not finite (1e400, NaN, Infinity),
decodes to an `OutOfRange` marker instead of a number: every validator then rejects it as "not
a number", naming the field it was found in.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from controller.errors import ValidationError

MAX_NUMBER_CHARS = 40  # the longest number literal read (a float's digits, an int's)
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = bytes(c for c in range(256) if c not in b"[]{}")


class OutOfRange:
    """A number literal too long or not finite; no validator takes it for a number."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text[:24] + ("..." if len(text) > 24 else "")

    def __repr__(self) -> str:
        return f"<number out of range: {self.text}>"


def too_deep(body: bytes, max_depth: int) -> bool:
    """Whether arrays and objects in `body` nest deeper than `max_depth`, brackets inside strings
    aside; stops at the first bracket past the limit (a 1 MiB body of brackets takes at most
    about 50 ms, its parsing as long). Without a backslash and with quotes in pairs, every
    other run between quotes is a string and is left out as such (a 10,000-report batch: 4 ms,
    against 30 ms for the general expression, which holds the GIL throughout)."""
    if b"\\" not in body and not body.count(b'"') % 2:
        outside = b"".join(body.split(b'"')[::2])
    else:
        outside = _STRING.sub(b"", body)
    level = 0
    for c in outside.translate(None, _NOT_BRACKET):
        level += 1 if c in b"[{" else -1
        if level > max_depth:
            return True
    return False


def _int(text: str) -> int | OutOfRange:
    return int(text) if len(text) <= MAX_NUMBER_CHARS else OutOfRange(text)


def _float(text: str) -> float | OutOfRange:
    if len(text) > MAX_NUMBER_CHARS:
        return OutOfRange(text)
    value = float(text)
    return value if math.isfinite(value) else OutOfRange(text)


class _KeyTwice(ValueError):
    """An object that names a key twice."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's dict; a key given twice is refused, not left to the last one (RFC 8259 4:
    readers differ on which wins, so a proxy or a log reader could see another body). Costs
    0.2 us an object: 1.3 -> 1.5 us a single report, 6.4 -> 8.4 ms a 10,000-report batch
    (`bench/json_keys.py`, CPU time)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _KeyTwice(f"key {key[:40]!r} twice in one object")
            seen.add(key)
    return obj


# one decoder for every body: `json.loads` with these hooks builds a decoder and its scanner
# per call (15.6 against 5.6 us for a single metric report's body, `python -m timeit`)
_DECODER = json.JSONDecoder(parse_int=_int, parse_float=_float, parse_constant=OutOfRange,
                            object_pairs_hook=_object)


def loads(body: bytes, max_bytes: int, max_depth: int) -> Any:
    """Decode a JSON request body (empty: None) or raise a ValidationError on field `body`."""
    if len(body) > max_bytes:
        raise ValidationError("body", f"larger than {max_bytes} bytes")
    if body.count(b"[") + body.count(b"{") > max_depth and too_deep(body, max_depth):
        raise ValidationError("body", f"nested deeper than {max_depth} levels")
    try:
        text = body.decode("utf-8")
        return _DECODER.decode(text) if text else None
    except _KeyTwice as exc:
        raise ValidationError("body", str(exc)) from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise ValidationError("body", f"malformed JSON: {exc}") from None

"""A request's head - its request line and header fields - read the exact way RFC 9112 gives it,
in place of the stdlib's `http.client.parse_headers` (the `email` package's feed parser).

Boundary: no I/O of its own; `request_line` takes the request's first line, `read_fields` the
connection's buffered `readline(limit)`, and each returns the parsed part or raises `HeadError`
with the status and the field to name in the 4xx. Used by apps/restconns.Protocol.

Why: the feed parser builds an `email.message.Message` per request, and every `get` on it walks
the whole list again: for a signed single-report POST's head it took 23.9 us of CPU against
this module's 9.1 (`bench/http_head.py`, docs/benchmarks.md). What it refuses, with 400 unless
said otherwise (each answered as JSON naming the field, the connection then closed):
  - a request line other than `METHOD SP target SP HTTP/x.y` (505 for a major version past 1);
  - a field line without a colon, a field name that is not a token (no space before the colon),
    a field line starting with space or tab (obs-fold, RFC 9112 5.2), a value holding a NUL or
    a bare CR (RFC 9110 5.5);
  - more than one Content-Length or Host (RFC 9112 6.3, 3.2), a Content-Length not all digits,
    an HTTP/1.1 request without Host (RFC 9112 3.2; apps/restconns.py checks it),
    a Content-Length beside a Transfer-Encoding (RFC 9112 6.1: how requests are smuggled);
  - 431: more than `MAX_FIELDS` (100, as the stdlib) field lines, a line over `MAX_LINE` or a
    head over `MAX_HEAD` bytes (eventlet's limits, which answered 400 without a body).
A line may end with CRLF or a bare LF (RFC 9112 2.2); values lose their leading and trailing
spaces and tabs; names keep their case in `fields` and are matched without it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

MAX_FIELDS = 100
MAX_LINE = 8190  # bytes a header line, its end included (eventlet's wrapper: under 8,192)
MAX_HEAD = 65536  # bytes of header lines in all (eventlet's)
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])")
_SINGLE = ("content-length", "host")  # at most once in a request
_OWS = b" \t"


class HeadError(Exception):
    """A request head refused: `status`, the `field` the answer names, and why."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message


class Fields:
    """A request's header fields: `fields` in their order, `get` by name whatever its case
    (the first one's value, as `email.message.Message.get`); what eventlet's wsgi reads."""

    __slots__ = ("_first", "_headers")

    def __init__(self, fields: list[tuple[str, str]],
                 first: dict[str, str] | None = None) -> None:
        self._headers = fields  # eventlet's get_environ reads this attribute
        if first is None:
            first = {}
            for name, value in fields:
                first.setdefault(name.lower(), value)
        self._first = first  # lower-case name -> the first such field's value

    @property
    def fields(self) -> list[tuple[str, str]]:
        """(name, value) pairs in the order they came."""
        return self._headers

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first field named `name` (any case), or `default`."""
        return self._first.get(name.lower(), default)

    def __getitem__(self, name: str) -> str | None:
        return self._first.get(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def get_all(self, name: str) -> list[str]:
        """Every value of the fields named `name`, in order."""
        key = name.lower()
        return [value for field, value in self._headers if field.lower() == key]

    def items(self) -> list[tuple[str, str]]:
        """(name, value) pairs in order."""
        return list(self._headers)

    def keys(self) -> list[str]:
        """The names in order."""
        return [name for name, _ in self._headers]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._headers)

    def get_content_type(self) -> str:
        """The media type, lower case, `text/plain` when none or malformed (as the stdlib)."""
        value = (self.get("content-type") or "").split(";", 1)[0].strip().lower()
        return value if value.count("/") == 1 else "text/plain"


def request_line(raw: bytes) -> tuple[str, str, tuple[int, int]]:
    """(method, target, (major, minor)) of a request line, or HeadError."""
    words = raw.rstrip(b"\r\n").split(b" ")
    if len(words) != 3 or not words[1] or _TOKEN.fullmatch(words[0]) is None:
        raise HeadError(400, "request line", "a request line is METHOD SP target SP "
                        "HTTP/x.y")
    version = _VERSION.fullmatch(words[2])
    if version is None:
        raise HeadError(400, "request line", "the HTTP version must be HTTP/x.y")
    number = int(version.group(1)), int(version.group(2))
    if number[0] != 1:
        raise HeadError(505, "request line", f"HTTP/{number[0]}.{number[1]} is not served "
                        "(HTTP/1.x only)")
    return words[0].decode("latin-1"), words[1].decode("latin-1"), number


def origin_form(target: str) -> str:
    """The path and query a target names: an absolute-form target (`http://host:port/p?q`,
    which RFC 9112 3.2.2 has every server accept) without its scheme and authority (its path
    "/" when it has none), and a target starting with `//` taken as a path, never as
    `//host/path` (as the stdlib); any other target as it is."""
    scheme, sep, rest = target.partition("://")
    if sep and scheme.lower() in ("http", "https"):
        cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
        path = rest[cut:]
        return path if path.startswith("/") else "/" + path
    if target.startswith("//"):
        return "/" + target.lstrip("/")
    return target


def read_fields(readline: Callable[[int], bytes], max_line: int = MAX_LINE,
                max_head: int = MAX_HEAD) -> Fields:
    """The header fields up to the empty line that ends the head, or HeadError; `readline(n)`
    reads a line of at most `n` bytes."""
    fields: list[tuple[str, str]] = []
    first: dict[str, str] = {}
    total = 0
    while True:
        line = readline(max_line + 1)
        total += len(line)
        if len(line) > max_line or total > max_head:
            raise HeadError(431, "headers", f"a header line over {max_line} bytes or a head "
                            f"over {max_head}")
        if line[-2:] == b"\r\n":
            line = line[:-2]
        elif line[-1:] == b"\n":
            line = line[:-1]
        if not line:
            if "content-length" in first and "transfer-encoding" in first:
                raise HeadError(400, "Transfer-Encoding", "a request may not carry both "
                                "Content-Length and Transfer-Encoding (RFC 9112 6.1)")
            return Fields(fields, first)
        if len(fields) >= MAX_FIELDS:
            raise HeadError(431, "headers", f"more than {MAX_FIELDS} header fields")
        name, value = _field(line)
        key = name.lower()
        if key in first and key in _SINGLE:
            raise HeadError(400, name, f"more than one {name} header")
        if key == "content-length" and not value.isdigit():
            raise HeadError(400, name, "Content-Length must be a number of bytes")
        first.setdefault(key, value)
        fields.append((name, value))


def _field(line: bytes) -> tuple[str, str]:
    """One field line's (name, value), its end of line taken off; or HeadError."""
    name, colon, value = line.partition(b":")
    if _TOKEN.fullmatch(name) is None:
        text = name.decode("latin-1")
        if line[:1] in (b" ", b"\t"):
            raise HeadError(400, "headers", "a header line folded onto the next (obs-fold) "
                            "is not accepted")
        if not colon:
            raise HeadError(400, "headers", f"a header line without a colon: {text[:40]!r}")
        raise HeadError(400, "headers", f"header name {text[:40]!r} is not a token "
                        "(no space before the colon)")
    if not colon:
        raise HeadError(400, "headers", "a header line without a colon: "
                        f"{name.decode('latin-1')[:40]!r}")
    value = value.strip(_OWS)
    if b"\r" in value or b"\x00" in value:
        text = name.decode("latin-1")
        raise HeadError(400, text, "a header value must not hold NUL or CR")
    return name.decode("latin-1"), value.decode("latin-1")

"""The REST server's request-head parser (apps/httphead.py): on valid heads it reads what the
stdlib's `http.client.parse_headers` reads; what RFC 9112 refuses, it refuses naming the field."""

from __future__ import annotations

import http.client
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.httphead import (
    MAX_FIELDS,
    MAX_HEAD,
    MAX_LINE,
    Fields,
    HeadError,
    read_fields,
    request_line,
)

TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# (the fields with rules of their own aside: one Content-Length, one Host, and no
# Transfer-Encoding beside a Content-Length)
names = st.text(alphabet=TCHARS, min_size=1, max_size=20).filter(
    lambda n: n.lower() not in ("content-length", "host", "transfer-encoding"))
# a value: visible latin-1 characters, spaces and tabs inside, around it optional whitespace
# (not \x85: the stdlib's feed parser splits lines on it, str.splitlines' NEL; RFC 9112 does not)
inner = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0xFF,
                                       blacklist_characters="\x7f\x85"), min_size=0,
                max_size=30)
values = st.tuples(st.sampled_from(["", " ", "\t", "  "]), inner,
                   st.lists(st.tuples(st.sampled_from([" ", "\t"]), inner), max_size=3),
                   st.sampled_from(["", " ", "\t "]))


def _value(parts: tuple[str, str, list[tuple[str, str]], str]) -> str:
    lead, first, more, trail = parts
    return lead + first + "".join(sep + word for sep, word in more) + trail


def _lines(head: bytes) -> io.BytesIO:
    return io.BytesIO(head)


def _ours(head: bytes) -> Fields:
    return read_fields(_lines(head).readline)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(names, values), max_size=12), st.sampled_from(["\r\n", "\n"]),
       st.one_of(st.none(), st.integers(0, 10**9)))
def test_valid_heads_read_as_the_stdlib_reads_them(fields: list, eol: str,
                                                   length: int | None) -> None:
    """Every field, in order, with the value the stdlib gives it (OWS stripped), and `get` by
    any case gives the first one's, as `email.message.Message.get` does."""
    pairs = [(name, _value(parts)) for name, parts in fields]
    if length is not None:
        pairs.append(("Content-Length", str(length)))
    head = "".join(f"{n}:{v}{eol}" for n, v in pairs).encode("latin-1") + eol.encode()
    ours = _ours(head)
    theirs = http.client.parse_headers(_lines(head))
    strip = " \t\r\n"
    assert ours.fields == [(n, v.strip(strip)) for n, v in theirs.items()]
    for name, _ in pairs:
        for spelled in (name, name.lower(), name.upper()):
            expected = theirs.get(spelled)
            assert ours.get(spelled) == (None if expected is None else expected.strip(strip))
    assert ours.get("x-not-there", "d") == "d"
    assert ours.get_content_type() == theirs.get_content_type()


def test_the_content_type_eventlet_takes_by_default_is_the_stdlibs() -> None:
    """Without a Content-Type the environ gets text/plain, as with the stdlib's message."""
    assert _ours(b"Host: x\r\n\r\n").get_content_type() == "text/plain"
    assert _ours(b"Content-Type: Application/JSON; charset=utf-8\r\n\r\n").get_content_type() \
        == "application/json"


@pytest.mark.parametrize(("head", "status", "field"), [
    (b"Host: x\r\n folded\r\n\r\n", 400, "headers"),  # obs-fold
    (b"Host: x\r\n\tfolded\r\n\r\n", 400, "headers"),
    (b"Host x\r\n\r\n", 400, "headers"),  # no colon
    (b"Host : x\r\n\r\n", 400, "headers"),  # space before the colon
    (b": x\r\n\r\n", 400, "headers"),  # no name
    (b"X(y): z\r\n\r\n", 400, "headers"),  # not a token
    (b"X-A: a\x00b\r\n\r\n", 400, "X-A"),
    (b"X-A: a\rb\r\n\r\n", 400, "X-A"),
    (b"Content-Length: 3\r\nContent-Length: 3\r\n\r\n", 400, "Content-Length"),
    (b"content-length: 3\r\nContent-Length: 4\r\n\r\n", 400, "Content-Length"),
    (b"Content-Length: 3, 3\r\n\r\n", 400, "Content-Length"),
    (b"Content-Length: -1\r\n\r\n", 400, "Content-Length"),
    (b"Content-Length: \r\n\r\n", 400, "Content-Length"),
    (b"Host: a\r\nHost: b\r\n\r\n", 400, "Host"),
    (b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "Transfer-Encoding"),
    (b"transfer-encoding: gzip\r\ncontent-length: 3\r\n\r\n", 400, "Transfer-Encoding"),
    (b"".join(b"X-%d: v\r\n" % k for k in range(MAX_FIELDS + 1)) + b"\r\n", 431, "headers"),
    (b"X-A: " + b"a" * MAX_LINE + b"\r\n\r\n", 431, "headers"),
    (b"".join(b"X-%d: %s\r\n" % (k, b"a" * 8000) for k in range(MAX_HEAD // 8000 + 1))
     + b"\r\n", 431, "headers"),
])
def test_a_bad_head_is_refused_naming_the_field(head: bytes, status: int, field: str) -> None:
    """RFC 9112's refusals: obs-fold, a name that is not a token, NUL or CR in a value, a
    second Content-Length or Host, a length that is not digits; too many fields: 431."""
    with pytest.raises(HeadError) as caught:
        _ours(head)
    assert (caught.value.status, caught.value.field) == (status, field)
    assert caught.value.message


def test_as_many_fields_and_as_long_a_line_as_allowed_are_read() -> None:
    """MAX_FIELDS fields, and a line of MAX_LINE bytes, are still a valid head."""
    head = b"".join(b"X-%d: v\r\n" % k for k in range(MAX_FIELDS)) + b"\r\n"
    assert len(_ours(head)) == MAX_FIELDS
    line = b"X-A: " + b"a" * (MAX_LINE - 7) + b"\r\n"
    assert len(line) == MAX_LINE and _ours(line + b"\r\n").get("x-a") == "a" * (MAX_LINE - 7)


@pytest.mark.parametrize(("line", "expected"), [
    (b"POST /dyncast/v1/metrics HTTP/1.1\r\n", ("POST", "/dyncast/v1/metrics", (1, 1))),
    (b"GET /x?a=b HTTP/1.0\n", ("GET", "/x?a=b", (1, 0))),
])
def test_a_request_line_is_read(line: bytes, expected: tuple) -> None:
    """Method, target and version of a well-formed request line."""
    assert request_line(line) == expected


@pytest.mark.parametrize(("line", "status"), [
    (b"GET /x\r\n", 400),  # HTTP/0.9
    (b"GET  /x HTTP/1.1\r\n", 400),
    (b"GET /x HTTP/1.1 extra\r\n", 400),
    (b"GET /x HTTP/1\r\n", 400),
    (b"GET /x HTTP/1.10\r\n", 400),
    (b"G(T /x HTTP/1.1\r\n", 400),
    (b"GET /x HTTP/2.0\r\n", 505),
])
def test_a_bad_request_line_is_refused(line: bytes, status: int) -> None:
    """A request line other than METHOD SP target SP HTTP/1.x is refused (505: not 1.x)."""
    with pytest.raises(HeadError) as caught:
        request_line(line)
    assert (caught.value.status, caught.value.field) == (status, "request line")

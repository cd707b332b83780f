"""The PACKET_IN fast path: the framework's parser for that one message, read with `struct`.

Boundary: the OpenFlow 1.3 PACKET_IN only, in whichever framework runs (Ryu or os-ken).
`install()` swaps the framework's parser for that message type for `_fast`, which gives the
app the framework's own `OFPPacketIn`, with the same attributes and values, for the message
every switch sends us: a match holding only `in_port` (what Open vSwitch sends for a packet
from table 0). It reads the header fields, the port and the frame with one `struct` call and
slices, where the framework builds its `OFPMatch` field by field through its OXM tables (about
a third of its cost per new flow); any other PACKET_IN goes to the framework's parser.

A datapath may carry a predicate (`SKIP_ATTR`, set by a cluster member for the switches it
may only observe: apps/cluster.py) called with the port and the frame before any object is
made: when it says so, the parser returns None, and the framework's receive loop (Ryu and
os-ken alike: `if msg:`) makes no event of it, so it is never queued to the app.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

OFPT_PACKET_IN = 10
OFPMT_OXM = 1
OXM_IN_PORT = 0x80000004  # OPENFLOW_BASIC, in_port, no mask, 4 bytes
# ofp_header, buffer_id, total_len, reason, table_id, cookie, then the match: type, length,
# its first OXM header and value
_HEAD = struct.Struct("!BBHIIHBBQHHII")
MATCH_LENGTH = 12  # type, length, one 4-byte OXM: padded to 16
DATA_OFFSET = 24 + 16 + 2  # the frame follows the padded match and 2 bytes of pad

SKIP_ATTR = "dyncast_skip_packet_in"  # on a datapath: (in_port, frame) -> True to drop it
Parser = Callable[..., Any]


def install(parser_module: Any) -> None:
    """Make `parser_module` (the framework's `ofproto_v1_3_parser`) parse PACKET_INs with the
    fast path; a second call changes nothing."""
    parsers = parser_module._MSG_PARSERS
    current = parsers[OFPT_PACKET_IN]
    if getattr(current, "fast_path", False):
        return
    parsers[OFPT_PACKET_IN] = _fast(parser_module.OFPPacketIn, _match_class(parser_module),
                                    current)


class _Lazy:
    """An attribute made on first read (then an ordinary instance attribute)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.make()
        return value


def _match_class(parser_module: Any) -> type:
    """The framework's OFPMatch, except that the state of its old (pre-OXM) API, which its
    constructor makes for every match and nothing reads for a received one, is made only
    when read."""
    base = parser_module.OFPMatch
    return type(base.__name__, (base,), {
        "__module__": base.__module__, "__doc__": base.__doc__,
        "_wc": _Lazy(parser_module.FlowWildcards), "_flow": _Lazy(parser_module.Flow),
        "fields": _Lazy(list)})


def _fast(packet_in: type, match_cls: type, framework: Parser) -> Parser:
    """A PACKET_IN parser making `packet_in` objects as `framework` does (see the module
    docstring), and calling `framework` for anything but an in_port-only match."""

    def parse(datapath: Any, version: int, msg_type: int, msg_len: int, xid: int,
              buf: Any) -> Any:
        if len(buf) < DATA_OFFSET:
            return framework(datapath, version, msg_type, msg_len, xid, buf)
        (_, _, _, _, buffer_id, total_len, reason, table_id, cookie, match_type, match_len,
         oxm, in_port) = _HEAD.unpack_from(buf)
        if match_type != OFPMT_OXM or match_len != MATCH_LENGTH or oxm != OXM_IN_PORT:
            return framework(datapath, version, msg_type, msg_len, xid, buf)
        skip = getattr(datapath, SKIP_ATTR, None)
        if skip is not None and skip(in_port, bytes(buf[DATA_OFFSET:DATA_OFFSET + total_len])):
            return None  # the framework makes no event of it (its receive loop: `if msg:`)
        msg = packet_in.__new__(packet_in)
        msg.datapath, msg.version, msg.msg_type, msg.msg_len, msg.xid = (
            datapath, version, msg_type, msg_len, xid)
        msg.buf = data = bytes(buf)
        msg.buffer_id, msg.total_len, msg.reason, msg.table_id, msg.cookie = (
            buffer_id, total_len, reason, table_id, cookie)
        match = match_cls.__new__(match_cls)
        match.type, match.length, match._fields2 = match_type, match_len, [("in_port", in_port)]
        msg.match = match
        data = data[DATA_OFFSET:]
        msg.data = data[:total_len] if total_len < len(data) else data
        return msg

    parse.fast_path = True  # type: ignore[attr-defined]
    return parse

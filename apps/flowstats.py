"""The flow-statistics fast path: OFPMP_FLOW replies read with `struct`, straight into the
core's `SwitchEntry` values.

Boundary: the OpenFlow 1.3 MULTIPART_REPLY of type FLOW only, in whichever framework runs.
`install()` wraps the framework's parser of MULTIPART_REPLY: a flow-statistics reply
becomes the framework's own `OFPFlowStatsReply` (same event, same `type`, `flags`, `xid`; a
subclass of the same name) whose `body` is read when first asked for (`_fast`): if the fast
path can read every entry (a match of the fields of `FIELDS`, unmasked or, but for MAC
addresses, masked; apply-actions whose set-fields are of those fields), a list of
`FlowStat`: the framework's attribute names and values for what the app reads (`cookie`,
`table_id`, `priority`, `match` as a dict, counters, durations), plus the entry as
`apps.flowread.entry_of` would make it (`switch_entry`); otherwise the body the framework's
parser gives the whole reply. Any other message goes to the framework's parser. Why: the
framework parses a 64 KB reply (about 500 host routes) field by field through its OXM tables
and address classes, 100-200 ms of the event loop per message (the periodic table read of a
switch with 5,000 host routes is ten of them).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from apps.flowread import FROM_NX, match_value
from controller.intents import SwitchEntry

OFPT_MULTIPART_REPLY = 19
OFPMP_FLOW = 1
OXM_BASIC, NXM_1 = 0x8000, 0x0001
OFPIT_APPLY_ACTIONS = 4
OFPAT_OUTPUT, OFPAT_SET_FIELD = 0, 25
_MP = struct.Struct("!HH4x")  # after the header
_STATS = struct.Struct("!HBxIIHHHH4xQQQ")  # ofp_flow_stats up to its match
_TL = struct.Struct("!HH")
_U32 = struct.Struct("!I")

MAC, IP, INT = "mac", "ip", "int"
# (OXM class, field number) -> (the framework's name, how its value is spelt, value length)
FIELDS: dict[tuple[int, int], tuple[str, str, int]] = {
    **{(OXM_BASIC, num): spec for num, spec in {
        0: ("in_port", INT, 4), 3: ("eth_dst", MAC, 6), 4: ("eth_src", MAC, 6),
        5: ("eth_type", INT, 2), 8: ("ip_dscp", INT, 1), 10: ("ip_proto", INT, 1),
        11: ("ipv4_src", IP, 4), 12: ("ipv4_dst", IP, 4), 13: ("tcp_src", INT, 2),
        14: ("tcp_dst", INT, 2), 15: ("udp_src", INT, 2), 16: ("udp_dst", INT, 2),
        19: ("icmpv4_type", INT, 1), 20: ("icmpv4_code", INT, 1), 21: ("arp_op", INT, 2),
        22: ("arp_spa", IP, 4), 23: ("arp_tpa", IP, 4), 24: ("arp_sha", MAC, 6),
        25: ("arp_tha", MAC, 6), 34: ("mpls_label", INT, 4)}.items()},
    (NXM_1, 34): ("tcp_flags_nxm", INT, 2),  # the services' SYN punts (a Nicira field)
    # registers (bucket labels, the health punts' marks) and the connection tracker's fields
    # (conntrack mode): Nicira fields, spelt as the frameworks spell them
    **{(NXM_1, num): (f"reg{num}", INT, 4) for num in range(16)},
    (NXM_1, 105): ("ct_state", INT, 4), (NXM_1, 106): ("ct_zone", INT, 2),
    (NXM_1, 107): ("ct_mark", INT, 4),
}

Parser = Callable[..., Any]


class Unreadable(Exception):
    """Something the fast path does not read: the framework parses the message."""


@dataclass(slots=True)
class FlowStat:
    """One entry of a flow-statistics reply, with the framework's attribute names."""

    length: int
    table_id: int
    duration_sec: int
    duration_nsec: int
    priority: int
    idle_timeout: int
    hard_timeout: int
    flags: int
    cookie: int
    packet_count: int
    byte_count: int
    match: dict[str, Any]
    switch_entry: SwitchEntry


def _value(kind: str, raw: bytes) -> Any:
    """A field's value as the framework spells it (addresses as text, the rest as ints)."""
    if kind == IP:
        return socket.inet_ntoa(raw)
    if kind == MAC:
        return raw.hex(":")
    return int.from_bytes(raw, "big")


def _oxm(buf: bytes, pos: int) -> tuple[str, Any, int]:
    """The OXM TLV at `pos`: (name, value as the framework spells it, its length)."""
    (head,) = _U32.unpack_from(buf, pos)
    size = head & 0xFF
    known = FIELDS.get((head >> 16, (head >> 9) & 0x7F))
    if known is None:
        raise Unreadable(f"OXM header {head:#x}")
    name, kind, width = known
    raw = buf[pos + 4:pos + 4 + size]
    if head & 0x100:
        if kind == MAC or size != 2 * width:
            raise Unreadable(f"masked {name}")
        return name, (_value(kind, raw[:width]), _value(kind, raw[width:])), 4 + size
    if size != width or len(raw) != size:
        raise Unreadable(f"{name} of {size} bytes")
    return name, _value(kind, raw), 4 + size


def _items(buf: bytes, pos: int, end: int, what: str) -> Iterator[tuple[int, int, int]]:
    """(type, offset, length) of each instruction or action from `pos` to `end`."""
    while pos < end:
        kind, length = _TL.unpack_from(buf, pos)
        if length < 8 or pos + length > end:
            raise Unreadable(f"{what} length {length}")
        yield kind, pos, length
        pos += length


def _sets(buf: bytes, pos: int, end: int) -> list[tuple[str, int | str]]:
    """What apply-actions set and output, as `apps.flowread.entry_of` spells them."""
    out: list[tuple[str, int | str]] = []
    for atype, at, _ in _items(buf, pos, end, "action"):
        if atype == OFPAT_SET_FIELD:
            name, value, _ = _oxm(buf, at + 4)
            if isinstance(value, tuple):
                raise Unreadable(f"masked set-field {name}")
            out.append((name, value.lower() if isinstance(value, str) else value))
        elif atype == OFPAT_OUTPUT:
            out.append(("output", _U32.unpack_from(buf, at + 4)[0]))
    return out


def read_stats(buf: bytes, offset: int, end: int) -> list[FlowStat]:
    """Every ofp_flow_stats from `offset` to `end`; raises Unreadable for what it cannot."""
    out = []
    while offset < end:
        (length, table, sec, nsec, prio, idle, hard, flags, ck, packets,
         nbytes) = _STATS.unpack_from(buf, offset)
        stop = offset + length
        mtype, mlen = _TL.unpack_from(buf, offset + _STATS.size)
        if length < _STATS.size + 8 or stop > end or mtype != 1 or mlen < 4:
            raise Unreadable("flow stats or match length")
        pos, mend = offset + _STATS.size + 4, offset + _STATS.size + mlen
        pairs: dict[str, Any] = {}
        while pos < mend:
            name, value, used = _oxm(buf, pos)
            pairs[name] = value
            pos += used
        sets: list[tuple[str, int | str]] = []
        for itype, at, ilen in _items(buf, mend + (-mlen % 8), stop, "instruction"):
            if itype == OFPIT_APPLY_ACTIONS:
                sets += _sets(buf, at + 8, at + ilen)
        fields = tuple(sorted((FROM_NX.get(k, k), match_value(FROM_NX.get(k, k), v))
                              for k, v in pairs.items()))
        entry = SwitchEntry(ck, table, prio, fields, tuple(sets), sec + nsec / 1e9, packets)
        out.append(FlowStat(length, table, sec, nsec, prio, idle, hard, flags, ck, packets,
                            nbytes, pairs, entry))
        offset = stop
    return out


def install(parser_module: Any, pause: Callable[[], None] | None = None) -> None:
    """Make `parser_module` (the framework's `ofproto_v1_3_parser`) read flow-statistics
    replies with the fast path, each when its body is first read and after `pause` (letting
    the event loop run); a second call changes nothing."""
    parsers = parser_module._MSG_PARSERS
    current = parsers[OFPT_MULTIPART_REPLY]
    if getattr(current, "fast_path", False):
        return
    parsers[OFPT_MULTIPART_REPLY] = _fast(parser_module.OFPFlowStatsReply, current, pause)


def _deferred(reply_cls: type) -> type:
    """`reply_cls` whose `body` is read when first asked for (`_read`, set by `_fast`). Same
    class name, so the framework raises the same event for it (`ofp_msg_to_ev` goes by it)."""

    def get(msg: Any) -> Any:
        read = msg.__dict__.pop("_read", None)
        if read is not None:
            msg.__dict__["_body"] = read()
        return msg.__dict__.get("_body")

    def put(msg: Any, value: Any) -> None:
        msg.__dict__.pop("_read", None)
        msg.__dict__["_body"] = value

    return type(reply_cls.__name__, (reply_cls,), {
        "body": property(get, put), "__qualname__": reply_cls.__qualname__,
        "__doc__": "A flow-statistics reply read when its body is first asked for."})


def _fast(reply_cls: type, framework: Parser, pause: Callable[[], None] | None = None
          ) -> Parser:
    """A MULTIPART_REPLY parser that reads flow statistics itself (module docstring) and
    calls `framework` for everything else. A flow-statistics reply's body is read only when
    first asked for (by the app's handler, in its own green thread), after `pause` if given,
    and by `framework` whole if the fast path cannot read it. Why: the framework's receive
    loop parses a switch's messages one after another and answers its echo requests in
    between; one table read at 5,000 instances is nine 64 KB replies (3.6 ms of CPU each to
    read), and read there, even with a pause before each, they held that switch's next echo
    request back by up to ~100 ms, the loop running everything else nine times over before
    reaching it. Deferred, the receive loop only queues them; the app's handler reads them,
    a reply a turn."""
    cls = _deferred(reply_cls)

    def parse(datapath: Any, version: int, msg_type: int, msg_len: int, xid: int,
              buf: Any) -> Any:
        if len(buf) < 16 or _MP.unpack_from(buf, 8)[0] != OFPMP_FLOW:
            return framework(datapath, version, msg_type, msg_len, xid, buf)
        data = bytes(buf)

        def read() -> Any:
            if pause is not None:
                pause()
            try:
                return read_stats(data, 16, min(msg_len, len(data)))
            except (Unreadable, struct.error, OSError, ValueError):
                return framework(datapath, version, msg_type, msg_len, xid,
                                 bytearray(data)).body

        msg = cls(datapath)
        msg.version, msg.msg_type, msg.msg_len, msg.xid, msg.buf = (
            version, msg_type, msg_len, xid, data)
        msg.type, msg.flags = _MP.unpack_from(data, 8)
        msg.__dict__["_read"] = read
        return msg

    parse.fast_path = True  # type: ignore[attr-defined]
    parse.framework = framework  # type: ignore[attr-defined]
    return parse

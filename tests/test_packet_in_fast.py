"""The PACKET_IN fast path (apps/packet_in.py): for every message the framework's own parser
gives the same object, attribute for attribute, under Ryu and os-ken."""

from __future__ import annotations

import importlib
import struct
from typing import Any

from apps import packet_in
from bench import ofgen
from tests.fakes import FakeDatapath

FRAME = ofgen.tcp_syn(ofgen.mac("00:00:00:00:00:01"), ofgen.mac("02:dc:00:00:00:01"),
                      ofgen.ip("10.0.0.1"), ofgen.ip("10.0.100.1"), 40000, 8000)


def _two_fields(xid: int, in_port: int, data: bytes) -> bytes:
    """A PACKET_IN whose match holds in_port and metadata (the fast path declines it)."""
    oxm = struct.pack("!IIIQ", 0x80000004, in_port, 0x80000408, 0x1234)
    match = struct.pack("!HH", 1, 4 + len(oxm)) + oxm + bytes(4)  # 24 bytes, padded to 32
    body = struct.pack("!IHBBQ", 0xFFFFFFFF, len(data), 1, 0, 7) + match + b"\0\0"
    return struct.pack("!BBHI", 4, 10, 8 + len(body) + len(data), xid) + body + data


def _fields(msg: Any) -> dict[str, Any]:
    """Everything an app can read from a parsed PACKET_IN."""
    return {"class": type(msg), "datapath": msg.datapath, "version": msg.version,
            "msg_type": msg.msg_type, "msg_len": msg.msg_len, "xid": msg.xid, "buf": msg.buf,
            "buffer_id": msg.buffer_id, "total_len": msg.total_len, "reason": msg.reason,
            "table_id": msg.table_id, "cookie": msg.cookie, "data": msg.data,
            "match": msg.match.to_jsondict(), "match_len": msg.match.length,
            "in_port": msg.match["in_port"], "str": str(msg)}


def test_fast_path_gives_the_frameworks_packet_in(dp: FakeDatapath) -> None:
    """In_port-only matches (fast), a wider match (the framework's), a frame shorter than the
    data the switch padded: the same message object either way, and the same event."""
    parser = dp.ofproto_parser
    packet_in.install(parser)
    packet_in.install(parser)  # idempotent
    fast = parser._MSG_PARSERS[packet_in.OFPT_PACKET_IN]
    assert getattr(fast, "fast_path", False)
    ofproto_parser = importlib.import_module(f"{dp.framework}.ofproto.ofproto_parser")
    ofp_event = importlib.import_module(f"{dp.framework}.controller.ofp_event")
    padded = bytearray(ofgen.packet_in(9, 3, FRAME + bytes(6)))
    struct.pack_into("!H", padded, 12, len(FRAME))  # total_len: the frame without the padding
    messages = [ofgen.packet_in(7, 3, FRAME, cookie=0xDC01, table_id=0),
                ofgen.packet_in(8, 0xFFFFFF00, b"", reason=0), bytes(padded),
                _two_fields(10, 4, FRAME)]
    for buf in messages:
        version, msg_type, length, xid = ofproto_parser.header(buf)
        want = parser.OFPPacketIn.parser(dp, version, msg_type, length, xid, buf)
        got = ofproto_parser.msg(dp, version, msg_type, length, xid, bytearray(buf))
        assert _fields(got) == _fields(want)
        assert type(ofp_event.ofp_msg_to_ev(got)) is type(ofp_event.ofp_msg_to_ev(want))
        assert isinstance(got.match, parser.OFPMatch)
    assert _fields(got)["match"] != {"OFPMatch": {"oxm_fields": [], "length": 12, "type": 1}}


def test_short_message_goes_to_the_framework(dp: FakeDatapath) -> None:
    """A PACKET_IN too short to hold the fast path's fields is the framework's to judge."""
    calls = []
    parse = packet_in._fast(dp.ofproto_parser.OFPPacketIn, dp.ofproto_parser.OFPMatch,
                            lambda *args: calls.append(args) or "framework")
    assert parse(dp, 4, 10, 30, 1, bytes(30)) == "framework" and len(calls) == 1

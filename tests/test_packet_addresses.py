"""The IPv4 addresses of a parsed packet are their dotted-quad text, the first time and from
the kept texts alike, whatever buffer type holds the frame."""

from __future__ import annotations

import socket
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.network.packet import parse

ADDR = st.integers(0, 0xFFFFFFFF)


def frame(src: int, dst: int, frag: int) -> bytes:
    """An Ethernet + IPv4 + TCP header with these addresses and fragment field."""
    eth = bytes.fromhex("020000000001" "02dc00000001") + b"\x08\x00"
    ip = struct.pack("!BBHHHBBHII", 0x45, 0, 40, 0, frag, 64, 6, 0, src, dst)
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, 0, 0, 0x50, 0x02, 0, 0, 0)
    return eth + ip + tcp


@settings(max_examples=300, deadline=None)
@given(ADDR, ADDR, st.sampled_from((0, 0x4000, 0x2001, 0x1FFF)))
def test_addresses_are_their_dotted_quads(src: int, dst: int, frag: int) -> None:
    """Source and destination text as inet_ntoa gives it, twice (the second from the kept
    texts), from bytes, bytearray and memoryview; ports only for a first fragment."""
    data = frame(src, dst, frag)
    for buf in (data, bytearray(data), memoryview(data), data):
        pkt = parse(buf)
        assert pkt is not None
        assert (pkt.ip_src, pkt.ip_dst) == (socket.inet_ntoa(struct.pack("!I", src)),
                                            socket.inet_ntoa(struct.pack("!I", dst)))
        assert (pkt.l4_src, pkt.l4_dst) == ((40000, 80) if frag & 0x1FFF == 0 else (None, None))

"""A one-shot ICMP echo (the machine has no `ping`): `python icmp_ping.py DST [TIMEOUT_S]`.

Prints `reply from DST in X ms` and exits 0, or prints `no reply from DST` and exits 1.
Needs a raw socket, so run it as root (inside a Mininet host).
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import time

ECHO_REQUEST, ECHO_REPLY = 8, 0


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes = b"dyncast-harness") -> bytes:
    """An ICMP echo request with a valid checksum."""
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, checksum(header + payload), ident,
                       seq) + payload


def ping(dst: str, timeout: float) -> float | None:
    """Round-trip time in ms of one echo to `dst`, or None without a reply within `timeout` s."""
    ident = os.getpid() & 0xFFFF
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        start = time.monotonic()
        deadline = start + timeout
        sock.sendto(echo_request(ident, 1), (dst, 0))
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, (src, _) = sock.recvfrom(2048)
            except TimeoutError:
                break
            ihl = (data[0] & 0x0F) * 4
            kind, _, _, rid, _ = struct.unpack("!BBHHH", data[ihl:ihl + 8])
            if kind == ECHO_REPLY and rid == ident and src == dst:
                return (time.monotonic() - start) * 1000
    return None


def main() -> int:
    """Ping once and report."""
    dst = sys.argv[1]
    rtt = ping(dst, float(sys.argv[2]) if len(sys.argv) > 2 else 1.0)
    print(f"no reply from {dst}" if rtt is None else f"reply from {dst} in {rtt:.2f} ms")
    return 1 if rtt is None else 0


if __name__ == "__main__":
    sys.exit(main())

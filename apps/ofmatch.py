"""The match of a FlowMod as OpenFlow 1.3 OXM bytes, packed with `struct` (apps/ofmsg.py's fast
encoder uses it for matches and set-field actions).

Boundary: shell, pure functions over plain values (no framework, no I/O). The bytes are those
the framework's OFPMatch serialises (tests/test_ofmsg_encode.py compares them on every kind of
intent the core makes); anything not known here raises `Unsupported`, and the caller goes
through the framework instead.

A new flow's two entries bring new ports every time, so a match is packed from a plan made
once per tuple of field names (`_plan`: the packing order, and for an integer field its OXM
header and range): an integer field in range is its header and its bytes; any other field is
looked up in `_oxm_cache` (addresses repeat: hosts, D-SIDs, instances) or packed and cached.
"""

from __future__ import annotations

import socket
import struct
from operator import itemgetter
from typing import Any, TypeGuard

from controller.intents import MatchValue

_MAC = 1
_IPV4 = 2
# OXM (OPENFLOW_BASIC) fields: name -> (field number, value length, encoding); an int field's
# value is packed big-endian in its length
_OXM: dict[str, tuple[int, int, int]] = {
    "in_port": (0, 4, 0), "eth_dst": (3, 6, _MAC), "eth_src": (4, 6, _MAC),
    "eth_type": (5, 2, 0), "ip_dscp": (8, 1, 0), "ip_proto": (10, 1, 0),
    "ipv4_src": (11, 4, _IPV4), "ipv4_dst": (12, 4, _IPV4), "tcp_src": (13, 2, 0),
    "tcp_dst": (14, 2, 0), "udp_src": (15, 2, 0), "udp_dst": (16, 2, 0),
    "icmpv4_type": (19, 1, 0), "icmpv4_code": (20, 1, 0), "arp_op": (21, 2, 0),
    "arp_spa": (22, 4, _IPV4), "arp_tpa": (23, 4, _IPV4), "arp_sha": (24, 6, _MAC),
    "arp_tha": (25, 6, _MAC),
    "tcp_flags": (34, 2, 0),  # Nicira NXM_NX_TCP_FLAGS (see _OXM_CLASS)
    "reg0": (0, 4, 0),  # Nicira NXM_NX_REG0: an instance's label (learn/bucket entries)
}
_OXM_CLASS = {"tcp_flags": 0x0001, "reg0": 0x0001}  # not OPENFLOW_BASIC (0x8000): `_order`
_oxm_cache: dict[tuple[str, MatchValue], bytes] = {}
# integer fields of the OpenFlow basic class: name -> (OXM header, upper bound, value length)
_INT_HEADS = {name: (struct.pack("!I", (0x8000 << 16) | (num << 9) | size), 1 << (8 * size), size)
              for name, (num, size, kind) in _OXM.items() if kind == 0 and name not in _OXM_CLASS}
# field names -> packing plan: (index in the match, OXM header or None, bound, length) each
_Plan = tuple[tuple[int, bytes | None, int, int], ...]
_plans: dict[tuple[str, ...], _Plan] = {}
_name_of = itemgetter(0)
_TL = struct.Struct("!HH")
_PADS = tuple(bytes(-n % 8) for n in range(8))  # padding of a match of length n (mod 8)


class Unsupported(Exception):
    """The fast encoder does not handle this intent; use the framework's serialiser."""


def oxm_tlv(name: str, value: MatchValue) -> bytes:
    """One OXM TLV (header + value [+ mask]), as the framework encodes it."""
    key = (name, value)
    tlv = _oxm_cache.get(key)
    if tlv is not None:
        return tlv
    spec = _OXM.get(name)
    if spec is None:
        raise Unsupported(name)
    num, size, kind = spec
    mask = None
    if isinstance(value, tuple):  # (value, mask): integer fields only
        value, mask = value
        if kind != 0 or not _fits(mask, size):  # an address mask: the framework's
            raise Unsupported(f"{name}={value!r}/{mask!r}")
    if kind == _MAC:
        if not isinstance(value, str) or len(value) != 17 or value.count(":") != 5:
            raise Unsupported(f"{name}={value!r}")
        try:
            raw = bytes.fromhex(value.replace(":", ""))
        except ValueError:
            raise Unsupported(f"{name}={value!r}") from None
    elif kind == _IPV4:
        if not isinstance(value, str) or value.count(".") != 3:
            raise Unsupported(f"{name}={value!r}")
        try:
            raw = socket.inet_aton(value)
        except OSError:
            raise Unsupported(f"{name}={value!r}") from None
    else:
        if not _fits(value, size):
            raise Unsupported(f"{name}={value!r}")
        raw = value.to_bytes(size, "big")
        if mask is not None:
            raw += mask.to_bytes(size, "big")
    oxm_class = _OXM_CLASS.get(name, 0x8000)
    tlv = struct.pack("!I", (oxm_class << 16) | (num << 9) | ((mask is not None) << 8)
                      | len(raw)) + raw
    if len(_oxm_cache) < 100_000:  # addresses repeat (hosts, D-SIDs, instances); ports too
        _oxm_cache[key] = tlv
    return tlv


def _fits(value: object, size: int) -> TypeGuard[int]:
    """True for an int (not a bool) that fits in `size` bytes unsigned."""
    return (isinstance(value, int) and not isinstance(value, bool)
            and 0 <= value < 1 << (8 * size))


def encode_match(fields: tuple[tuple[str, Any], ...]) -> bytes:
    """An OXM match as the framework builds it: standard fields in OXM-number order (the
    framework sorts them so), then the Nicira ones; padded."""
    names = tuple(map(_name_of, fields))
    plan = _plans.get(names)
    if plan is None:
        plan = _plan(names)
    cached = _oxm_cache.get
    parts = []
    add = parts.append
    for i, head, bound, size in plan:
        field = fields[i]
        value = field[1]
        if head is not None and type(value) is int and 0 <= value < bound:
            add(head + value.to_bytes(size, "big"))  # a port: new flows bring new ones
        else:
            add(cached(field) or oxm_tlv(*field))  # a field is its own cache key
    body = b"".join(parts)
    length = 4 + len(body)
    return _TL.pack(1, length) + body + _PADS[length % 8]


def _plan(names: tuple[str, ...]) -> _Plan:
    """How to pack a match with these field names (kept for the next, up to 1,000 shapes)."""
    order = sorted(range(len(names)), key=lambda i: _order(names[i]))
    plan = tuple((i, *_INT_HEADS[names[i]]) if names[i] in _INT_HEADS else (i, None, 0, 0)
                 for i in order)
    if len(_plans) < 1_000:
        _plans[names] = plan
    return plan


def _order(name: str) -> int:
    """Where a field goes in a match (unknown ones first: they raise Unsupported anyway). The
    framework sorts by its own OXM type numbers: a Nicira class-1 field (reg0) before the
    standard ones, tcp_flags (its ONF experimenter field) after them."""
    spec = _OXM.get(name)
    if spec is None:
        return -1
    if name == "tcp_flags":
        return 2000 + spec[0]
    return spec[0] + (0 if name in _OXM_CLASS else 1000)

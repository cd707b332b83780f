"""A binding's affinity entries packed from a template: the new-flow path's FLOW_MODs.

Boundary: shell, pure functions over plain values (no framework, no I/O); used by
apps/ofmsg.py's `encode`, whose bytes these are.

Every new flow's two entries differ from the previous flow's to the same instance only in
their transaction id, cookie and 5-tuple: same table, priority, timeouts, flags and
instructions (the rewrites are one tuple per instance and service: `affinity._rewrites`).
So the first entry of each actions tuple is packed field by field (`ofmsg._flow_mod`) and
kept, cut into its constant parts, as a template (`learn`; a later one with other fields
replaces it); the next ones are one `struct` call over those parts and the per-flow fields
(`flow_mod`), where the field-by-field way builds the match TLV by TLV and the message in
five pieces. A template is taken only for a 5-tuple match in `match()`'s order, and only when
it gives back the very bytes it was cut from; an entry that differs from it in anything but
the per-flow fields gets None (the caller packs it field by field). Past `_MAX_TEMPLATES` the
table is cleared (tuples of instances long gone) and refilled as entries come.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import NamedTuple

from apps.ofmatch import Unsupported, oxm_tlv
from controller.intents import FlowMod

# OXM headers (OPENFLOW_BASIC, no mask) of the 5-tuple's fields, in packing order
_ETH_TYPE, _IP_PROTO, _IPV4_SRC, _IPV4_DST = 0x80000A02, 0x80001401, 0x80001604, 0x80001804
_L4 = {"tcp_dst": (0x80001C02, "tcp_src", 0x80001A02),  # field in match()'s order 5th ->
       "udp_dst": (0x80002002, "udp_src", 0x80001E02)}  # (its header, the 6th, its header)
_MATCH_LEN = 4 + 6 + 5 + 8 + 8 + 6 + 6  # type, length, the six TLVs (padded to 48)
_HEAD_END, _MATCH_END = 48, 96  # the fixed part of an ofp_flow_mod; the padded match
_MAX_TEMPLATES = 10_000
_MAX_ADDRESSES = 100_000


class Template(NamedTuple):
    """The constant parts of one actions tuple's entries."""

    actions: tuple[object, ...]  # held: its id, the key, is not reused meanwhile
    fixed: tuple[object, ...]  # the FlowMod fields the bytes depend on, but for the per-flow
    pack: struct.Struct  # version, type, length; xid; cookie; the rest of the head; match; tail
    head: bytes  # version, type, length
    rest: bytes  # cookie mask, table, command, timeouts, priority, buffer, out port/group, flags
    tail: bytes  # the instructions (meter, the actions, goto)
    usable: bool  # False: these fields' entries are not 5-tuple ones (pack them field by field)


_templates: dict[int, Template] = {}
_ipv4: dict[str, bytes] = {}  # dotted quad -> 4 bytes (as the field-by-field way reads it)


def _fixed(fm: FlowMod) -> tuple[object, ...]:
    """What of a FlowMod a template stands for, besides its actions."""
    return (fm.table, fm.priority, fm.goto, fm.idle_timeout, fm.hard_timeout, fm.command,
            fm.notify_removal, fm.cookie_mask, fm.meter)


def _address(text: object, field: str) -> bytes:
    """An IPv4 address's 4 bytes; Unsupported where the field-by-field way would not pack it."""
    raw = _ipv4.get(text)  # type: ignore[call-overload]
    if raw is None:
        if not isinstance(text, str):
            raise Unsupported(field)
        raw = oxm_tlv(field, text)[4:]
        if len(_ipv4) >= _MAX_ADDRESSES:
            _ipv4.clear()  # (clients come and go) the ones in use are read again
        _ipv4[text] = raw
    return raw


def flow_mod(fm: FlowMod, xid: int) -> bytes | None:
    """`fm`'s bytes with transaction id `xid` from its actions' template; None when there is
    none or `fm` is not the template's kind of entry."""
    t = _templates.get(id(fm.actions))
    if t is None or t.actions is not fm.actions or not t.usable or _fixed(fm) != t.fixed:
        return None
    return _pack(t, fm, xid)


def _pack(t: Template, fm: FlowMod, xid: int) -> bytes | None:
    """`fm`'s bytes from template `t` (None: `fm` is not a 5-tuple entry as `t` packs one)."""
    try:
        (n0, eth), (n1, proto), (n2, dst), (n3, src), (n4, dport), (n5, sport) = fm.match
        dst_head, src_name, src_head = _L4[n4]
        if (n0 != "eth_type" or n1 != "ip_proto" or n2 != "ipv4_dst" or n3 != "ipv4_src"
                or n5 != src_name or type(eth) is not int or type(proto) is not int
                or type(sport) is not int or type(dport) is not int):
            return None
        return t.pack.pack(t.head, xid, fm.cookie, t.rest, 1, _MATCH_LEN, _ETH_TYPE, eth,
                           _IP_PROTO, proto, _IPV4_SRC, _address(src, "ipv4_src"), _IPV4_DST,
                           _address(dst, "ipv4_dst"), src_head, sport, dst_head, dport,
                           t.tail)
    except (ValueError, KeyError, TypeError, struct.error, Unsupported):
        return None  # another shape, or a value the field-by-field way must judge


@lru_cache(maxsize=64)
def _message(tail: int) -> struct.Struct:
    """The layout of an entry whose instructions take `tail` bytes."""
    return struct.Struct(f"!4sIQ32sHHIHIBI4sI4sIHIH5x{tail}s")


def learn(fm: FlowMod, raw: bytes) -> None:
    """Keep `raw`, `fm`'s bytes packed field by field, as its actions' template when it is a
    5-tuple entry and the template gives `raw` back (replacing one of other fields: the
    service's timeouts changed). When it is not, the actions keep a template that answers
    nothing for entries with `fm`'s fields, so that their next entries are not tried again."""
    key, fixed = id(fm.actions), _fixed(fm)
    old = _templates.get(key)
    if not fm.actions or (old is not None and old.actions is fm.actions and old.fixed == fixed):
        return  # no actions to key on; this entry's kind is known
    if old is None and len(_templates) >= _MAX_TEMPLATES:
        _templates.clear()  # (the tuples of instances long gone among them) made again on use
    tail = raw[_MATCH_END:]
    t = Template(fm.actions, fixed, _message(len(tail)), raw[:4], raw[16:_HEAD_END], tail,
                 True)
    if _pack(t, fm, int.from_bytes(raw[4:8], "big")) != raw:
        t = t._replace(usable=False)  # not a 5-tuple entry (or not as this module reads one)
    _templates[key] = t

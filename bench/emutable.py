"""An emulated switch's flow table: what a controller's FLOW_MODs leave in it, read back as a
real switch answers a flow-statistics request.

Kept as bytes: an entry is its table, priority and match (the match's OXM TLVs in any order
name the same entry), with the cookie, timeouts, flags and instructions it was last given.
FLOW_MOD commands follow OpenFlow 1.3 (section 6.4): ADD replaces the entry with the same
table, priority and match; MODIFY and MODIFY_STRICT replace the instructions of the entries
they select and never add; DELETE and DELETE_STRICT remove them, with a FLOW_REMOVED for
those flagged SEND_FLOW_REM. Non-strict commands select every entry at least as specific as
the request's match (any priority); strict ones the very entry. Both filter by cookie under
the cookie mask and, for deletes, by out_port and out_group. A table id of OFPTT_ALL spans
every table. An OFPMP_FLOW request is answered with every selected entry, in as many
multipart replies as it takes to keep each under 64 KB (REPLY_MORE on all but the last), as
OVS does. No packet ever hits an entry here, so an idle timeout runs from the last ADD.

Boundary: bench code, bytes in and out; no sockets (bench/emuswitch.py owns those).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

OFPFC_ADD, OFPFC_MODIFY, OFPFC_MODIFY_STRICT, OFPFC_DELETE, OFPFC_DELETE_STRICT = range(5)
OFPTT_ALL = 0xFF
OFPP_ANY = 0xFFFFFFFF
OFPG_ANY = 0xFFFFFFFF
OFPFF_SEND_FLOW_REM = 1
OFPRR_IDLE_TIMEOUT, OFPRR_HARD_TIMEOUT, OFPRR_DELETE = 0, 1, 2
OFPT_FLOW_REMOVED, OFPT_MULTIPART_REPLY = 11, 19
OFPMP_FLOW = 1
OFPMPF_REPLY_MORE = 1
OFPIT_WRITE_ACTIONS, OFPIT_APPLY_ACTIONS = 3, 4
OFPAT_OUTPUT, OFPAT_GROUP = 0, 22
MAX_MESSAGE = 0xFFFF  # an OpenFlow message's length field

_HEADER = struct.Struct("!BBHI")
_FLOW_MOD = struct.Struct("!QQBBHHHIIIH2x")  # after the header; the match follows at 48
_FLOW_STATS_REQ = struct.Struct("!B3xII4xQQ")  # after the multipart header; match at 48
_FLOW_STATS = struct.Struct("!HBxIIHHHH4xQQQ")
_FLOW_REMOVED = struct.Struct("!QHBBIIHHQQ")
_MP = struct.Struct("!HH4x")
_TL = struct.Struct("!HH")

Field = tuple[int, int]  # (OXM class, field number)
Fields = dict[Field, tuple[bytes, bytes | None]]  # -> (value, mask or None)


def parse_match(msg: bytes, off: int) -> tuple[bytes, Fields, int]:
    """The OXM match at `off`: its TLVs sorted (the entry's identity), its fields, and the
    offset after its padding."""
    mtype, length = _TL.unpack_from(msg, off)
    if mtype != 1 or length < 4:
        raise ValueError(f"match type {mtype}, length {length}: expected OXM")
    tlvs, fields = [], {}
    pos, end = off + 4, off + length
    while pos < end:
        (head,) = struct.unpack_from("!I", msg, pos)
        size = head & 0xFF
        tlv = msg[pos:pos + 4 + size]
        if len(tlv) != 4 + size:
            raise ValueError("truncated OXM field")
        tlvs.append(tlv)
        key = (head >> 16, (head >> 9) & 0x7F)
        if head & 0x100:  # masked: value then mask, each half the size
            half = size // 2
            fields[key] = (tlv[4:4 + half], tlv[4 + half:])
        else:
            fields[key] = (tlv[4:], None)
        pos += 4 + size
    return b"".join(sorted(tlvs)), fields, end + (-length % 8)


def _covers(entry: Fields, request: Fields) -> bool:
    """True when every field of the request's match holds for the entry's (the entry is at
    least as specific: a masked request field needs the entry's value to agree under it)."""
    for key, (value, mask) in request.items():
        have = entry.get(key)
        if have is None:
            return False
        hvalue, hmask = have
        if mask is None:
            if hmask is not None or hvalue != value:
                return False
            continue
        m = int.from_bytes(mask, "big")
        if (int.from_bytes(hvalue, "big") & m) != (int.from_bytes(value, "big") & m):
            return False
        if hmask is not None and int.from_bytes(hmask, "big") & m != m:
            return False
    return True


def _outputs(instructions: bytes) -> tuple[set[int], set[int]]:
    """The ports and groups an entry's apply- and write-actions send to."""
    ports: set[int] = set()
    groups: set[int] = set()
    pos = 0
    while pos + 4 <= len(instructions):
        itype, length = _TL.unpack_from(instructions, pos)
        if length < 4:
            break
        if itype in (OFPIT_APPLY_ACTIONS, OFPIT_WRITE_ACTIONS):
            apos, end = pos + 8, pos + length
            while apos + 8 <= end:
                atype, alen = _TL.unpack_from(instructions, apos)
                if alen < 8:
                    break
                if atype == OFPAT_OUTPUT:
                    ports.add(struct.unpack_from("!I", instructions, apos + 4)[0])
                elif atype == OFPAT_GROUP:
                    groups.add(struct.unpack_from("!I", instructions, apos + 4)[0])
                apos += alen
        pos += length
    return ports, groups


@dataclass(slots=True)
class Entry:
    """One flow entry."""

    table: int
    priority: int
    match: bytes  # the ofp_match as received, padded
    fields: Fields
    cookie: int
    idle: int
    hard: int
    flags: int
    instructions: bytes
    added: float

    def stats(self, now: float) -> bytes:
        """The entry as an ofp_flow_stats (no packet ever counted)."""
        age = max(now - self.added, 0.0)
        sec = int(age)
        length = _FLOW_STATS.size + len(self.match) + len(self.instructions)
        return _FLOW_STATS.pack(length, self.table, sec, int((age - sec) * 1e9), self.priority,
                                self.idle, self.hard, self.flags, self.cookie, 0, 0
                                ) + self.match + self.instructions

    def removed(self, reason: int, now: float) -> bytes:
        """The FLOW_REMOVED message for the entry's end."""
        age = max(now - self.added, 0.0)
        sec = int(age)
        body = _FLOW_REMOVED.pack(self.cookie, self.priority, reason, self.table, sec,
                                  int((age - sec) * 1e9), self.idle, self.hard, 0, 0
                                  ) + self.match
        return _HEADER.pack(4, OFPT_FLOW_REMOVED, 8 + len(body), 0) + body


Key = tuple[int, int, bytes]  # table, priority, sorted match TLVs


@dataclass
class Select:
    """Which entries a FLOW_MOD or flow-statistics request names."""

    table: int
    priority: int
    ident: bytes
    fields: Fields
    cookie: int
    cookie_mask: int
    out_port: int = OFPP_ANY
    out_group: int = OFPG_ANY


class FlowTable:
    """Every entry a switch holds, by (table, priority, match)."""

    def __init__(self) -> None:
        self.entries: dict[Key, Entry] = {}
        self._timed: set[Key] = set()  # entries with an idle or hard timeout
        self.flow_mods = 0

    def __len__(self) -> int:
        return len(self.entries)

    # --- FLOW_MOD -------------------------------------------------------------------------
    def flow_mod(self, msg: bytes, now: float) -> list[bytes]:
        """Apply a FLOW_MOD; return the FLOW_REMOVED messages it causes."""
        self.flow_mods += 1
        (cookie, cookie_mask, table, command, idle, hard, priority, _buffer, out_port,
         out_group, flags) = _FLOW_MOD.unpack_from(msg, 8)
        ident, fields, off = parse_match(msg, 48)
        match = msg[48:off]
        if len(match) != off - 48:
            raise ValueError("FLOW_MOD shorter than its match")
        instructions = msg[off:]
        if command == OFPFC_ADD:
            key = (table, priority, ident)
            self.entries[key] = Entry(table, priority, match, fields, cookie, idle, hard,
                                      flags, instructions, now)
            if idle or hard:
                self._timed.add(key)
            else:
                self._timed.discard(key)
            return []
        sel = Select(table, priority, ident, fields, cookie, cookie_mask, out_port, out_group)
        strict = command in (OFPFC_MODIFY_STRICT, OFPFC_DELETE_STRICT)
        keys = self._select(sel, strict, outputs=command in (OFPFC_DELETE, OFPFC_DELETE_STRICT))
        if command in (OFPFC_MODIFY, OFPFC_MODIFY_STRICT):
            for key in keys:
                self.entries[key].instructions = instructions
            return []
        if command in (OFPFC_DELETE, OFPFC_DELETE_STRICT):
            return self._remove(keys, OFPRR_DELETE, now)
        raise ValueError(f"FLOW_MOD command {command}")

    def _select(self, sel: Select, strict: bool, outputs: bool) -> list[Key]:
        """The keys of the entries `sel` names."""
        if strict:
            tables: Iterable[int] = range(256) if sel.table == OFPTT_ALL else (sel.table,)
            found = [k for k in ((t, sel.priority, sel.ident) for t in tables)
                     if k in self.entries]
        else:
            found = [k for k, e in self.entries.items()
                     if (sel.table == OFPTT_ALL or e.table == sel.table)
                     and _covers(e.fields, sel.fields)]
        if sel.cookie_mask:
            found = [k for k in found if self.entries[k].cookie & sel.cookie_mask
                     == sel.cookie & sel.cookie_mask]
        if outputs and (sel.out_port != OFPP_ANY or sel.out_group != OFPG_ANY):
            kept = []
            for k in found:
                ports, groups = _outputs(self.entries[k].instructions)
                if ((sel.out_port == OFPP_ANY or sel.out_port in ports)
                        and (sel.out_group == OFPG_ANY or sel.out_group in groups)):
                    kept.append(k)
            found = kept
        return found

    def _remove(self, keys: Iterable[Key], reason: int, now: float) -> list[bytes]:
        out = []
        for key in keys:
            entry = self.entries.pop(key)
            self._timed.discard(key)
            if entry.flags & OFPFF_SEND_FLOW_REM:
                out.append(entry.removed(reason, now))
        return out

    def expire(self, now: float) -> list[bytes]:
        """End the entries whose idle or hard timeout ran out (no packet ever hits one here);
        return their FLOW_REMOVED messages."""
        idle, hard = [], []
        for key in self._timed:
            e = self.entries[key]
            if e.hard and now - e.added >= e.hard:
                hard.append(key)
            elif e.idle and now - e.added >= e.idle:
                idle.append(key)
        return self._remove(hard, OFPRR_HARD_TIMEOUT, now) + self._remove(
            idle, OFPRR_IDLE_TIMEOUT, now)

    # --- OFPMP_FLOW -----------------------------------------------------------------------
    def flow_stats(self, msg: bytes, now: float) -> list[bytes]:
        """The multipart replies to an OFPMP_FLOW request, each under 64 KB."""
        xid = _HEADER.unpack_from(msg, 0)[3]
        table, out_port, out_group, cookie, cookie_mask = _FLOW_STATS_REQ.unpack_from(msg, 16)
        ident, fields, _ = parse_match(msg, 48)
        sel = Select(table, 0, ident, fields, cookie, cookie_mask, out_port, out_group)
        bodies = [self.entries[k].stats(now) for k in self._select(sel, False, outputs=True)]
        return multipart(xid, OFPMP_FLOW, bodies)


def multipart(xid: int, mp_type: int, bodies: list[bytes]) -> list[bytes]:
    """Multipart replies carrying `bodies` in order, as many to a message as fit in 64 KB;
    every reply but the last flagged REPLY_MORE (one empty reply for no bodies)."""
    head = _HEADER.size + _MP.size
    parts: list[list[bytes]] = [[]]
    size = head
    for body in bodies:
        if parts[-1] and size + len(body) > MAX_MESSAGE:
            parts.append([])
            size = head
        parts[-1].append(body)
        size += len(body)
    out = []
    for i, part in enumerate(parts):
        payload = b"".join(part)
        flags = OFPMPF_REPLY_MORE if i < len(parts) - 1 else 0
        out.append(_HEADER.pack(4, OFPT_MULTIPART_REPLY, head + len(payload), xid)
                   + _MP.pack(mp_type, flags) + payload)
    return out

"""OpenFlow 1.3 messages built and parsed with `struct`, for the cbench-style load generator.

Switch side: HELLO, FEATURES_REPLY, PORT_DESC and PORT_STATS multipart replies, ECHO and
BARRIER replies, PACKET_IN. Controller side (for the echo-responder sink): FEATURES_REQUEST,
PORT_DESC request, FLOW_MOD, PACKET_OUT. Parsers for what a controller sends back: FLOW_MOD
(cookie, timeouts, OXM match, apply-actions and goto) and PACKET_OUT (actions and data), and
the 5-tuple of an Ethernet/IPv4/TCP frame. Nothing here imports Ryu or os-ken, so the
generator's cost is its own.

Addresses are kept as raw bytes (4 for IPv4, 6 for MAC) and numbers as ints throughout.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

OFP_VERSION = 4
# message types
OFPT_HELLO = 0
OFPT_ERROR = 1
OFPT_ECHO_REQUEST = 2
OFPT_ECHO_REPLY = 3
OFPT_FEATURES_REQUEST = 5
OFPT_FEATURES_REPLY = 6
OFPT_GET_CONFIG_REQUEST = 7
OFPT_GET_CONFIG_REPLY = 8
OFPT_PACKET_IN = 10
OFPT_PACKET_OUT = 13
OFPT_FLOW_MOD = 14
OFPT_MULTIPART_REQUEST = 18
OFPT_MULTIPART_REPLY = 19
OFPT_BARRIER_REQUEST = 20
OFPT_BARRIER_REPLY = 21
OFPT_ROLE_REQUEST = 24
OFPT_ROLE_REPLY = 25
# multipart types
OFPMP_PORT_STATS = 4
OFPMP_PORT_DESC = 13
# misc
OFP_NO_BUFFER = 0xFFFFFFFF
OFPP_CONTROLLER = 0xFFFFFFFD
OFPP_ANY = 0xFFFFFFFF
OFPG_ANY = 0xFFFFFFFF
OFPR_ACTION = 1
OFPFC_ADD = 0
OFPFF_SEND_FLOW_REM = 1
OFPIT_GOTO_TABLE = 1
OFPIT_APPLY_ACTIONS = 4
OFPAT_OUTPUT = 0
OFPAT_SET_FIELD = 25
OFPCML_NO_BUFFER = 0xFFFF

HEADER = struct.Struct("!BBHI")
_FEATURES = struct.Struct("!QIBB2xII")
_MP = struct.Struct("!HH4x")
_PORT = struct.Struct("!I4x6s2x16sIIIIIIII")
_PORT_STATS = struct.Struct("!I4x12QII")
_PACKET_IN = struct.Struct("!IHBBQ")
_FLOW_MOD = struct.Struct("!QQBBHHHIIIH2x")
_PACKET_OUT = struct.Struct("!IIH6x")
_TL = struct.Struct("!HH")
_OXM = struct.Struct("!I")
_OUTPUT = struct.Struct("!HHIH6x")

# OXM (class OPENFLOW_BASIC) fields the controllers use: name -> (field number, value length)
OXM_FIELDS: dict[str, tuple[int, int]] = {
    "in_port": (0, 4), "eth_dst": (3, 6), "eth_src": (4, 6), "eth_type": (5, 2),
    "ip_proto": (10, 1), "ipv4_src": (11, 4), "ipv4_dst": (12, 4), "tcp_src": (13, 2),
    "tcp_dst": (14, 2), "udp_src": (15, 2), "udp_dst": (16, 2),
}
_OXM_NAMES = {num: name for name, (num, _) in OXM_FIELDS.items()}
_BYTES_FIELDS = {"eth_dst", "eth_src", "ipv4_src", "ipv4_dst"}
OxmValue = int | bytes


def ip(text: str) -> bytes:
    """The 4 bytes of a dotted IPv4 address."""
    return socket.inet_aton(text)


def mac(text: str) -> bytes:
    """The 6 bytes of a colon-separated MAC address."""
    return bytes.fromhex(text.replace(":", ""))


def header(msg_type: int, length: int, xid: int) -> bytes:
    """An OpenFlow 1.3 header."""
    return HEADER.pack(OFP_VERSION, msg_type, length, xid)


def message(msg_type: int, xid: int, body: bytes = b"") -> bytes:
    """A whole message: header + body."""
    return HEADER.pack(OFP_VERSION, msg_type, 8 + len(body), xid) + body


def split(buf: bytearray) -> tuple[list[tuple[int, int, bytes]], int]:
    """Complete messages at the front of `buf` as (type, xid, whole message), and how many
    bytes they took (the caller deletes them)."""
    out = []
    off = 0
    end = len(buf)
    unpack = HEADER.unpack_from
    while end - off >= 8:
        _, msg_type, length, xid = unpack(buf, off)
        if length < 8:
            raise ValueError(f"OpenFlow message with length {length}")
        if end - off < length:
            break
        out.append((msg_type, xid, bytes(buf[off:off + length])))
        off += length
    return out, off


# --- switch side ----------------------------------------------------------------------------
def hello(xid: int = 1) -> bytes:
    """HELLO without elements (version 1.3 from the header)."""
    return message(OFPT_HELLO, xid)


def features_reply(xid: int, dpid: int, n_buffers: int = 0, n_tables: int = 254) -> bytes:
    """FEATURES_REPLY for datapath `dpid` (capabilities: flow, table and port stats)."""
    return message(OFPT_FEATURES_REPLY, xid, _FEATURES.pack(dpid, n_buffers, n_tables, 0, 0x7, 0))


def port_desc_reply(xid: int, dpid: int, ports: list[int]) -> bytes:
    """PORT_DESC multipart reply: `ports` up, 10 Gb/s copper, locally administered MACs."""
    body = b"".join(
        _PORT.pack(p, struct.pack("!HI", 0x0200 | (dpid & 0xFF), p), f"s{dpid}-eth{p}".encode(),
                   0, 0x4, 0x2840, 0, 0, 0, 10_000_000, 10_000_000)
        for p in ports)
    return message(OFPT_MULTIPART_REPLY, xid, _MP.pack(OFPMP_PORT_DESC, 0) + body)


def port_stats_reply(xid: int, ports: list[int]) -> bytes:
    """PORT_STATS multipart reply with zero counters for `ports`."""
    body = b"".join(_PORT_STATS.pack(p, *([0] * 12), 1, 0) for p in ports)
    return message(OFPT_MULTIPART_REPLY, xid, _MP.pack(OFPMP_PORT_STATS, 0) + body)


def multipart_reply(xid: int, mp_type: int, body: bytes = b"") -> bytes:
    """A multipart reply of any type (empty by default)."""
    return message(OFPT_MULTIPART_REPLY, xid, _MP.pack(mp_type, 0) + body)


def multipart_type(msg: bytes) -> int:
    """The multipart type of a MULTIPART_REQUEST/REPLY."""
    return int(_MP.unpack_from(msg, 8)[0])


def packet_in(xid: int, in_port: int, data: bytes, cookie: int = 0, table_id: int = 0,
              reason: int = OFPR_ACTION) -> bytes:
    """PACKET_IN carrying the whole frame (no buffer), match = in_port."""
    oxm = _OXM.pack(0x80000000 | (0 << 9) | 4) + struct.pack("!I", in_port)
    match = _TL.pack(1, 4 + len(oxm)) + oxm + bytes(4)  # 12 bytes, padded to 16
    body = _PACKET_IN.pack(OFP_NO_BUFFER, len(data), reason, table_id, cookie) + match + b"\0\0"
    return header(OFPT_PACKET_IN, 8 + len(body) + len(data), xid) + body + data


PACKET_IN_DATA_OFFSET = 8 + _PACKET_IN.size + 16 + 2  # where the frame starts in packet_in()


def echo_reply(request: bytes) -> bytes:
    """The ECHO_REPLY to an ECHO_REQUEST (same xid and data)."""
    _, _, length, xid = HEADER.unpack_from(request, 0)
    return header(OFPT_ECHO_REPLY, length, xid) + request[8:length]


def barrier_reply(xid: int) -> bytes:
    """BARRIER_REPLY."""
    return message(OFPT_BARRIER_REPLY, xid)


# --- frames -------------------------------------------------------------------------------
def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = int(sum(struct.unpack(f"!{len(data) // 2}H", data)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_syn(src_mac: bytes, dst_mac: bytes, src: bytes, dst: bytes, sport: int,
            dport: int) -> bytes:
    """Ethernet/IPv4/TCP SYN (60 bytes with padding; IP and TCP checksums correct)."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, 0x02, 64240, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
    iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, 6, 0, src, dst)
    iph = iph[:10] + struct.pack("!H", _checksum(iph)) + iph[12:]
    return dst_mac + src_mac + b"\x08\x00" + iph + tcp + bytes(6)


def arp_announce(src_mac: bytes, src: bytes) -> bytes:
    """A gratuitous ARP request (sender = target = `src`), broadcast, 60 bytes."""
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, src_mac, src, bytes(6), src)
    return b"\xff" * 6 + src_mac + b"\x08\x06" + arp + bytes(18)


FiveTuple = tuple[bytes, bytes, int, int, int]


def five_tuple(frame: bytes) -> FiveTuple | None:
    """(ip src, ip dst, proto, sport, dport) of an untagged Ethernet/IPv4 TCP/UDP frame."""
    if len(frame) < 38 or frame[12:14] != b"\x08\x00":
        return None
    l4 = 14 + (frame[14] & 0x0F) * 4
    sport, dport = _TL.unpack_from(frame, l4)
    return frame[26:30], frame[30:34], frame[23], sport, dport


# --- controller side (the sink) -----------------------------------------------------------
def features_request(xid: int) -> bytes:
    """FEATURES_REQUEST."""
    return message(OFPT_FEATURES_REQUEST, xid)


def port_desc_request(xid: int) -> bytes:
    """PORT_DESC multipart request."""
    return message(OFPT_MULTIPART_REQUEST, xid, _MP.pack(OFPMP_PORT_DESC, 0))


def oxm(name: str, value: OxmValue) -> bytes:
    """One OXM TLV (unmasked)."""
    num, size = OXM_FIELDS[name]
    raw = value if isinstance(value, bytes) else value.to_bytes(size, "big")
    if len(raw) != size:
        raise ValueError(f"{name}: {len(raw)} bytes, expected {size}")
    return _OXM.pack(0x80000000 | (num << 9) | size) + raw


def encode_match(fields: list[tuple[str, OxmValue]], ordered: bool = True) -> bytes:
    """An OXM match (type 1) padded to 8 bytes; fields in OXM field-number order (as Ryu and
    os-ken serialise them; it meets the prerequisite order), or as given if not `ordered`."""
    if ordered:
        fields = sorted(fields, key=lambda f: OXM_FIELDS[f[0]][0])
    body = b"".join(oxm(n, v) for n, v in fields)
    raw = _TL.pack(1, 4 + len(body)) + body
    return raw + bytes(-len(raw) % 8)


def encode_actions(actions: list[tuple[str, object]]) -> bytes:
    """Actions: ("output", port) or ("set_field", (name, value))."""
    out = b""
    for kind, arg in actions:
        if kind == "output":
            assert isinstance(arg, int)
            max_len = OFPCML_NO_BUFFER if arg == OFPP_CONTROLLER else 0
            out += _OUTPUT.pack(OFPAT_OUTPUT, 16, arg, max_len)
        else:
            assert isinstance(arg, tuple)
            tlv = oxm(*arg)
            raw_len = 4 + len(tlv)
            pad = -raw_len % 8
            out += _TL.pack(OFPAT_SET_FIELD, raw_len + pad) + tlv + bytes(pad)
    return out


def flow_mod(xid: int, match: list[tuple[str, OxmValue]], actions: list[tuple[str, object]],
             goto: int | None = None, cookie: int = 0, table_id: int = 0, priority: int = 0,
             idle_timeout: int = 0, hard_timeout: int = 0, flags: int = 0,
             command: int = OFPFC_ADD, out_port: int = OFPP_ANY,
             out_group: int = OFPG_ANY, ordered_match: bool = True) -> bytes:
    """FLOW_MOD (no buffer) with apply-actions then goto."""
    inst = b""
    if actions:
        acts = encode_actions(actions)
        inst += _TL.pack(OFPIT_APPLY_ACTIONS, 8 + len(acts)) + bytes(4) + acts
    if goto is not None:
        inst += _TL.pack(OFPIT_GOTO_TABLE, 8) + struct.pack("!B3x", goto)
    body = _FLOW_MOD.pack(cookie, 0, table_id, command, idle_timeout, hard_timeout, priority,
                          OFP_NO_BUFFER, out_port, out_group, flags)
    body += encode_match(match, ordered_match) + inst
    return message(OFPT_FLOW_MOD, xid, body)


def packet_out(xid: int, in_port: int, actions: list[tuple[str, object]], data: bytes) -> bytes:
    """PACKET_OUT with the frame's data (no buffer)."""
    acts = encode_actions(actions)
    return message(OFPT_PACKET_OUT, xid,
                   _PACKET_OUT.pack(OFP_NO_BUFFER, in_port, len(acts)) + acts + data)


# --- parsers of what controllers send -----------------------------------------------------
@dataclass(slots=True)
class FlowModMsg:
    """The parts of a FLOW_MOD the verifier checks."""

    cookie: int
    table_id: int
    command: int
    idle_timeout: int
    hard_timeout: int
    priority: int
    flags: int
    match: dict[str, OxmValue]
    actions: list[tuple[str, object]] = field(default_factory=list)  # apply-actions
    goto: int | None = None


@dataclass(slots=True)
class PacketOutMsg:
    """The parts of a PACKET_OUT the verifier checks."""

    buffer_id: int
    in_port: int
    actions: list[tuple[str, object]]
    data: bytes


def _oxm_value(name: str, raw: bytes) -> OxmValue:
    return raw if name in _BYTES_FIELDS else int.from_bytes(raw, "big")


def decode_match(msg: bytes, off: int) -> tuple[dict[str, OxmValue], int]:
    """The OXM match at `off` as {name: value} (masked or unknown fields keep their raw
    bytes under "oxm:<class>:<field>"), and the offset after its padding."""
    mtype, length = _TL.unpack_from(msg, off)
    if mtype != 1:
        raise ValueError(f"match type {mtype}, expected OXM (1)")
    fields: dict[str, OxmValue] = {}
    pos, end = off + 4, off + length
    while pos < end:
        (head,) = _OXM.unpack_from(msg, pos)
        cls, num, masked, size = head >> 16, (head >> 9) & 0x7F, head & 0x100, head & 0xFF
        raw = msg[pos + 4:pos + 4 + size]
        name = _OXM_NAMES.get(num) if cls == 0x8000 and not masked else None
        if name is None:
            fields[f"oxm:{cls:#x}:{num}{'/m' if masked else ''}"] = raw
        else:
            fields[name] = _oxm_value(name, raw)
        pos += 4 + size
    return fields, off + length + (-length % 8)


def decode_actions(msg: bytes, off: int, end: int) -> list[tuple[str, object]]:
    """Actions between `off` and `end`: ("output", port), ("set_field", (name, value)) or
    ("type<N>", raw bytes) for anything else."""
    out: list[tuple[str, object]] = []
    while off < end:
        atype, length = _TL.unpack_from(msg, off)
        if length < 8:
            raise ValueError(f"action length {length}")
        if atype == OFPAT_OUTPUT:
            out.append(("output", _OUTPUT.unpack_from(msg, off)[2]))
        elif atype == OFPAT_SET_FIELD:
            (head,) = _OXM.unpack_from(msg, off + 4)
            num, size = (head >> 9) & 0x7F, head & 0xFF
            name = _OXM_NAMES.get(num, f"oxm{num}")
            out.append(("set_field", (name, _oxm_value(name, msg[off + 8:off + 8 + size]))))
        else:
            out.append((f"type{atype}", msg[off:off + length]))
        off += length
    return out


def decode_flow_mod(msg: bytes) -> FlowModMsg:
    """Parse a FLOW_MOD (apply-actions and goto-table instructions; others are ignored)."""
    (cookie, _, table_id, command, idle, hard, prio, _, _, _, flags) = _FLOW_MOD.unpack_from(
        msg, 8)
    match, off = decode_match(msg, 48)
    fm = FlowModMsg(cookie, table_id, command, idle, hard, prio, flags, match)
    end = len(msg)
    while off + 4 <= end:
        itype, length = _TL.unpack_from(msg, off)
        if length < 8:
            raise ValueError(f"instruction length {length}")
        if itype == OFPIT_APPLY_ACTIONS:
            fm.actions += decode_actions(msg, off + 8, off + length)
        elif itype == OFPIT_GOTO_TABLE:
            fm.goto = msg[off + 4]
        off += length
    return fm


def decode_packet_out(msg: bytes) -> PacketOutMsg:
    """Parse a PACKET_OUT."""
    buffer_id, in_port, actions_len = _PACKET_OUT.unpack_from(msg, 8)
    start = 8 + _PACKET_OUT.size
    return PacketOutMsg(buffer_id, in_port, decode_actions(msg, start, start + actions_len),
                        msg[start + actions_len:])

"""The one place that turns core intents into OpenFlow 1.3 messages (Ryu or os-ken parser).

Works on any object with `ofproto` and `ofproto_parser` attributes, so tests can serialise the
messages with a stand-in datapath and no switch.

`encode` is the packet-in path's fast way to the same bytes: it packs a FlowMod or PacketOut
intent with `struct` directly, byte for byte what the framework's parser serialises (the
tests compare the two on every kind of intent the core makes), at a fraction of the cost (the
framework builds an OFPMatch and converts every address through netaddr). Anything it does
not know (a masked address, an unlisted match field, an address in another notation) goes through
`to_message` and the framework's serialiser instead.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from apps import oftemplate
from apps.ofgroups import group_mod
from apps.ofmatch import Unsupported, encode_match, oxm_tlv
from controller.intents import (
    PORT_ANY,
    PORT_CONTROLLER,
    Action,
    Ct,
    CtFlush,
    FlowMod,
    Group,
    GroupMod,
    Intent,
    Learn,
    Move,
    Output,
    PacketOut,
    PopMpls,
    PushMpls,
    Resubmit,
    SetField,
)

# intent field names that the framework spells as Nicira extensions in OpenFlow 1.3
_NX_FIELDS = {"tcp_flags": "tcp_flags_nxm"}
NX_IN_PORT_IGNORE = 0xFFF8  # resubmit: keep the packet's in_port
MOVE_FIELDS = {"eth_dst": 3, "eth_src": 4, "arp_spa": 22, "arp_tpa": 23, "arp_sha": 24,
               "arp_tha": 25}  # OXM field numbers (OpenFlow basic class)
NXAST_REG_MOVE = 6
_REG_MOVE = struct.Struct("!HHIHHHHII")
MOVE_BITS = {"eth_src": 48, "eth_dst": 48, "arp_sha": 48, "arp_tha": 48, "arp_spa": 32,
             "arp_tpa": 32}  # the fields a Move may copy, and their width


NXAST_LEARN2 = 45
_LEARN_FIXED = 22  # nx_action_learn's fields after the subtype, before the specs
_LEARN2_EXTRA = struct.Struct("!IHH")  # limit, result_dst_ofs, pad


def _learn(parser: Any, act: Learn) -> Any:
    """NXActionLearn for a Learn intent; with a limit, NXAST_LEARN2 (Ryu and os-ken have no
    class for it: the same body with limit, result offset and padding after the fixed fields,
    as an NXActionUnknown of that subtype)."""
    specs = []
    for spec in act.specs:
        src = (spec.src, 0) if spec.src is not None else spec.value
        cls = parser.NXFlowSpecMatch if spec.kind == "match" else parser.NXFlowSpecLoad
        specs.append(cls(src=src, dst=(spec.dst, 0), n_bits=spec.bits))
    learn = parser.NXActionLearn(table_id=act.table, specs=specs,
                                 idle_timeout=act.idle_timeout, hard_timeout=act.hard_timeout,
                                 priority=act.priority, cookie=act.cookie)
    if not act.limit:
        return learn
    body = bytes(learn.serialize_body())
    body = body[:_LEARN_FIXED] + _LEARN2_EXTRA.pack(act.limit, 0, 0) + body[_LEARN_FIXED:]
    body += bytes(-(10 + len(body)) % 8)  # experimenter header and subtype: 10 bytes
    return parser.NXActionUnknown(NXAST_LEARN2, body)


NX_CT_F_COMMIT = 1
NX_CT_RECIRC_NONE = 0xFF  # no recirculation: the packet goes on untracked
NX_NAT_F_DST = 2


def _ct(parser: Any, act: Ct) -> Any:
    """NXActionCT for a Ct intent: an immediate zone; nat and set ct_mark nested in it. A NAT
    names the address alone (the frameworks encode a port range one field short)."""
    nested: list[Any] = []
    if act.nat_dst is not None:
        nested.append(parser.NXActionNAT(flags=NX_NAT_F_DST, range_ipv4_min=act.nat_dst,
                                         range_ipv4_max=act.nat_dst))
    elif act.nat:
        nested.append(parser.NXActionNAT(flags=0))
    if act.mark is not None:
        nested.append(parser.OFPActionSetField(ct_mark=act.mark))
    return parser.NXActionCT(
        flags=NX_CT_F_COMMIT if act.commit else 0, zone_src="", zone_ofs_nbits=act.zone,
        recirc_table=NX_CT_RECIRC_NONE if act.table is None else act.table, alg=0,
        actions=nested)


def _extension(dp: Any, act: Action) -> Any:
    """Actions beyond output and set-field: Nicira resubmit and learn, MPLS push and pop."""
    parser = dp.ofproto_parser
    if isinstance(act, Resubmit):
        return parser.NXActionResubmitTable(in_port=NX_IN_PORT_IGNORE, table_id=act.table)
    if isinstance(act, PushMpls):
        return parser.OFPActionPushMpls(act.ethertype)
    if isinstance(act, PopMpls):
        return parser.OFPActionPopMpls(act.ethertype)
    if isinstance(act, Learn):
        return _learn(parser, act)
    if isinstance(act, Ct):
        return _ct(parser, act)
    if isinstance(act, Group):
        return parser.OFPActionGroup(act.group_id)
    if isinstance(act, Move):
        return parser.NXActionRegMove(src_field=act.src, dst_field=act.dst,
                                      n_bits=MOVE_BITS[act.src])
    raise TypeError(f"no OpenFlow action for {act!r}")


def _actions(dp: Any, actions: tuple[Action, ...]) -> list[Any]:
    """OpenFlow actions for intent actions."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    out: list[Any] = []
    for act in actions:
        if isinstance(act, SetField):
            out.append(parser.OFPActionSetField(**{act.field: act.value}))
        elif not isinstance(act, Output):
            out.append(_extension(dp, act))
        elif act.port == PORT_CONTROLLER:
            out.append(parser.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER))
        else:
            out.append(parser.OFPActionOutput(act.port, 0))
    return out


def flow_mod(dp: Any, fm: FlowMod) -> Any:
    """An OFPFlowMod for a FlowMod intent."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    commands = {"add": ofp.OFPFC_ADD, "delete": ofp.OFPFC_DELETE,
                "delete_strict": ofp.OFPFC_DELETE_STRICT}
    inst = []
    if fm.meter is not None:
        inst.append(parser.OFPInstructionMeter(fm.meter, ofp.OFPIT_METER))
    if fm.actions:
        inst.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, _actions(dp, fm.actions)))
    if fm.goto is not None:
        inst.append(parser.OFPInstructionGotoTable(fm.goto))
    return parser.OFPFlowMod(
        datapath=dp, cookie=fm.cookie, cookie_mask=fm.cookie_mask, table_id=fm.table,
        command=commands[fm.command], idle_timeout=fm.idle_timeout,
        hard_timeout=fm.hard_timeout, priority=fm.priority, buffer_id=ofp.OFP_NO_BUFFER,
        out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
        flags=ofp.OFPFF_SEND_FLOW_REM if fm.notify_removal else 0,
        match=_match(parser, fm.match), instructions=inst)


def _match(parser: Any, fields: Any) -> Any:
    """An OFPMatch; extension fields with prerequisites (tcp_flags) go after the standard ones
    (the framework sorts by OXM class, which would put them first: OVS refuses that)."""
    named = {_NX_FIELDS.get(k, k): v for k, v in fields}
    late = {k: v for k, v in named.items() if k in _NX_FIELDS.values()}
    if not late:
        return parser.OFPMatch(**named)
    head = parser.OFPMatch(**{k: v for k, v in named.items() if k not in late})
    return parser.OFPMatch(_ordered_fields=[*head._fields2, *late.items()])


def packet_out(dp: Any, po: PacketOut) -> Any:
    """An OFPPacketOut carrying the packet's data (never a switch buffer)."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    in_port = ofp.OFPP_CONTROLLER if po.in_port is None else po.in_port
    return parser.OFPPacketOut(datapath=dp, buffer_id=ofp.OFP_NO_BUFFER, in_port=in_port,
                               actions=_actions(dp, po.actions), data=po.data)


NX_VENDOR_ID = 0x00002320
NXT_CT_FLUSH = 32
NXT_CT_REPLY_TUPLE, NXT_CT_ZONE_ID = 1, 2  # NXT_CT_FLUSH properties
NXT_CT_SRC, NXT_CT_SRC_PORT = 0, 2  # ... nested in a tuple


def _prop(kind: int, value: bytes) -> bytes:
    """An OpenFlow property (type, length, value), padded to 8 bytes."""
    length = 4 + len(value)
    return struct.pack("!HH", kind, length) + value + bytes(-length % 8)


def ct_flush_body(act: CtFlush) -> bytes:
    """The body of an NXT_CT_FLUSH (OVS 3.1): the protocol (7 zero bytes follow), the reply
    direction's source (an IPv4-mapped IPv6 address) and port, and the zone; fields left out
    match anything."""
    mapped = bytes(10) + b"\xff\xff" + socket.inet_aton(act.reply_src)
    reply = (_prop(NXT_CT_SRC, mapped)
             + _prop(NXT_CT_SRC_PORT, struct.pack("!H2x", act.reply_sport)))  # 16 bits, 8 long
    nested = struct.pack("!HH4x", NXT_CT_REPLY_TUPLE, 8 + len(reply)) + reply  # 8-aligned
    return (struct.pack("!B7x", act.ip_proto) + nested
            + _prop(NXT_CT_ZONE_ID, struct.pack("!H2x", act.zone)))


def to_message(dp: Any, intent: Intent) -> Any:
    """The OpenFlow message for any intent."""
    if isinstance(intent, FlowMod):
        return flow_mod(dp, intent)
    if isinstance(intent, CtFlush):
        return dp.ofproto_parser.OFPExperimenter(dp, NX_VENDOR_ID, NXT_CT_FLUSH,
                                                 ct_flush_body(intent))
    return group_mod(dp, intent) if isinstance(intent, GroupMod) else packet_out(dp, intent)


# --- the fast encoder ---------------------------------------------------------------------
OFP_VERSION = 4
OFPT_PACKET_OUT = 13
OFPT_FLOW_MOD = 14
OFP_NO_BUFFER = 0xFFFFFFFF
OFPG_ANY = 0xFFFFFFFF
OFPCML_NO_BUFFER = 0xFFFF
OFPFF_SEND_FLOW_REM = 1
_COMMANDS = {"add": 0, "delete": 3, "delete_strict": 4}
_HEADER = struct.Struct("!BBHI")
_FLOW_MOD = struct.Struct("!BBHIQQBBHHHIIIH2x")  # header + ofp_flow_mod up to the match
_PACKET_OUT = struct.Struct("!BBHIIIH6x")  # header + ofp_packet_out up to the actions
_OUTPUT = struct.Struct("!HHIH6x")
_TL = struct.Struct("!HH")
_GOTO = struct.Struct("!HHB3x")
_METER = struct.Struct("!HHI")
_RESUBMIT = struct.Struct("!HHIHHB3x")  # Nicira experimenter action: resubmit(in_port, table)
NX_VENDOR = 0x2320
NXAST_RESUBMIT_TABLE = 14
_actions_cache: dict[tuple[Action, ...], bytes] = {}
# the same tuple of actions again (the core makes a binding's rewrites once per instance):
# found by identity, without hashing its actions
_actions_by_id: dict[int, tuple[tuple[Action, ...], bytes]] = {}


def _encode_actions(actions: tuple[Action, ...]) -> bytes:
    """Actions as `_actions` builds them (output to the controller: no buffering). A binding's
    actions repeat for every flow to the same instance: packed once, then looked up."""
    seen = _actions_by_id.get(id(actions))
    if seen is not None and seen[0] is actions:
        return seen[1]
    raw = _actions_cache.get(actions)
    if raw is None:
        raw = _pack_actions(actions)
        if len(_actions_cache) < 10_000:
            _actions_cache[actions] = raw
    if len(_actions_by_id) < 10_000:  # the entry holds the tuple: its id is not reused
        _actions_by_id[id(actions)] = (actions, raw)
    return raw


def _oxm_header(name: str) -> int:
    """The OXM header of an OpenFlow-basic field, as a Move names it."""
    return (0x8000 << 16) | (MOVE_FIELDS[name] << 9) | (MOVE_BITS[name] // 8)


def _pack_actions(actions: tuple[Action, ...]) -> bytes:
    """Pack `actions` (see `_encode_actions`)."""
    out = []
    for act in actions:
        if isinstance(act, Resubmit):
            out.append(_RESUBMIT.pack(0xFFFF, 16, NX_VENDOR, NXAST_RESUBMIT_TABLE,
                                      NX_IN_PORT_IGNORE, act.table))
            continue
        if isinstance(act, Move):
            out.append(_REG_MOVE.pack(0xFFFF, 24, NX_VENDOR, NXAST_REG_MOVE,
                                      MOVE_BITS[act.src], 0, 0, _oxm_header(act.src),
                                      _oxm_header(act.dst)))
            continue
        if not isinstance(act, SetField | Output):
            raise Unsupported(type(act).__name__)
        if isinstance(act, SetField):
            tlv = oxm_tlv(act.field, act.value)
            length = 4 + len(tlv)
            pad = -length % 8
            out.append(_TL.pack(25, length + pad) + tlv + bytes(pad))
        else:
            max_len = OFPCML_NO_BUFFER if act.port == PORT_CONTROLLER else 0
            out.append(_OUTPUT.pack(0, 16, act.port, max_len))
    return b"".join(out)


def encode(intent: Intent, xid: int) -> bytes:
    """The OpenFlow 1.3 bytes of an intent with transaction id `xid`, exactly as
    `to_message(dp, intent)` serialises; raises Unsupported for what only it can encode.
    A binding's entry (a 5-tuple match, actions seen before) is packed from its template
    (`apps/oftemplate.py`); the first of its shape is packed here and becomes one."""
    if isinstance(intent, FlowMod):
        raw = oftemplate.flow_mod(intent, xid)
        if raw is None:
            raw = _flow_mod(intent, xid)
            oftemplate.learn(intent, raw)
        return raw
    if not isinstance(intent, PacketOut):
        raise Unsupported(type(intent).__name__)
    acts = _encode_actions(intent.actions)
    in_port = PORT_CONTROLLER if intent.in_port is None else intent.in_port
    return _PACKET_OUT.pack(OFP_VERSION, OFPT_PACKET_OUT, 24 + len(acts) + len(intent.data),
                            xid, OFP_NO_BUFFER, in_port, len(acts)) + acts + intent.data


def _flow_mod(intent: FlowMod, xid: int) -> bytes:
    """A FlowMod's bytes, packed field by field (see `encode`)."""
    command = _COMMANDS.get(intent.command)
    if command is None:
        raise Unsupported(intent.command)
    body = encode_match(intent.match)
    if intent.meter is not None:
        body += _METER.pack(6, 8, intent.meter)  # OFPIT_METER, first: it runs first
    if intent.actions:
        acts = _encode_actions(intent.actions)
        body += _TL.pack(4, 8 + len(acts)) + b"\0\0\0\0" + acts
    if intent.goto is not None:
        body += _GOTO.pack(1, 8, intent.goto)
    return _FLOW_MOD.pack(
        OFP_VERSION, OFPT_FLOW_MOD, 48 + len(body), xid, intent.cookie, intent.cookie_mask,
        intent.table, command, intent.idle_timeout, intent.hard_timeout, intent.priority,
        OFP_NO_BUFFER, PORT_ANY, OFPG_ANY,
        OFPFF_SEND_FLOW_REM if intent.notify_removal else 0) + body


def serialise(dp: Any, intents: list[Intent]) -> bytes:
    """All of `intents` for one datapath as one byte string, taking transaction ids from the
    datapath's counter in order, as its `send_msg` would. If one cannot be serialised at all,
    the ones before it are sent (as one `send_msg` per intent would have) and the error raised.
    """
    max_xid = dp.ofproto.MAX_XID
    out = []
    try:
        for intent in intents:
            dp.xid = (dp.xid + 1) & max_xid
            try:
                out.append(encode(intent, dp.xid))
            except Unsupported:
                msg = to_message(dp, intent)
                msg.set_xid(dp.xid)
                msg.serialize()
                out.append(bytes(msg.buf))
    except Exception:
        if out:
            dp.send(b"".join(out))
        raise
    return b"".join(out)

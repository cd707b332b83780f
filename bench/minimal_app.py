"""The reference for bench/cbench.py: a minimal reactive Ryu/os-ken app.

One flow-mod per packet-in and nothing else: the 5-tuple is sliced out of the frame with
`struct` (untagged IPv4 TCP/UDP only), and an entry matching in_port and the 5-tuple, with
output to port 2 and a 30 s idle timeout, is installed. No topology, no host learning, no
packet-out, no store. It runs under the same patched framework as the Dyncast app:

    dyncast-manager --framework ryu --ofp-tcp-listen-port 6653 bench/minimal_app.py

With env CBENCH_MINIMAL_ENCODER=struct the flow-mod's bytes are packed with `struct` (the same
bytes, see `raw_flow_mod`) instead of built through the framework's OFPMatch/OFPFlowMod
classes: the floor of the framework's own packet-in path. With env CBENCH_MINIMAL_OFCONN=1 it
also installs apps/ofconn.py (chunked reads, batched writes; the Dyncast app does not): what that
change to the framework's connection loops gives the floor itself.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # loaded by path from the manager: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps import ofconn
from apps.framework import (
    MAIN_DISPATCHER,
    App,
    Datapath,
    ofp_event,
    ofproto_v1_3,
    set_ev_cls,
)

_PORTS = struct.Struct("!HH")
OUT_PORT = 2
PRIORITY = 10
IDLE_TIMEOUT = 30
_FLOW_MOD = struct.Struct("!BBHIQQBBHHHIIIH2x")
_INSTRUCTIONS = struct.pack("!HH4xHHIH6x", 4, 24, 0, 16, OUT_PORT, 0)  # apply: output:2


def raw_flow_mod(xid: int, in_port: int, src: bytes, dst: bytes, proto: int, sport: int,
                 dport: int) -> bytes:
    """The FLOW_MOD the framework serialises for this app, packed directly (OXM fields in
    field-number order: in_port, eth_type, ip_proto, ipv4_src, ipv4_dst, L4 ports)."""
    l4 = (13, 14) if proto == 6 else (15, 16)
    match = struct.pack("!HHIIIHIBI4sI4sIHIH5x", 1, 51, 0x80000004, in_port, 0x80000A02, 0x0800,
                        0x80001401, proto, 0x80001604, src, 0x80001804, dst,
                        0x80000002 | l4[0] << 9, sport, 0x80000002 | l4[1] << 9, dport)
    body = match + _INSTRUCTIONS
    return _FLOW_MOD.pack(4, 14, 48 + len(body), xid, 0, 0, 0, 0, IDLE_TIMEOUT, 0, PRIORITY,
                          0xFFFFFFFF, 0, 0, 0) + body  # out_port, out_group: the parser's 0


class MinimalApp(App):  # type: ignore[misc]
    """Install one exact-match entry per packet-in."""

    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]  # noqa: RUF012 - the framework's contract

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.raw = os.environ.get("CBENCH_MINIMAL_ENCODER", "framework") == "struct"
        if os.environ.get("CBENCH_MINIMAL_OFCONN") == "1":
            ofconn.install(Datapath)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in_handler(self, ev: Any) -> None:
        msg = ev.msg
        data = msg.data
        if len(data) < 38 or data[12:14] != b"\x08\x00":
            return
        proto = data[23]
        if proto not in (6, 17):
            return
        sport, dport = _PORTS.unpack_from(data, 14 + (data[14] & 0x0F) * 4)
        dp = msg.datapath
        in_port = msg.match["in_port"]
        if self.raw:
            dp.xid = (dp.xid + 1) & dp.ofproto.MAX_XID
            dp.send(raw_flow_mod(dp.xid, in_port, data[26:30], data[30:34], proto, sport,
                                 dport))
            return
        ofp, parser = dp.ofproto, dp.ofproto_parser
        l4 = ("tcp_src", "tcp_dst") if proto == 6 else ("udp_src", "udp_dst")
        match = parser.OFPMatch(**{
            "in_port": in_port, "eth_type": 0x0800,
            "ipv4_src": socket.inet_ntoa(data[26:30]), "ipv4_dst": socket.inet_ntoa(data[30:34]),
            "ip_proto": proto, l4[0]: sport, l4[1]: dport})
        actions = [parser.OFPActionOutput(OUT_PORT, 0)]
        inst = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)]
        dp.send_msg(parser.OFPFlowMod(datapath=dp, priority=PRIORITY, idle_timeout=IDLE_TIMEOUT,
                                      match=match, instructions=inst,
                                      buffer_id=ofp.OFP_NO_BUFFER))

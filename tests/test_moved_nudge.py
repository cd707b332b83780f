"""The segments that tell a moved TCP connection's client it ended (affinity.py `moved_nudge`),
decoded by an independent parser (Ryu's packet library) and checked as a TCP stack would."""

from __future__ import annotations

import struct

import pytest
from ryu.lib.packet import ethernet, ipv4, packet, tcp

from controller.dataplane.affinity import FlowKey, moved_nudge
from controller.intents import VIRTUAL_MAC, Output
from controller.network.packet import IPPROTO_TCP, IPPROTO_UDP
from controller.network.topology import HostLoc

CLIENT = HostLoc("10.0.0.1", "00:00:00:00:00:01", 7, 3)
KEY = FlowKey("svc1", CLIENT.ip, "10.0.100.1", IPPROTO_TCP, 40123, 8000)


def _sum16(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def test_two_empty_acks_from_the_dsid_out_of_the_clients_port() -> None:
    """Two segments, each an empty ACK from the D-SID's port to the client's, with valid IP
    and TCP checksums, sent out of the client's port; their sequence numbers 2**31 apart, so
    one is outside any receive window (at most 2**30 bytes)."""
    outs = moved_nudge(KEY, CLIENT)
    assert len(outs) == 2
    seqs = []
    for out in outs:
        assert (out.dpid, out.actions) == (CLIENT.dpid, (Output(CLIENT.port),))
        pkt = packet.Packet(out.data)
        eth, ip, seg = (pkt.get_protocol(ethernet.ethernet), pkt.get_protocol(ipv4.ipv4),
                        pkt.get_protocol(tcp.tcp))
        assert (eth.src, eth.dst) == (VIRTUAL_MAC, CLIENT.mac)
        assert (ip.src, ip.dst, ip.proto) == (KEY.dsid, CLIENT.ip, IPPROTO_TCP)
        assert (seg.src_port, seg.dst_port, seg.bits) == (8000, 40123, tcp.TCP_ACK)
        assert len(out.data) == 14 + 20 + 20  # no payload, no option
        header, segment = out.data[14:34], out.data[34:]
        assert _sum16(header) == 0xFFFF
        pseudo = header[12:20] + struct.pack("!BBH", 0, IPPROTO_TCP, len(segment))
        assert _sum16(pseudo + segment) == 0xFFFF
        seqs.append(seg.seq)
    assert (seqs[1] - seqs[0]) % (1 << 32) == 1 << 31


@pytest.mark.parametrize("key", [KEY._replace(proto=IPPROTO_UDP),
                                 KEY._replace(sport=None, dport=None),  # a group's key
                                 KEY._replace(proto=None)])
def test_nothing_for_a_flow_that_is_not_one_tcp_connection(key: FlowKey) -> None:
    """UDP, a group key (3-tuple, client) or a key without a protocol: no segment."""
    assert moved_nudge(key, CLIENT) == []


def test_nothing_for_a_client_not_located() -> None:
    """A client whose port is not known gets nothing (there is no port to send it out of)."""
    assert moved_nudge(KEY, None) == []

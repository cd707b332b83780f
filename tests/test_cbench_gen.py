"""The cbench-style generator's OpenFlow messages (bench/ofgen.py), its expected-answer
templates and its verifier (bench/emuswitch.py), checked against the framework's parser and
serialiser and against what the Dyncast app and the minimal app really send."""

from __future__ import annotations

import socket
import struct

import pytest

from bench import ofgen
from bench.emuswitch import (
    CLIENT_PORT,
    VIRTUAL_MAC,
    EmuSwitch,
    Scenario,
    Tally,
    Verifier,
    dyncast_templates,
    minimal_template,
)
from controller.dataplane.affinity import Binding, FlowKey, binding_flows
from controller.intents import Output, PacketOut, SetField
from controller.model import AffinityPolicy, Service
from controller.network.packet import parse
from tests.fakes import FakeDatapath, framework_bytes, framework_parse

SC = Scenario(2)
SVC = Service("bench", SC.dsid, "tcp", SC.dport, AffinityPolicy("5-tuple", SC.idle_timeout, 0))


def syn(s: int = 0, k: int = 0, sport: int = 40000) -> bytes:
    return ofgen.tcp_syn(ofgen.mac(SC.client_mac(s, k)), VIRTUAL_MAC,
                         ofgen.ip(SC.client_ip(s, k)), ofgen.ip(SC.dsid), sport, SC.dport)


# --- what the emulated switch sends ---------------------------------------------------------
def test_packet_in_parses_with_the_framework(dp: FakeDatapath) -> None:
    frame = syn()
    msg = framework_parse(dp, ofgen.packet_in(77, 3, frame, cookie=0xDC01000000000001))
    assert type(msg).__name__ == "OFPPacketIn" and msg.xid == 77
    assert msg.match["in_port"] == 3 and bytes(msg.data) == frame
    assert msg.buffer_id == ofgen.OFP_NO_BUFFER and msg.total_len == len(frame)
    assert msg.cookie == 0xDC01000000000001 and msg.reason == ofgen.OFPR_ACTION
    assert len(ofgen.packet_in(1, 3, frame)) == ofgen.PACKET_IN_DATA_OFFSET + len(frame)


def test_switch_replies_parse_with_the_framework(dp: FakeDatapath) -> None:
    feats = framework_parse(dp, ofgen.features_reply(5, 0x1234, n_tables=254))
    assert feats.datapath_id == 0x1234 and feats.n_tables == 254 and feats.xid == 5
    desc = framework_parse(dp, ofgen.port_desc_reply(6, 7, [1, 2, 3]))
    assert [p.port_no for p in desc.body] == [1, 2, 3]
    assert desc.body[1].name in (b"s7-eth2", "s7-eth2")
    assert not desc.body[0].state & dp.ofproto.OFPPS_LINK_DOWN
    stats = framework_parse(dp, ofgen.port_stats_reply(8, [1, 4]))
    assert [(p.port_no, p.tx_bytes) for p in stats.body] == [(1, 0), (4, 0)]
    echo = ofgen.message(ofgen.OFPT_ECHO_REQUEST, 9, b"\x01" * 8)
    reply = framework_parse(dp, ofgen.echo_reply(echo))
    assert reply.xid == 9 and bytes(reply.data) == b"\x01" * 8
    assert framework_parse(dp, ofgen.barrier_reply(10)).xid == 10


def test_frames_parse_with_the_controller_and_carry_valid_checksums() -> None:
    frame = syn(1, 2, 51000)
    pkt = parse(frame)
    assert pkt is not None
    assert (pkt.ip_src, pkt.ip_dst, pkt.l4_src, pkt.l4_dst, pkt.tcp_flags) == (
        SC.client_ip(1, 2), SC.dsid, 51000, SC.dport, 0x02)
    assert len(frame) == 60 and ofgen._checksum(frame[14:34]) == 0
    tcp = frame[34:54]
    pseudo = frame[26:34] + struct.pack("!BBH", 0, 6, len(tcp))
    assert ofgen._checksum(pseudo + tcp) == 0
    assert ofgen.five_tuple(frame) == (ofgen.ip(SC.client_ip(1, 2)), ofgen.ip(SC.dsid), 6,
                                       51000, SC.dport)
    arp = parse(ofgen.arp_announce(ofgen.mac("02:00:00:00:00:09"), ofgen.ip("10.2.0.1")))
    assert arp is not None and arp.arp_spa == arp.arp_tpa == "10.2.0.1"
    assert arp.arp_sha == "02:00:00:00:00:09"


def test_split_returns_whole_messages_and_leaves_the_rest() -> None:
    a, b = ofgen.hello(1), ofgen.packet_in(2, 1, syn())
    buf = bytearray(a + b + b[:11])
    msgs, used = ofgen.split(buf)
    assert [(t, x) for t, x, _ in msgs] == [(ofgen.OFPT_HELLO, 1), (ofgen.OFPT_PACKET_IN, 2)]
    assert msgs[1][2] == b and used == len(a) + len(b)
    assert ofgen.split(bytearray(b[:7])) == ([], 0)
    with pytest.raises(ValueError):
        ofgen.split(bytearray(ofgen.header(0, 4, 1)))


# --- what controllers send: builders and decoders -------------------------------------------
def test_flow_mod_and_packet_out_builders_give_the_framework_bytes(dp: FakeDatapath) -> None:
    b = Binding(0x1234, FlowKey("bench", "10.1.0.1", SC.dsid, 6, 40000, SC.dport),
                "10.2.0.1", 1, 0.0)
    fwd, _ = binding_flows(b, SVC, "02:02:00:00:00:01")
    built = ofgen.flow_mod(
        9, [(n, ofgen.ip(v) if n.startswith("ipv4") else v) for n, v in fwd.match],
        [("set_field", ("eth_dst", ofgen.mac("02:02:00:00:00:01"))),
         ("set_field", ("ipv4_dst", ofgen.ip("10.2.0.1")))], goto=1, cookie=fwd.cookie,
        priority=fwd.priority, idle_timeout=fwd.idle_timeout, flags=ofgen.OFPFF_SEND_FLOW_REM)
    assert built == framework_bytes(dp, fwd)
    po = PacketOut(1, syn(), (SetField("ipv4_dst", "10.2.0.1"), Output(2),
                              Output(0xFFFFFFFD)), 1)
    assert ofgen.packet_out(9, 1, [("set_field", ("ipv4_dst", ofgen.ip("10.2.0.1"))),
                                   ("output", 2), ("output", ofgen.OFPP_CONTROLLER)],
                            po.data) == framework_bytes(dp, po)


def test_decoders_read_what_the_app_sends(dp: FakeDatapath) -> None:
    b = Binding(7, FlowKey("bench", "10.1.0.3", SC.dsid, 6, 1999, SC.dport), "10.2.0.2", 1, 0)
    fwd, rev = binding_flows(b, SVC, "02:02:00:00:00:02")
    fm = ofgen.decode_flow_mod(framework_bytes(dp, fwd))
    assert fm.match == {"eth_type": 0x0800, "ipv4_src": ofgen.ip("10.1.0.3"),
                        "ipv4_dst": ofgen.ip(SC.dsid), "ip_proto": 6, "tcp_src": 1999,
                        "tcp_dst": SC.dport}
    assert fm.actions == [("set_field", ("eth_dst", ofgen.mac("02:02:00:00:00:02"))),
                          ("set_field", ("ipv4_dst", ofgen.ip("10.2.0.2")))]
    assert (fm.goto, fm.cookie, fm.idle_timeout, fm.flags, fm.priority) == (
        1, fwd.cookie, SC.idle_timeout, ofgen.OFPFF_SEND_FLOW_REM, 2000)
    rm = ofgen.decode_flow_mod(framework_bytes(dp, rev))
    assert rm.match["ipv4_src"] == ofgen.ip("10.2.0.2") and rm.match["tcp_dst"] == 1999
    assert rm.actions[0] == ("set_field", ("eth_src", VIRTUAL_MAC)) and rm.flags == 0
    po = ofgen.decode_packet_out(framework_bytes(dp, PacketOut(
        1, syn(), (SetField("eth_dst", "02:02:00:00:00:02"), Output(3)), 1)))
    assert po.in_port == 1 and po.data == syn() and po.buffer_id == ofgen.OFP_NO_BUFFER
    assert po.actions == [("set_field", ("eth_dst", ofgen.mac("02:02:00:00:00:02"))),
                          ("output", 3)]
    assert ofgen.decode_match(ofgen.encode_match([("in_port", 1)]), 0) == ({"in_port": 1}, 16)


def test_templates_are_what_the_apps_send(dp: FakeDatapath) -> None:
    """Filled templates equal the bytes the Dyncast app's intents serialise to (but for the
    xid and the binding id) and the minimal app's flow-mod exactly."""
    from bench.minimal_app import raw_flow_mod

    client, sport = ofgen.ip(SC.client_ip(1, 0)), 23456
    for k, t in enumerate(dyncast_templates(SC, 1)):
        dbid = SC.instance_ip(1, k)
        b = Binding(0, FlowKey("bench", SC.client_ip(1, 0), SC.dsid, 6, sport, SC.dport), dbid,
                    2, 0.0)
        fwd, rev = binding_flows(b, SVC, SC.instance_mac(1, k))
        raw_sport = sport.to_bytes(2, "big")
        assert t.fwd.fill(client, raw_sport)[8:] == framework_bytes(dp, fwd)[8:]
        assert t.rev.fill(client, raw_sport)[8:] == framework_bytes(dp, rev)[8:]
        po = PacketOut(2, syn(1, 0, sport), (SetField("eth_dst", SC.instance_mac(1, k)),
                                             SetField("ipv4_dst", dbid), Output(t.port)),
                       CLIENT_PORT)
        assert t.packet_out[8:] + po.data == framework_bytes(dp, po)[8:]
    parser = dp.ofproto_parser
    ofp = dp.ofproto
    match = parser.OFPMatch(in_port=CLIENT_PORT, eth_type=0x800, ipv4_src=SC.client_ip(1, 0),
                            ipv4_dst=SC.dsid, ip_proto=6, tcp_src=sport, tcp_dst=SC.dport)
    msg = parser.OFPFlowMod(datapath=dp, priority=10, idle_timeout=30, match=match,
                            instructions=[parser.OFPInstructionActions(
                                ofp.OFPIT_APPLY_ACTIONS, [parser.OFPActionOutput(2, 0)])],
                            buffer_id=ofp.OFP_NO_BUFFER)
    msg.set_xid(3)
    msg.serialize()
    raw = raw_flow_mod(3, CLIENT_PORT, client, ofgen.ip(SC.dsid), 6, sport, SC.dport)
    assert raw == bytes(msg.buf)
    assert minimal_template(SC).fill(client, sport.to_bytes(2, "big"))[8:] == raw[8:]


# --- the verifier ---------------------------------------------------------------------------
class FakeSock:
    def send(self, data: bytes) -> int:
        return len(data)


class FakeGen:
    """What an EmuSwitch needs of its generator."""

    def __init__(self, kind: str) -> None:
        self.sc = SC
        self.verifier = Verifier(kind, SC)
        self.tally = Tally()
        self.done = 0

    def want_write(self, sw: EmuSwitch, on: bool) -> None:
        raise AssertionError("FakeSock takes everything")

    def completed(self, sw: EmuSwitch) -> None:
        self.done += 1

    def closed(self, sw: EmuSwitch) -> None:
        raise AssertionError("closed")


def switch(kind: str, requests: int) -> tuple[FakeGen, EmuSwitch]:
    gen = FakeGen(kind)
    sw = EmuSwitch(gen, 1, FakeSock())  # type: ignore[arg-type]
    sw.new_requests(requests, 0.0)
    return gen, sw


def feed(sw: EmuSwitch, data: bytes) -> None:
    msgs, used = ofgen.split(bytearray(data))
    assert used == len(data)
    for msg_type, xid, msg in msgs:
        sw.handle(msg_type, xid, msg)


def app_answers(dp: FakeDatapath, sw: EmuSwitch, k: int, ident: int, *,
                out_port: int | None = None) -> bytes:
    """What the Dyncast app sends for each request in flight at `sw`, bound to instance k."""
    out = b""
    for (client, sport), req in list(sw.pending.items()):
        assert isinstance(client, bytes) and isinstance(sport, int)
        dbid = SC.instance_ip(sw.index, k)
        b = Binding(ident, FlowKey("bench", socket.inet_ntoa(client), SC.dsid, 6, sport,
                                   SC.dport), dbid, sw.dpid, 0.0)
        fwd, rev = binding_flows(b, SVC, SC.instance_mac(sw.index, k))
        po = PacketOut(sw.dpid, req.frame, (SetField("eth_dst", SC.instance_mac(sw.index, k)),
                                            SetField("ipv4_dst", dbid),
                                            Output(out_port or 2 + k)), CLIENT_PORT)
        out += b"".join(framework_bytes(dp, i) for i in (fwd, rev, po))
        ident += 1
    return out


def test_the_apps_answers_are_correct_and_match_their_templates(dp: FakeDatapath) -> None:
    gen, sw = switch("dyncast", 3)
    feed(sw, app_answers(dp, sw, 1, 100))
    t = gen.tally
    assert (t.correct, t.incorrect, t.unexpected, t.fast, t.slow) == (3, 0, 0, 9, 0)
    assert not sw.pending and gen.done == 3 and len(t.latencies) == 3
    assert t.instances == {SC.instance_ip(1, 1): 3}


def test_answers_in_another_field_order_are_checked_field_by_field() -> None:
    gen, sw = switch("dyncast", 1)
    ((client, sport),) = sw.pending
    assert isinstance(client, bytes) and isinstance(sport, int)
    dbid, imac = ofgen.ip(SC.instance_ip(1, 0)), ofgen.mac(SC.instance_mac(1, 0))
    dsid = ofgen.ip(SC.dsid)
    fwd = ofgen.flow_mod(
        1, [("tcp_dst", SC.dport), ("tcp_src", sport), ("ip_proto", 6), ("ipv4_dst", dsid),
            ("ipv4_src", client), ("eth_type", 0x800)],
        [("set_field", ("eth_dst", imac)), ("set_field", ("ipv4_dst", dbid))], goto=1,
        cookie=0xDC02000000000005, priority=2000, idle_timeout=SC.idle_timeout,
        flags=ofgen.OFPFF_SEND_FLOW_REM, ordered_match=False)
    rev = ofgen.flow_mod(
        2, [("tcp_dst", sport), ("tcp_src", SC.dport), ("ip_proto", 6), ("ipv4_dst", client),
            ("ipv4_src", dbid), ("eth_type", 0x800)],
        [("set_field", ("eth_src", VIRTUAL_MAC)), ("set_field", ("ipv4_src", dsid))], goto=1,
        cookie=0xDC03000000000005, priority=2000, ordered_match=False)
    po = ofgen.packet_out(3, CLIENT_PORT, [("set_field", ("eth_dst", imac)),
                                           ("set_field", ("ipv4_dst", dbid)), ("output", 2)],
                          sw.pending[(client, sport)].frame)
    feed(sw, fwd + rev + po)
    t = gen.tally
    assert (t.correct, t.incorrect, t.fast, t.slow) == (1, 0, 1, 2)


@pytest.mark.parametrize("mistake", ["port", "instance", "binding", "unknown"])
def test_wrong_answers_are_not_counted(dp: FakeDatapath, mistake: str) -> None:
    gen, sw = switch("dyncast", 2)
    if mistake == "port":  # the packet leaves by the other instance's port
        feed(sw, app_answers(dp, sw, 0, 1, out_port=3))
    elif mistake == "instance":  # forward entry to one instance, the rest to the other
        one = app_answers(dp, sw, 0, 1)
        other = app_answers(dp, sw, 1, 1)
        first = len(framework_bytes(dp, binding_flows(
            Binding(1, FlowKey("bench", "10.1.1.1", SC.dsid, 6, 1, 1), "10.2.1.1", 2, 0.0),
            SVC, SC.instance_mac(1, 0))[0]))
        per = len(one) // 2
        feed(sw, one[:first] + other[first:per] + one[per:])
    elif mistake == "binding":  # reverse entry with another binding id
        data = bytearray(app_answers(dp, sw, 0, 1))
        _, _, length, _ = struct.unpack_from("!BBHI", data, 0)
        data[length + 15] ^= 0xFF
        feed(sw, bytes(data))
    else:  # answers for a flow nobody asked about
        _, other = switch("dyncast", 4)  # the same flows as sw's, and two more
        for key in list(sw.pending):
            del other.pending[key]
        feed(sw, app_answers(dp, other, 0, 1))
        t = gen.tally
        assert (t.unexpected, t.other, t.correct, t.incorrect) == (4, 2, 0, 0)
        return
    t = gen.tally  # one of the two requests got a wrong answer (both, for "port")
    assert (t.correct, t.incorrect) == ((0, 2) if mistake == "port" else (1, 1)) and t.reasons


def test_minimal_answers_are_checked_exactly() -> None:
    from bench.minimal_app import raw_flow_mod

    gen, sw = switch("minimal", 2)
    (c1, p1), (c2, p2) = list(sw.pending)
    assert isinstance(c1, bytes) and isinstance(c2, bytes)
    assert isinstance(p1, int) and isinstance(p2, int)
    good = raw_flow_mod(1, CLIENT_PORT, c1, ofgen.ip(SC.dsid), 6, p1, SC.dport)
    bad = raw_flow_mod(2, CLIENT_PORT, c2, ofgen.ip(SC.dsid), 6, p2, SC.dport + 1)
    feed(sw, good + bad)
    t = gen.tally
    assert (t.correct, t.incorrect, t.fast, t.slow) == (1, 1, 1, 1)


def test_the_sink_answers_like_the_apps() -> None:
    from bench.sink import Conn, respond

    for kind in ("dyncast", "minimal"):
        gen, sw = switch(kind, 4)
        conn = Conn(FakeSock())  # type: ignore[arg-type]
        conn.index = sw.index
        conn.minimal = minimal_template(SC)
        conn.dyncast = dyncast_templates(SC, sw.index)
        answers = b"".join(respond(conn, ofgen.packet_in(1, CLIENT_PORT, r.frame), kind)
                           for r in sw.pending.values())
        feed(sw, answers)
        assert (gen.tally.correct, gen.tally.incorrect, gen.tally.slow) == (4, 0, 0)
        if kind == "dyncast":
            assert len(gen.tally.instances) == 2

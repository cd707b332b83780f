"""Conntrack intents: `Ct` and the ct_* matches encode as OVS reads them (both frameworks),
and the fake switches' connection tracker does what OVS's does to a packet."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from apps.ofmsg import Unsupported, encode, serialise
from controller.intents import (
    CT_EST,
    CT_NEW,
    CT_RPL,
    CT_TRK,
    Ct,
    CtFlush,
    FlowMod,
    Output,
    SetField,
    ct_state,
    match,
)
from tests.fakeoftable import FakeNetwork, FakeOFTable
from tests.fakes import FakeDatapath, framework_bytes

DSID, DBID, CLIENT = "10.0.100.1", "10.0.0.21", "10.0.0.1"
ZONE = 0x6401
TO_DSID = match(eth_type=0x800, ip_proto=6, ipv4_dst=DSID, tcp_dst=8000)
TRACK = FlowMod(1, 0, 1000, TO_DSID, (Ct(ZONE, table=2, nat=True),))
DECIDE = FlowMod(1, 3, 100, match(eth_type=0x800, ip_proto=6, ipv4_dst=DSID, tcp_dst=8000,
                                  tcp_src=(2, 14)),
                 (Ct(ZONE, table=2, commit=True, nat_dst=DBID, mark=21),))
BY_MARK = FlowMod(1, 2, 100, match(ct_state=ct_state(on=CT_TRK | CT_NEW, off=CT_RPL),
                                   ct_zone=ZONE, ct_mark=21, eth_type=0x800), goto=4)


def _ofp_print(raw: bytes) -> str:
    """Open vSwitch's own decoding of an OpenFlow message."""
    return subprocess.run(["ovs-ofctl", "ofp-print", raw.hex()], capture_output=True,
                          text=True, check=True, timeout=10).stdout


@pytest.mark.skipif(shutil.which("ovs-ofctl") is None, reason="needs ovs-ofctl to decode")
def test_ct_actions_and_matches_decode_in_open_vswitch_as_meant(dp: FakeDatapath) -> None:
    """OVS reads the framework's bytes back as the ct actions we mean: a zone, recirculation,
    nat of the address alone, exec(set_field ct_mark), and the masked ct_state match."""
    assert "actions=ct(table=2,zone=25601,nat)" in _ofp_print(framework_bytes(dp, TRACK))
    assert ("actions=ct(commit,table=2,zone=25601,nat(dst=10.0.0.21),"
            "exec(set_field:0x15->ct_mark))") in _ofp_print(framework_bytes(dp, DECIDE))
    assert ("table:2 priority=100,ct_state=+new-rpl+trk,ct_zone=25601,ct_mark=0x15,ip "
            in _ofp_print(framework_bytes(dp, BY_MARK)))
    no_recirc = FlowMod(1, 3, 100, match(eth_type=0x800), (Ct(7, commit=True),))
    assert ",ip cookie:0xdc00000000000000 actions=ct(commit,zone=7)\n" in _ofp_print(
        framework_bytes(dp, no_recirc))


def test_ct_intents_serialise_with_the_nested_actions(dp: FakeDatapath) -> None:
    """Without ovs-ofctl: the framework's message has the nested NAT and set-field."""
    from apps.ofmsg import to_message
    msg = to_message(dp, DECIDE)
    (ct,) = msg.instructions[0].actions
    assert (ct.flags, ct.zone_ofs_nbits, ct.recirc_table) == (1, ZONE, 2)
    nat, mark = ct.actions
    assert (nat.flags, nat.range_ipv4_min, nat.range_ipv4_max) == (2, DBID, DBID)
    assert nat.range_proto_min is None and mark.key == "ct_mark" and mark.value == 21


def test_the_fast_encoder_leaves_ct_to_the_framework() -> None:
    for fm in (TRACK, BY_MARK):
        with pytest.raises(Unsupported):
            encode(fm, 1)


def pkt(src: str, dst: str, sport: int, dport: int) -> dict[str, int | str]:
    """A TCP packet."""
    return {"eth_type": 0x800, "ip_proto": 6, "ipv4_src": src, "ipv4_dst": dst,
            "tcp_src": sport, "tcp_dst": dport, "eth_src": 1, "eth_dst": 2}


def tracker_switch() -> FakeOFTable:
    """Track D-SID packets and replies from the D-BID; new ones are committed with NAT to the
    D-BID and mark 21; the tracked state is put in a register and output on port 9."""
    sw = FakeOFTable(1)
    sw.apply(TRACK)
    sw.apply(FlowMod(1, 0, 1000, match(eth_type=0x800, ip_proto=6, ipv4_src=DBID, tcp_src=8000),
                     (Ct(ZONE, table=2, nat=True),)))
    sw.apply(FlowMod(1, 2, 101, match(ct_state=ct_state(on=CT_TRK | CT_NEW, off=CT_RPL),
                                      ct_zone=ZONE, eth_type=0x800, ipv4_dst=DSID), goto=3))
    sw.apply(DECIDE)
    for state in (CT_TRK | CT_NEW, CT_TRK | CT_EST, CT_TRK | CT_EST | CT_RPL):
        sw.apply(FlowMod(1, 2, 100, match(ct_state=ct_state(on=state, off=0x3F ^ state),
                                          ct_zone=ZONE),
                         (SetField("reg1", state), Output(9))))
    return sw


def test_the_fake_tracker_commits_translates_both_ways_and_marks() -> None:
    sw = tracker_switch()
    first = sw.lookup(pkt(CLIENT, DSID, 40002, 8000), 1).only()
    assert first["ipv4_dst"] == DBID  # committed with NAT, recirculated
    assert sw.conntrack.entries(ZONE)[0].mark == 21
    again = sw.lookup(pkt(CLIENT, DSID, 40002, 8000), 1).only()
    assert again["ipv4_dst"] == DBID
    reply = sw.lookup(pkt(DBID, CLIENT, 8000, 40002), 2).only()
    assert reply["ipv4_src"] == DSID  # un-translated back to the D-SID
    est = sw.lookup(pkt(CLIENT, DSID, 40002, 8000), 1).only()
    assert est["ipv4_dst"] == DBID
    assert [e.fm.actions[0] for e in sw.tables[2] if e.packets and e.fm.actions] == [
        SetField("reg1", CT_TRK | CT_NEW), SetField("reg1", CT_TRK | CT_EST),
        SetField("reg1", CT_TRK | CT_EST | CT_RPL)]
    assert all(not k.startswith("ct_") for k in est.fields)  # ct state stays in the switch


def test_the_tracker_outlives_the_flow_tables_and_is_shared_by_the_switches() -> None:
    """Wiping and reinstalling every entry keeps the connection's translation; another switch
    of the same ovs-vswitchd un-translates its replies."""
    net = FakeNetwork([])
    a = net.switch(1)
    for fm in tracker_switch().entries():
        a.apply(fm)
    assert a.lookup(pkt(CLIENT, DSID, 40002, 8000), 1).only()["ipv4_dst"] == DBID
    a.tables.clear()
    moved = FlowMod(1, 3, 100, DECIDE.match, (Ct(ZONE, table=2, commit=True,
                                                 nat_dst="10.0.0.31", mark=31),))
    for fm in [*tracker_switch().entries(), moved]:
        a.apply(fm)
    assert a.lookup(pkt(CLIENT, DSID, 40002, 8000), 1).only()["ipv4_dst"] == DBID
    assert a.lookup(pkt(CLIENT, DSID, 40018, 8000), 1).only()["ipv4_dst"] == "10.0.0.31"
    b = net.switch(2)
    for fm in tracker_switch().entries():
        b.apply(fm)
    assert b.lookup(pkt(DBID, CLIENT, 8000, 40002), 2).only()["ipv4_src"] == DSID
    net.conntrack.flush(ZONE)
    assert not net.conntrack.entries()


FLUSH = CtFlush(1, ZONE, 6, DBID, 8000)


@pytest.mark.skipif(shutil.which("ovs-ofctl") is None, reason="needs ovs-ofctl to decode")
def test_ct_flush_decodes_in_open_vswitch_as_meant(dp: FakeDatapath) -> None:
    """NXT_CT_FLUSH (OVS 3.1): the zone's TCP connections answered from D-BID:8000; the bytes
    are the ones `ovs-ofctl ct-flush SWITCH zone=25601 '' 'ct_nw_src=10.0.0.21,ct_nw_proto=6,
    ct_tp_src=8000'` sends (recorded from it), up to the transaction id."""
    raw = framework_bytes(dp, FLUSH, 2)
    assert raw.hex() == ("04040048000000020000232000000020060000000000000000010028000000000000"
                         "001400000000000000000000ffff0a00001500000000000200081f40000000020008"
                         "64010000")
    printed = _ofp_print(raw)
    assert "NXT_CT_FLUSH" in printed and "zone=25601" in printed, printed
    assert "'ct_nw_src=10.0.0.21,ct_nw_dst=::,ct_tp_src=8000,ct_tp_dst=0'" in printed, printed


def test_the_fast_encoder_leaves_ct_flush_to_the_framework(dp: FakeDatapath) -> None:
    with pytest.raises(Unsupported):
        encode(FLUSH, 1)
    assert serialise(dp, [FLUSH]) == framework_bytes(dp, FLUSH, 1)


def test_the_fake_tracker_forgets_what_a_flush_names() -> None:
    net = FakeNetwork([])
    sw = net.switch(1)
    for fm in tracker_switch().entries():
        sw.apply(fm)
    sw.lookup(pkt(CLIENT, DSID, 40002, 8000), 1)
    net.apply([CtFlush(1, ZONE, 6, "10.0.0.31", 8000), CtFlush(1, ZONE + 1, 6, DBID, 8000),
               CtFlush(1, ZONE, 17, DBID, 8000)])
    assert len(net.conntrack.entries()) == 1
    net.apply([FLUSH])
    assert net.conntrack.entries() == []

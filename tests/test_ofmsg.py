"""Intents become well-formed OpenFlow 1.3 messages (serialised with the real parser)."""

from __future__ import annotations

import struct

from apps.ofmsg import to_message
from controller.dataplane.affinity import Binding, FlowKey, binding_flows
from controller.dataplane.modes import service_punt
from controller.intents import PORT_CONTROLLER, Output, PacketOut, SetField, delete_by_cookie
from tests.fakes import FakeDatapath, parse_back
from tests.helpers import SVC1


def test_affinity_entries_serialise_with_rewrite_goto_and_flags(dp: FakeDatapath) -> None:
    """The forward entry carries set-fields, goto forward, timeouts, cookie and SEND_FLOW_REM."""
    b = Binding(5, FlowKey("svc1", "10.0.0.1", "10.0.100.1", 6, 40000, 8000), "10.0.0.21", 1, 0)
    fwd, rev = binding_flows(b, SVC1, "00:00:00:00:00:21")
    msg = to_message(dp, fwd)
    msg_type, _ = parse_back(dp, msg)
    ofp = dp.ofproto
    assert msg_type == ofp.OFPT_FLOW_MOD
    assert msg.flags == ofp.OFPFF_SEND_FLOW_REM and msg.idle_timeout == 30
    assert msg.cookie == fwd.cookie and msg.match["tcp_src"] == 40000
    apply_, goto = msg.instructions
    assert [a.key for a in apply_.actions] == ["eth_dst", "ipv4_dst"]
    assert goto.table_id == 1
    assert to_message(dp, rev).flags == 0


def test_punt_and_delete_and_packet_out_serialise(dp: FakeDatapath) -> None:
    """Service punt (to controller, no buffer), delete-by-cookie and packet-out encode."""
    punt = to_message(dp, service_punt(1, SVC1))
    parse_back(dp, punt)
    (action,) = punt.instructions[0].actions
    assert action.port == dp.ofproto.OFPP_CONTROLLER
    assert action.max_len == dp.ofproto.OFPCML_NO_BUFFER
    delete = to_message(dp, delete_by_cookie(1, 0xDC03000000000005))
    parse_back(dp, delete)
    assert delete.command == dp.ofproto.OFPFC_DELETE and delete.cookie_mask == (1 << 64) - 1
    out = to_message(dp, PacketOut(1, b"\x00" * 60, (SetField("ipv4_dst", "10.0.0.21"),
                                                     Output(3), Output(PORT_CONTROLLER)), 2))
    msg_type, _ = parse_back(dp, out)
    assert msg_type == dp.ofproto.OFPT_PACKET_OUT and out.in_port == 2


def test_failover_group_and_the_entry_naming_it_serialise(dp: FakeDatapath) -> None:
    """A fast-failover group (OVS's ADD_OR_MOD, watch ports), its deletion, and an entry whose
    action is the group: the framework's parser reads back what was meant; `serialise` takes
    the framework's way for both (the fast encoder knows neither)."""
    from apps.ofgroups import OFPGC_ADD_OR_MOD
    from apps.ofmsg import serialise
    from controller.intents import PORT_IN, FlowMod, Group, GroupBucket, GroupMod, match

    ofp = dp.ofproto
    gm = GroupMod(1, 34, (GroupBucket(2, (SetField("eth_dst", "00:00:00:00:00:21"), Output(2))),
                          GroupBucket(10, (SetField("ipv4_dst", "10.0.0.31"), Output(PORT_IN)))))
    msg = to_message(dp, gm)
    msg_type, buf = parse_back(dp, msg)
    assert msg_type == ofp.OFPT_GROUP_MOD
    assert struct.unpack_from("!HBxI", buf, 8) == (OFPGC_ADD_OR_MOD, ofp.OFPGT_FF, 34)
    at, watched = 16, []
    while at < len(buf):  # ofp_bucket: len, weight, watch_port, watch_group, pad, actions
        size, _, watch, _ = struct.unpack_from("!HHII", buf, at)
        watched.append(watch)
        at += size
    assert watched == [2, 10] and at == len(buf)
    assert msg.buckets[1].actions[-1].port == ofp.OFPP_IN_PORT
    gone = to_message(dp, GroupMod(1, 34, command="delete"))
    assert gone.command == ofp.OFPGC_DELETE and not gone.buckets
    entry = FlowMod(1, 1, 101, match(eth_type=0x0800, ipv4_dst="10.0.0.21"), (Group(34),))
    (action,) = to_message(dp, entry).instructions[0].actions
    assert action.group_id == 34
    dp.xid = 0
    assert len(serialise(dp, [gm, entry])) > 0

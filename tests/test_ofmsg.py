"""Intents become well-formed OpenFlow 1.3 messages (serialised with the real parser)."""

from __future__ import annotations

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

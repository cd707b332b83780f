"""Intents become well-formed OpenFlow 1.3 messages (serialised with the real parser)."""

from __future__ import annotations

import importlib
import importlib.util
import struct

import pytest

from apps.ofmsg import to_message
from controller.core import service_punt
from controller.dataplane.affinity import Binding, FlowKey, binding_flows
from controller.intents import PORT_CONTROLLER, Output, PacketOut, SetField, delete_by_cookie
from tests.helpers import SVC1

FRAMEWORKS = [name for name in ("ryu", "os_ken") if importlib.util.find_spec(name)]


class FakeDatapath:
    """Enough of a datapath for messages to serialise: the protocol modules and an xid."""

    def __init__(self, framework: str) -> None:
        self.ofproto = importlib.import_module(f"{framework}.ofproto.ofproto_v1_3")
        self.ofproto_parser = importlib.import_module(f"{framework}.ofproto.ofproto_v1_3_parser")
        self.id = 1


def _parse_back(dp: FakeDatapath, msg: object):
    msg.xid = 1
    msg.serialize()
    buf = bytes(msg.buf)
    version, msg_type, length, _xid = struct.unpack_from("!BBHI", buf, 0)
    assert version == 4 and length == len(buf)
    return msg_type, buf


@pytest.fixture(params=FRAMEWORKS or [pytest.param("none", marks=pytest.mark.skip(
    reason="neither ryu nor os_ken is installed"))])
def dp(request: pytest.FixtureRequest) -> FakeDatapath:
    return FakeDatapath(request.param)


def test_affinity_entries_serialise_with_rewrite_goto_and_flags(dp: FakeDatapath) -> None:
    """The forward entry carries set-fields, goto forward, timeouts, cookie and SEND_FLOW_REM."""
    b = Binding(5, FlowKey("svc1", "10.0.0.1", "10.0.100.1", 6, 40000, 8000), "10.0.0.21", 1, 0)
    fwd, rev = binding_flows(b, SVC1, "00:00:00:00:00:21")
    msg = to_message(dp, fwd)
    msg_type, _ = _parse_back(dp, msg)
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
    _parse_back(dp, punt)
    (action,) = punt.instructions[0].actions
    assert action.port == dp.ofproto.OFPP_CONTROLLER
    assert action.max_len == dp.ofproto.OFPCML_NO_BUFFER
    delete = to_message(dp, delete_by_cookie(1, 0xDC03000000000005))
    _parse_back(dp, delete)
    assert delete.command == dp.ofproto.OFPFC_DELETE and delete.cookie_mask == (1 << 64) - 1
    out = to_message(dp, PacketOut(1, b"\x00" * 60, (SetField("ipv4_dst", "10.0.0.21"),
                                                     Output(3), Output(PORT_CONTROLLER)), 2))
    msg_type, _ = _parse_back(dp, out)
    assert msg_type == dp.ofproto.OFPT_PACKET_OUT and out.in_port == 2

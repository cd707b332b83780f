"""The fake flow table itself: OpenFlow 1.3 flow-mod semantics and OVS action semantics."""

from __future__ import annotations

import pytest

from controller.intents import (
    PORT_CONTROLLER,
    Action,
    FlowMod,
    Learn,
    LearnSpec,
    MatchValue,
    Output,
    PacketOut,
    PopMpls,
    PushMpls,
    Resubmit,
    SetField,
    match,
)
from tests.fakeoftable import (
    FakeNetwork,
    FakeOFTable,
    FakeTableError,
    fields_of,
    frame_of,
    number,
)

IP = 0x0800
PKT: dict[str, int | str] = {"eth_src": "00:00:00:00:00:01", "eth_dst": "02:dc:00:00:00:01",
                             "eth_type": IP, "ipv4_src": "10.0.0.1", "ipv4_dst": "10.0.100.1",
                             "ip_proto": 6, "tcp_src": 40000, "tcp_dst": 8000, "tcp_flags": 2}


def _fm(table: int, priority: int, actions: tuple[Action, ...] = (), goto: int | None = None,
        ck: int = 0, **fields: MatchValue) -> FlowMod:
    """An add at switch 1."""
    return FlowMod(1, table, priority, match(**fields), actions, goto=goto, cookie=ck)


def _port(sw: FakeOFTable, pkt: dict[str, int | str] = PKT) -> list[int]:
    """The ports a packet arriving on port 1 leaves by."""
    return [h.port for h in sw.lookup(pkt, 1).outputs]


def test_highest_priority_wins_and_an_identical_add_replaces() -> None:
    """The highest-priority hit is used; an add with the same priority and match replaces."""
    sw = FakeOFTable(1)
    sw.apply(_fm(0, 10, (Output(2),)))
    sw.apply(_fm(0, 20, (Output(3),), eth_type=IP, ipv4_dst="10.0.100.1"))
    assert _port(sw) == [3]
    sw.apply(_fm(0, 20, (Output(4),), eth_type=IP, ipv4_dst="10.0.100.1"))
    assert _port(sw) == [4] and len(sw.entries(0)) == 2


def test_deletes_by_cookie_and_strictly_by_priority_and_match() -> None:
    """delete removes a table's entries whose cookie matches under the mask; delete_strict
    only the entry with that priority and match."""
    sw = FakeOFTable(1)
    sw.apply(_fm(0, 10, (Output(2),), ck=0xA1))
    sw.apply(_fm(0, 20, (Output(3),), ck=0xB1, eth_type=IP))
    sw.apply(_fm(0, 30, (Output(4),), ck=0xA2, eth_type=IP))
    sw.apply(FlowMod(1, 0, 0, (), command="delete", cookie=0xA0, cookie_mask=0xF0))
    assert [fm.priority for fm in sw.entries()] == [20]
    sw.apply(FlowMod(1, 0, 21, match(eth_type=IP), command="delete_strict"))
    assert len(sw.entries()) == 1
    sw.apply(FlowMod(1, 0, 20, match(eth_type=IP), command="delete_strict"))
    assert sw.entries() == []


def test_masked_match_and_prerequisites() -> None:
    """A masked field matches under its mask; a field is invisible without its prerequisites,
    and a match that omits them is refused."""
    sw = FakeOFTable(1)
    sw.apply(_fm(0, 10, (Output(2),), eth_type=IP, ip_proto=6, tcp_src=(0x40, 0x4E)))
    assert _port(sw) == [2] and _port(sw, {**PKT, "tcp_src": 40002}) == []
    assert _port(sw, {**PKT, "eth_type": 0x0806}) == []
    with pytest.raises(FakeTableError, match="ip_proto"):
        sw.apply(_fm(0, 10, (Output(2),), eth_type=IP, tcp_src=1))
    with pytest.raises(FakeTableError, match="later table"):
        sw.apply(_fm(1, 10, goto=0))


def test_resubmit_comes_back_and_goto_follows_the_actions() -> None:
    """Resubmit runs another table's entry (and its goto) at once, then the rest of the
    actions; the goto comes after them and sees every rewrite."""
    sw = FakeOFTable(1)
    sw.apply(_fm(0, 10, (Resubmit(2), Output(5)), goto=4))
    sw.apply(_fm(2, 10, (SetField("reg0", 17),), goto=3))
    sw.apply(_fm(3, 10, (SetField("eth_dst", "00:00:00:00:00:21"),)))
    sw.apply(_fm(4, 10, (SetField("ipv4_dst", "10.0.0.21"), Output(6)), reg0=17))
    res = sw.lookup(PKT, 1)
    assert [h.port for h in res.outputs] == [5, 6]
    assert res.outputs[0]["eth_dst"] == "00:00:00:00:00:21"
    assert res.outputs[1]["ipv4_dst"] == "10.0.0.21" and "reg0" not in res.outputs[1].fields


def test_learn_installs_an_entry_built_from_the_packet() -> None:
    """learn reads the packet as rewritten so far (swapping fields, as for a reply) and loads
    constants; the reverse flow's packets then hit the learned entry, other flows do not."""
    sw = FakeOFTable(1)
    specs = (LearnSpec("match", "eth_type", 16, value=IP),
             LearnSpec("match", "ip_proto", 8, value=6),
             LearnSpec("match", "ipv4_src", 32, src="ipv4_dst"),
             LearnSpec("match", "tcp_dst", 16, src="tcp_src"),
             LearnSpec("load", "ipv4_src", 32, value=0x0A006401))
    sw.apply(_fm(0, 10, (SetField("ipv4_dst", "10.0.0.21"),
                         Learn(2, specs, idle_timeout=5, cookie=0x7), Output(2)),
                 eth_type=IP, ip_proto=6, tcp_dst=8000))
    sw.lookup(PKT, 1, now=1.0)
    (learned,) = sw.entries(2)
    assert dict(learned.match) == {"eth_type": IP, "ip_proto": 6, "ipv4_src": 0x0A000015,
                                   "tcp_dst": 40000}
    assert learned.cookie == 0x7 and learned.idle_timeout == 5
    reply = {**PKT, "ipv4_src": "10.0.0.21", "ipv4_dst": "10.0.0.1", "tcp_src": 8000,
             "tcp_dst": 40000}
    sw.apply(_fm(0, 20, (Resubmit(2), Output(3)), eth_type=IP, ip_proto=6, tcp_src=8000))
    assert sw.lookup(reply, 2, now=2.0).only()["ipv4_src"] == "10.0.100.1"
    assert sw.lookup({**reply, "tcp_dst": 40002}, 2).only()["ipv4_src"] == "10.0.0.21"


def test_mpls_hides_the_ip_headers_until_popped() -> None:
    """After push_mpls only the label matches; pop_mpls makes the packet IP again."""
    sw = FakeOFTable(1)
    sw.apply(_fm(0, 10, (PushMpls(), SetField("mpls_label", 16), Resubmit(1))))
    sw.apply(_fm(1, 20, (Output(9),), eth_type=IP, ipv4_dst="10.0.100.1"))
    sw.apply(_fm(1, 10, (PopMpls(), Output(7)), eth_type=0x8847, mpls_label=16))
    hop = sw.lookup(PKT, 1).only()
    assert hop.port == 7 and hop.has(eth_type=IP, ipv4_dst="10.0.100.1")
    sw.apply(_fm(2, 10, (SetField("ipv4_dst", "10.0.0.1"),)))
    sw.apply(_fm(0, 10, (PushMpls(), Resubmit(2))))
    with pytest.raises(FakeTableError, match="without that header"):
        sw.lookup(PKT, 1)


def test_ambiguous_entries_raise_and_outputs_skip_the_in_port() -> None:
    """Two top-priority hits are undefined in OpenFlow: an error; an output to the port the
    packet came in by is dropped; an output to the controller is a packet-in."""
    sw = FakeOFTable(1)
    sw.apply(_fm(0, 10, (Output(1), Output(PORT_CONTROLLER)), eth_type=IP))
    res = sw.lookup(PKT, 1)
    assert res.outputs == [] and res.to_controller and res.packet_ins[0].port == 1
    sw.apply(_fm(0, 10, (Output(2),), eth_type=IP, ip_proto=6))
    with pytest.raises(FakeTableError, match="entries of priority 10"):
        sw.lookup(PKT, 1)


def test_idle_timeout_counts_from_the_last_hit_and_reports_the_removal() -> None:
    """An entry idles out idle_timeout after its last hit; one with the removal flag is
    reported (dpid, cookie, reason)."""
    net = FakeNetwork([])
    net.apply([FlowMod(1, 0, 10, (), (Output(2),), idle_timeout=5, cookie=0xC,
                       notify_removal=True)])
    assert net.send(1, 1, PKT, now=4.0).outputs and net.send(1, 1, PKT, now=8.0).outputs
    assert net.take_removed(12.9) == []
    assert net.take_removed(13.0) == [(1, 0xC, "idle")]
    assert net.send(1, 1, PKT, now=13.0).outputs == []


def test_packets_cross_links_and_packet_outs_run_their_actions() -> None:
    """A packet output on a link port is looked up at the other end; a packet-out's actions
    rewrite and send its frame; frames and header fields convert both ways."""
    net = FakeNetwork([((1, 10), (2, 10))])
    net.apply([FlowMod(1, 0, 10, (), (Output(10),)), FlowMod(2, 0, 10, (), (Output(3),))])
    hop = net.send(1, 1, PKT).only()
    assert (hop.dpid, hop.port) == (2, 3)
    res = net.apply([PacketOut(1, frame_of(PKT), (SetField("ipv4_dst", "10.0.0.21"),
                                                   Output(10)))])
    assert res.only().has(ipv4_dst="10.0.0.21", tcp_src=40000)
    assert fields_of(frame_of(PKT)) == {k: number(v) for k, v in PKT.items()}

"""The flow-statistics fast path (apps/flowstats.py) gives the app what the framework's parser
gives it: the same entries (`entry_of`), the same affinity-poll rows; whatever it cannot read
goes to the framework whole."""

from __future__ import annotations

import importlib
import random
from typing import Any

import pytest

from apps import flowstats
from apps.flowread import entry_of
from apps.ofmsg import encode, to_message
from bench import emutable
from bench.emutable import FlowTable
from controller.intents import (
    PORT_CONTROLLER,
    FlowMod,
    Group,
    Output,
    Resubmit,
    SetField,
    match,
)
from tests.fakes import FRAMEWORKS, FakeDatapath
from tests.test_emutable import read

pytestmark = pytest.mark.skipif(not FRAMEWORKS, reason="neither ryu nor os_ken is installed")


def parsers(framework: str) -> tuple[Any, Any]:
    """The framework's own MULTIPART_REPLY parser and the fast path around it."""
    module = importlib.import_module(f"{framework}.ofproto.ofproto_v1_3_parser")
    current = module._MSG_PARSERS[flowstats.OFPT_MULTIPART_REPLY]
    own = getattr(current, "framework", current)
    return own, flowstats._fast(module.OFPFlowStatsReply, own)


def parse(parser: Any, dp: FakeDatapath, raw: bytes) -> Any:
    length, xid = int.from_bytes(raw[2:4], "big"), int.from_bytes(raw[4:8], "big")
    return parser(dp, 4, raw[1], length, xid, bytearray(raw))


def flow_mod_bytes(dp: FakeDatapath, fm: FlowMod) -> bytes:
    try:
        return encode(fm, 1)
    except Exception:
        msg = to_message(dp, fm)
        msg.set_xid(1)
        msg.serialize()
        return bytes(msg.buf)


def random_flow(rng: random.Random, k: int) -> FlowMod:
    """An entry of the kinds the app installs: host routes, punts, bindings, pipeline."""
    fields: dict[str, Any] = {"eth_type": rng.choice([0x0800, 0x0806, 0x88CC])}
    if fields["eth_type"] == 0x0800:
        fields["ipv4_dst"] = f"10.{k >> 16 & 255}.{k >> 8 & 255}.{k & 255}"
        if rng.random() < 0.4:
            fields["ip_proto"] = rng.choice([6, 17])
            port = "tcp" if fields["ip_proto"] == 6 else "udp"
            fields[f"{port}_dst"] = rng.randrange(1, 65536)
            if port == "tcp" and rng.random() < 0.5:
                fields["tcp_flags"] = (0x02, 0x12)  # a service's SYN punt (a Nicira field)
            if rng.random() < 0.5:
                fields[f"{port}_src"] = rng.randrange(1, 65536)
                fields["ipv4_src"] = f"192.168.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        if rng.random() < 0.2:
            fields["ipv4_src"] = (rng.randrange(1 << 32), 0xFFFFFF00)  # masked
    elif fields["eth_type"] == 0x0806 and rng.random() < 0.5:
        fields["arp_tpa"] = f"10.0.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    if rng.random() < 0.3:
        fields["in_port"] = rng.randrange(1, 50)
    actions: list[Any] = []
    if rng.random() < 0.6:
        mac = f"02:aa:{k & 255:02x}:00:{k >> 8 & 255:02x}:0{rng.randrange(10)}"
        actions.append(SetField("eth_dst", mac))
    if rng.random() < 0.3:
        actions.append(SetField("ipv4_dst", f"10.9.{rng.randrange(256)}.{rng.randrange(256)}"))
    if rng.random() < 0.1:
        actions.append(Resubmit(3))  # a Nicira action: skipped by both
    actions.append(Output(rng.choice([1, 2, 3, PORT_CONTROLLER])))
    return FlowMod(1, rng.randrange(5), rng.randrange(65536), match(**fields), tuple(actions),
                   goto=rng.choice([None, 2]), cookie=rng.randrange(1 << 64),
                   idle_timeout=rng.choice([0, 30]), notify_removal=rng.random() < 0.5)


def rows(body: list[Any], ofp: Any) -> list[tuple[Any, ...]]:
    """What the app takes from each entry (dyncast_app._flow_stats_handler): the audit's
    SwitchEntry and the affinity poll's row."""
    return [(entry_of(s, ofp), s.cookie, dict(s.match.items()), s.packet_count,
             s.duration_sec + s.duration_nsec / 1e9, s.table_id, s.priority) for s in body]


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("seed", range(4))
def test_the_fast_path_reads_what_the_framework_reads(framework: str, seed: int) -> None:
    rng = random.Random(seed)
    dp = FakeDatapath(framework)
    own, fast = parsers(framework)
    table = FlowTable()
    for k in range(900):
        table.flow_mod(flow_mod_bytes(dp, random_flow(rng, k)), 0.0)
    replies = read(table, now=12.25)
    assert len(replies) > 1
    for raw in replies:
        slow, quick = parse(own, dp, raw), parse(fast, dp, raw)
        assert isinstance(quick, type(slow))  # the same event: ofp_event goes by the name
        assert type(quick).__name__ == type(slow).__name__
        assert (quick.xid, quick.type, quick.flags) == (slow.xid, slow.type, slow.flags)
        assert all(isinstance(s, flowstats.FlowStat) for s in quick.body)
        assert rows(quick.body, dp.ofproto) == rows(slow.body, dp.ofproto)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_what_it_cannot_read_goes_to_the_framework_whole(framework: str) -> None:
    dp = FakeDatapath(framework)
    own, fast = parsers(framework)
    table = FlowTable()
    table.flow_mod(flow_mod_bytes(dp, FlowMod(1, 1, 100, match(eth_type=0x0800,
                                                               ipv4_dst="10.0.0.1"),
                                              (Output(1),))), 0.0)
    odd = [FlowMod(1, 2, 7, match(pkt_mark=5), (Output(2),)),  # a Nicira field it does not read
           FlowMod(1, 2, 8, match(vlan_vid=0x1005), ()),  # a field it does not read
           FlowMod(1, 2, 9, (), (Group(4),))]  # readable: a group action is skipped
    for fm in odd:
        table.flow_mod(flow_mod_bytes(dp, fm), 0.0)
        quick = parse(fast, dp, read(table)[0])
        slow = parse(own, dp, read(table)[0])
        assert rows(quick.body, dp.ofproto) == rows(slow.body, dp.ofproto)
        readable = fm.priority == 9
        assert all(isinstance(s, flowstats.FlowStat) == readable for s in quick.body)
        table.flow_mod(flow_mod_bytes(dp, FlowMod(1, 2, fm.priority, fm.match,
                                                  command="delete_strict")), 0.0)
    port_stats = parse(fast, dp, bytes.fromhex("0413001000000009") + bytes(8)[:0]
                       + emutable._MP.pack(4, 0))
    assert type(port_stats).__name__ == "OFPPortStatsReply"


def test_install_is_idempotent() -> None:
    module = importlib.import_module(f"{FRAMEWORKS[0]}.ofproto.ofproto_v1_3_parser")
    saved = module._MSG_PARSERS[flowstats.OFPT_MULTIPART_REPLY]
    try:
        flowstats.install(module)
        once = module._MSG_PARSERS[flowstats.OFPT_MULTIPART_REPLY]
        flowstats.install(module)
        assert module._MSG_PARSERS[flowstats.OFPT_MULTIPART_REPLY] is once
        assert once.fast_path
    finally:
        module._MSG_PARSERS[flowstats.OFPT_MULTIPART_REPLY] = saved


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_app_pipeline_routes_and_punts_are_all_read_by_the_fast_path(framework: str) -> None:
    """A switch's table as the core programs it (pipeline, host routes, the services' SYN
    punts with their Nicira tcp_flags match) never needs the framework's parser."""
    from tests.test_audit_routes import setup
    _, held = setup()
    dp = FakeDatapath(framework)
    own, fast = parsers(framework)
    table = FlowTable()
    for fm in held.values():
        table.flow_mod(flow_mod_bytes(dp, fm), 0.0)
    assert any(k == "tcp_flags" for fm in held.values() for k, _ in fm.match)
    for raw in read(table):
        quick = parse(fast, dp, raw)
        assert quick.body and all(isinstance(s, flowstats.FlowStat) for s in quick.body)
        assert rows(quick.body, dp.ofproto) == rows(parse(own, dp, raw).body, dp.ofproto)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("mode", ["reactive", "learn", "bucket", "conntrack", "learn-overlay",
                                  "bucket-overlay", "conntrack-overlay"])
def test_every_mode_s_tables_with_the_defaults_are_read_by_the_fast_path(framework: str,
                                                                         mode: str) -> None:
    """Each switch's tables as the core programs them in each dataplane mode, with the
    defaults (passive health's punts with their register marks, bucket labels, the connection
    tracker's fields) and flows under way: every reply is read by the fast path, as the
    framework reads it. (With passive health on, a table read fell back to the framework's
    parser at every reply that held a health entry.)"""
    from tests.test_pipelines import SERVICES, Figure2
    net = Figure2(SERVICES[mode])
    for sport in range(40000, 40012):
        net.go(sport, flags=0x02)
    dp = FakeDatapath(framework)
    own, fast = parsers(framework)
    fields = set()
    for dpid, switch in sorted(net.net.switches.items()):
        table = FlowTable()
        for fm in switch.entries():
            fields |= {k for k, _ in fm.match}
            table.flow_mod(flow_mod_bytes(dp, fm), 0.0)
        for raw in read(table):
            quick = parse(fast, dp, raw)
            assert quick.body and all(isinstance(s, flowstats.FlowStat) for s in quick.body), dpid
            assert rows(quick.body, dp.ofproto) == rows(parse(own, dp, raw).body, dp.ofproto)
    assert "reg2" in fields  # the health punts are there (on by default)
    if mode.startswith("conntrack"):
        assert {"ct_state", "ct_mark"} <= fields


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_each_flow_statistics_reply_is_read_after_a_pause_when_its_body_is_asked_for(
        framework: str) -> None:
    """The framework's receive loop parses a switch's messages one after another, answering
    its echo requests in between: the fast path neither pauses nor reads a flow-statistics
    reply there; its body is read when first asked for (by the app's handler), after a pause
    (the event loop running), once; other replies are the framework's, with no pause."""
    dp = FakeDatapath(framework)
    module = importlib.import_module(f"{framework}.ofproto.ofproto_v1_3_parser")
    event = importlib.import_module(f"{framework}.controller.ofp_event")
    own, _ = parsers(framework)
    log: list[str] = []

    def read_stats(buf: bytes, offset: int, end: int) -> list[flowstats.FlowStat]:
        log.append("read")
        return real(buf, offset, end)

    real, flowstats.read_stats = flowstats.read_stats, read_stats  # type: ignore[assignment]
    try:
        fast = flowstats._fast(module.OFPFlowStatsReply, own, lambda: log.append("pause"))
        table = FlowTable()
        for k in range(900):
            table.flow_mod(flow_mod_bytes(dp, FlowMod(1, 1, 100, match(
                eth_type=0x0800, ipv4_dst=f"10.0.{k >> 8}.{k & 255}"), (Output(1),))), 0.0)
        replies = read(table)
        assert len(replies) > 1
        msgs = [parse(fast, dp, raw) for raw in replies]
        assert all(isinstance(event.ofp_msg_to_ev(m), event.EventOFPFlowStatsReply)
                   for m in msgs)
        assert log == []  # the receive loop only queued them
        for m, raw in zip(msgs, replies, strict=True):
            assert len(m.body) == len(parse(own, dp, raw).body)
            assert len(m.body) == len(parse(own, dp, raw).body)  # read once
        assert log == ["pause", "read"] * len(replies)
        parse(fast, dp, bytes.fromhex("0413001000000009") + emutable._MP.pack(4, 0))
        assert log == ["pause", "read"] * len(replies)  # port stats: the framework's, now
    finally:
        flowstats.read_stats = real  # type: ignore[assignment]

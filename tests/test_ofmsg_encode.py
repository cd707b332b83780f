"""The fast encoder (`apps.ofmsg.encode` / `serialise`) gives exactly the framework's bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.ofmsg import Unsupported, encode, serialise
from controller.dataplane.affinity import Binding, FlowKey, binding_flows
from controller.dataplane.modes import MODES, service_punt, syn_punt
from controller.intents import (
    PORT_CONTROLLER,
    CookieKind,
    FlowMod,
    Intent,
    Output,
    PacketOut,
    Resubmit,
    SetField,
    cookie_kind,
    delete_by_cookie,
    match,
)
from controller.model import AffinityPolicy, Service
from controller.network.forwarding import base_flows
from tests.fakes import FakeDatapath, framework_bytes
from tests.helpers import HOSTS, SVC1, SVC2, figure2_core, report, tcp_frame


def core_intents() -> list[Intent]:
    """Every kind of intent the core makes: pipeline, punts, routes, ARP, LLDP, bindings
    (5-tuple, 3-tuple), a moved binding, deletions, liveness probes."""
    core = figure2_core()
    out: list[Intent] = []
    for dpid in (1, 2, 3, 4):
        out += core.switch_connected(dpid)
    out += core.forwarding.sync_routes()
    out += core.forwarding.lldp(1.0)
    for dbid in ("10.0.0.21", "10.0.0.31", "10.0.0.22", "10.0.0.32"):
        report(core, dbid, 1.0)
    ip, mac, dpid, port = HOSTS["c1"]
    for dsid, sport in (("10.0.100.1", 40000), ("10.0.100.2", 40001), ("10.0.100.1", 40002)):
        out += core.packet_in(dpid, port, tcp_frame(mac, "02:dc:00:00:00:01", ip, dsid, sport,
                                                    8000), 2.0)
    out += core.packet_in(dpid, port, tcp_frame(mac, "00:00:00:00:00:99", ip, "10.0.9.9", 1,
                                                2), 2.0)
    out += core.withdraw("10.0.0.21", 3.0)
    out += core.tick(100.0)  # stale metrics: liveness probes
    kinds = {(i.command, cookie_kind(i.cookie)[0]) if isinstance(i, FlowMod)  # type: ignore[index]
             else ("packet-out", len(i.actions)) for i in out}
    assert kinds >= {("add", CookieKind.INFRA), ("add", CookieKind.SERVICE),
                     ("add", CookieKind.HOST), ("delete_strict", CookieKind.HOST),
                     ("add", CookieKind.AFFINITY_FWD), ("add", CookieKind.AFFINITY_REV),
                     ("delete", CookieKind.AFFINITY_REV), ("packet-out", 1),
                     ("packet-out", 3)}, kinds
    return out


def test_every_core_intent_encodes_to_the_framework_bytes(dp: FakeDatapath) -> None:
    """Passive health's reset copies (on by default; reg2 match and load) are the fast
    encoder's one exception: it refuses them, and `serialise` has the framework make them
    (their bytes: tests/test_health.py)."""
    intents = core_intents()
    assert any(isinstance(i, PacketOut) for i in intents)
    health = [i for i in intents if isinstance(i, FlowMod)
              and cookie_kind(i.cookie) is not None
              and cookie_kind(i.cookie)[0] == CookieKind.HEALTH]  # type: ignore[index]
    assert health
    for xid, intent in enumerate(intents, start=7):
        if intent in health:
            with pytest.raises(Unsupported, match="reg2"):
                encode(intent, xid)
        else:
            assert encode(intent, xid) == framework_bytes(dp, intent, xid), intent


@pytest.mark.parametrize("svc", [
    SVC1, SVC2,
    Service("u", "10.0.100.3", "udp", 5000, AffinityPolicy("source", 10, 60)),
    Service("any", "10.0.100.4", None, None, AffinityPolicy("3-tuple", 0, 0)),
])
def test_service_and_binding_entries_encode_to_the_framework_bytes(dp: FakeDatapath,
                                                                   svc: Service) -> None:
    proto = svc.ip_proto
    key = FlowKey(svc.name, "10.0.0.1", svc.dsid, proto,
                  1234 if proto else None, svc.port if proto else None)
    binding = Binding(0xABCDEF, key, "10.0.0.21", 2, 0.0)
    for intent in [service_punt(3, svc), *syn_punt(3, svc), *MODES["learn"].punts(3, svc),
                   *binding_flows(binding, svc, "00:00:00:00:00:21"),
                   *base_flows(9), delete_by_cookie(2, 0xDC03000000ABCDEF)]:
        assert encode(intent, 0xFFFFFFFF) == framework_bytes(dp, intent, 0xFFFFFFFF), intent


def test_packet_outs_encode_to_the_framework_bytes(dp: FakeDatapath) -> None:
    data = tcp_frame("00:00:00:00:00:01", "02:dc:00:00:00:01", "10.0.0.1", "10.0.100.1", 1, 80)
    for po in [PacketOut(1, data, (SetField("eth_dst", "00:00:00:00:00:21"),
                                   SetField("ipv4_dst", "10.0.0.21"), Output(3)), 1),
               PacketOut(1, data, (Output(1), Output(2), Output(PORT_CONTROLLER))),
               PacketOut(1, b"", ())]:
        assert encode(po, 3) == framework_bytes(dp, po, 3)


def test_masked_integer_fields_encode_to_the_framework_bytes(dp: FakeDatapath) -> None:
    """Masked ports and TCP flags (buckets, SYN entries) are packed directly too, the Nicira
    tcp_flags after the standard fields."""
    for fields in [{"eth_type": 0x800, "ip_proto": 6, "tcp_src": (0x0030, 0x00F0)},
                   {"tcp_flags": (0x002, 0x012), "eth_type": 0x800, "ip_proto": 6,
                    "tcp_dst": 80, "ipv4_dst": "10.0.100.1"}]:
        intent = FlowMod(1, 0, 10, match(**fields), (Output(2),))
        assert encode(intent, 5) == framework_bytes(dp, intent, 5)


def test_resubmit_encodes_to_the_framework_bytes(dp: FakeDatapath) -> None:
    """The Nicira resubmit action (bucket and learn dataplanes) is packed directly too."""
    for intent in [FlowMod(1, 3, 10, match(eth_type=0x800),
                           (SetField("ipv4_dst", "10.0.0.1"), Resubmit(4), Output(2)), goto=1),
                   PacketOut(1, b"\x00" * 60, (Resubmit(2),), 1)]:
        assert encode(intent, 5) == framework_bytes(dp, intent, 5)


def test_what_the_fast_encoder_does_not_know_goes_through_the_framework(
        dp: FakeDatapath) -> None:
    odd = [
        FlowMod(1, 0, 10, (("ipv4_dst", ("10.0.0.0", "255.255.255.0")), ("eth_type", 0x800))),
        FlowMod(1, 0, 10, (("eth_type", 0x800), ("ip_dscp", 8), ("vlan_vid", 0x1001))),
        FlowMod(1, 0, 10, (("eth_src", "02-00-00-00-00-01"),)),
    ]
    for intent in odd:
        with pytest.raises(Unsupported):
            encode(intent, 1)
    dp.xid = 41
    data = serialise(dp, odd)
    expected = b"".join(framework_bytes(dp, i, x) for x, i in enumerate(odd, start=42))
    assert data == expected and dp.xid == 44


def test_serialise_takes_transaction_ids_from_the_datapath_and_wraps(dp: FakeDatapath) -> None:
    intents: list[Intent] = [*base_flows(1), PacketOut(1, b"\x00" * 60, (Output(2),))]
    dp.xid = dp.ofproto.MAX_XID - 1
    data = serialise(dp, intents)
    xids, off = [], 0
    while off < len(data):
        _, _, length, xid = struct.unpack_from("!BBHI", data, off)
        xids.append(xid)
        off += length
    assert off == len(data)
    assert xids == [dp.ofproto.MAX_XID, *range(len(intents) - 1)]
    assert dp.sent == []


def test_serialise_sends_what_came_before_an_intent_it_cannot_encode(dp: FakeDatapath) -> None:
    good = FlowMod(1, 0, 10, match(eth_type=0x800))
    bad = FlowMod(1, 0, 1 << 20, match(eth_type=0x800))  # priority does not fit 16 bits
    with pytest.raises(struct.error):
        serialise(dp, [good, bad, good])
    assert dp.sent == [framework_bytes(dp, good, 1)]
    assert dp.xid == 2


def test_actions_found_again_by_identity_encode_to_the_framework_bytes(dp: FakeDatapath) -> None:
    """A binding's rewrites are one tuple per instance, found again by identity: encoded the
    first time, again, and as an equal tuple made afresh, each gives the framework's bytes."""
    svc = SVC1
    first, again = (Binding(n, FlowKey(svc.name, "10.0.0.1", svc.dsid, 6, 1000 + n, 8000),
                            "10.0.0.21", 2, 0.0) for n in (1, 2))
    fwd1, rev1 = binding_flows(first, svc, "00:00:00:00:00:21")
    fwd2, rev2 = binding_flows(again, svc, "00:00:00:00:00:21")
    assert fwd1.actions is fwd2.actions and rev1.actions is rev2.actions
    fresh = FlowMod(fwd2.dpid, fwd2.table, fwd2.priority, fwd2.match,
                    tuple(SetField(a.field, a.value) for a in fwd2.actions  # type: ignore[union-attr]
                          ), fwd2.goto, fwd2.idle_timeout, fwd2.hard_timeout, fwd2.cookie,
                    fwd2.command, fwd2.notify_removal)
    for intent in (fwd1, rev1, fwd2, rev2, fresh, fwd1):
        assert encode(intent, 9) == framework_bytes(dp, intent, 9), intent


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 65535), st.integers(0, 65535), st.sampled_from((6, 17)))
def test_ports_packed_without_the_cache_give_the_framework_bytes(
        dp: FakeDatapath, sport: int, dport: int, proto: int) -> None:
    """Any port of any new flow (packed directly, never cached) encodes as the framework does."""
    svc = SVC1 if proto == 6 else Service("u", "10.0.100.3", "udp", 5000)
    key = FlowKey(svc.name, "10.0.0.1", svc.dsid, proto, sport, dport)
    for intent in binding_flows(Binding(3, key, "10.0.0.21", 2, 0.0), svc, "00:00:00:00:00:21"):
        assert encode(intent, 4) == framework_bytes(dp, intent, 4), intent


def test_a_match_shape_packed_again_from_its_plan_keeps_the_framework_bytes(
        dp: FakeDatapath) -> None:
    """The same field names seen again are packed from the plan the first made (apps/ofmatch.py)
    in the framework's order, whatever order they come in; a value the plan's integer field
    cannot hold (a masked port, a bool, a port above 65535) is not packed by it: a masked one
    through the cache's path, the others refused (the framework's serialiser then decides)."""
    names = ("tcp_src", "ipv4_dst", "eth_type", "ip_proto", "in_port")
    for k, values in enumerate([(40000, "10.0.100.1", 0x800, 6, 3),
                                (40001, "10.0.100.2", 0x800, 6, 0xFFFFFFFE),
                                ((0x0030, 0x00F0), "10.0.100.1", 0x800, 6, 1)]):
        fields = tuple(zip(names, values, strict=True))
        for order in (fields, fields[::-1]):
            intent = FlowMod(1, 0, 10, order, (Output(2),))
            assert encode(intent, k) == framework_bytes(dp, intent, k), order
    for bad in (True, 65536, -1):
        with pytest.raises(Unsupported):
            encode(FlowMod(1, 0, 10, (("eth_type", 0x800), ("ip_proto", 6), ("tcp_src", bad))),
                   1)


def test_label_register_entries_encode_to_the_framework_bytes(dp: FakeDatapath) -> None:
    """reg0 (Nicira NXM_NX_REG0, an instance's label) as a match field and a set-field is
    packed directly too: a `learn` flow's entries installed with a move (relearn.rehomed), the
    table-4 entries and the decision's."""
    for intent in [
        FlowMod(1, 2, 100, match(eth_type=0x800, ip_proto=6, ipv4_src="10.0.0.1",
                                 ipv4_dst="10.0.100.1", tcp_src=40000, tcp_dst=8000),
                (SetField("reg0", 17),), cookie=0xDC07000000000011, idle_timeout=30),
        FlowMod(1, 4, 100, match(eth_type=0x800, ip_proto=17, reg0=0xFFFFFFFF),
                (SetField("eth_dst", "00:00:00:00:00:21"), Resubmit(1))),
        FlowMod(1, 3, 100, match(eth_type=0x800, reg0=5, tcp_flags=(0x002, 0x012)),
                (SetField("reg0", 0), Output(2))),
    ]:
        assert encode(intent, 9) == framework_bytes(dp, intent, 9), intent
    with pytest.raises(Unsupported):
        encode(FlowMod(1, 2, 100, match(reg0=1 << 32)), 9)

"""Passive health through the framework and the app, on each framework: a reset copy as Open
vSwitch sends it is parsed (by the framework: the fast path declines it) and counted as a
refusal, never taken for a new flow; a switch that refuses the health meter is logged once,
gets no reset copies and keeps steering."""

from __future__ import annotations

import importlib
import logging
import struct

import pytest

from apps import packet_in
from controller.dataplane.audit import joined
from controller.dataplane.healthpunt import HEALTH_METER, TABLE_HEALTH, health_cookie
from controller.instances.health import is_refusal
from controller.intents import CookieKind, FlowMod, cookie_kind
from controller.network.packet import TCP_ACK, TCP_RST
from tests import test_app_smoke
from tests.fakes import FakeDatapath, Sent
from tests.helpers import tcp_frame
from tests.test_app_smoke import CLIENT, DSID, INSTANCE, Shell, flow_mods

shell = test_app_smoke.shell  # the fixture: the app on each framework
OFPET_METER_MOD_FAILED, OFPMMFC_INVALID_METER = 12, 2  # what OVS answers without meters


def refusal() -> bytes:
    """The instance's kernel refuses the client's SYN: RST and ACK, sequence 0."""
    frame = bytearray(tcp_frame(INSTANCE[1], CLIENT[1], INSTANCE[0], CLIENT[0], 8000, 40000))
    frame[47] = TCP_RST | TCP_ACK
    return bytes(frame)


def error(xid: int, code: int, request: bytes) -> bytes:
    """The switch's ERROR (type METER_MOD_FAILED) answering `request` (its first 64 bytes)."""
    data = request[:64]
    return struct.pack("!BBHIHH", 4, 1, 12 + len(data), xid, OFPET_METER_MOD_FAILED,
                       code) + data


def health_mods(sent: list[Sent]) -> list[tuple[int, int]]:
    """(table, command) of each of passive health's flow-mods among `sent`."""
    return [(m.table_id, m.command) for m in flow_mods(sent)
            if (cookie_kind(m.cookie) or (None,))[0] == CookieKind.HEALTH]


def copied_reset(xid: int, in_port: int, label: int, frame: bytes) -> bytes:
    """The PACKET_IN Open vSwitch sends for a reset copied by instance `label`'s entries: from
    table 5 with their cookie, reason ACTION, its match in_port and reg2 (a Nicira field)."""
    oxm = struct.pack("!IIII", 0x80000004, in_port, 0x00010404, label)
    match = struct.pack("!HH", 1, 4 + len(oxm)) + oxm + bytes(4)
    body = struct.pack("!IHBBQ", 0xFFFFFFFF, len(frame), 1, TABLE_HEALTH,
                       health_cookie(label)) + match + b"\0\0"
    return struct.pack("!BBHI", 4, 10, 8 + len(body) + len(frame), xid) + body + frame


def test_a_copied_reset_parses_with_its_register_and_table(dp: FakeDatapath) -> None:
    """Open vSwitch sends the copy with in_port and reg2 (a Nicira field) in its match, from
    table 5: the framework parses it (the fast path declines it), with table and cookie."""
    parser = dp.ofproto_parser
    packet_in.install(parser)
    ofproto_parser = importlib.import_module(f"{dp.framework}.ofproto.ofproto_parser")
    frame = refusal()
    buf = copied_reset(5, 2, 37, frame)
    version, msg_type, length, xid = ofproto_parser.header(buf)
    msg = ofproto_parser.msg(dp, version, msg_type, length, xid, bytearray(buf))
    assert (msg.table_id, msg.cookie) == (TABLE_HEALTH, health_cookie(37))
    assert msg.match["in_port"] == 2
    assert msg.data == frame and is_refusal(msg.data)


def test_a_copied_reset_counts_as_a_refusal_and_is_no_new_flow(shell: Shell) -> None:
    """The copy (table 5, the health cookie, in_port and reg2 in its match) goes to passive
    health: counted as a refusal; no binding, no flow-mod, no packet-out comes of it."""
    shell.connect()
    shell.arp_from(CLIENT)
    shell.arp_from(INSTANCE)
    shell.register()
    core = shell.app.core
    shell.sent()
    label = core.programmer.label(INSTANCE[0])
    shell.switch_says(copied_reset(60, INSTANCE[2], label, refusal()))
    assert (core.counters["health_resets"], core.counters["health_refusals"]) == (1, 1)
    assert len(core.bindings) == 0 and shell.sent() == []
    assert core.counters["errors"] == 0


def test_a_switch_refusing_the_health_meter_is_logged_once_and_keeps_steering(
        shell: Shell, caplog: pytest.LogCaptureFixture) -> None:
    """A switch without meters refuses the health meter's add and modify, and the table-5
    entry that uses it: one warning, no error counted; its reset-copy entries are deleted
    and not sent again (not at the next recompute, nor by the audit); new flows are still
    bound. (The punt meter here is accepted: tests/test_punt_meterless.py refuses it.)"""
    shell.connect()
    meters = [s.raw for s in shell.sent() if s.msg_type == shell.dp.ofproto.OFPT_METER_MOD
              and struct.unpack_from("!I", s.raw, 12)[0] == HEALTH_METER]
    assert len(meters) == 2  # add, then modify
    shell.arp_from(CLIENT)
    shell.arp_from(INSTANCE)
    shell.register()
    sent = shell.sent()
    assert sorted(health_mods(sent)) == [(0, 0), (TABLE_HEALTH, 0)]  # both added
    punt = next(s.raw for s in sent if s.msg is not None and type(s.msg).__name__ ==
                "OFPFlowMod" and s.msg.table_id == TABLE_HEALTH)
    core = shell.app.core
    with caplog.at_level(logging.INFO, logger="dyncast"):
        for n, raw in enumerate([*meters, punt]):
            shell.switch_says(error(70 + n, OFPMMFC_INVALID_METER, raw))
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1 and "health" in warned[0].getMessage(), warned
    assert core.counters["errors"] == 0
    assert sorted(health_mods(shell.sent())) == [(0, 4), (TABLE_HEALTH, 4)]  # deleted, strictly
    assert core.health.at(1) == []
    repair = joined(core.switch_table_steps(1, [], [], 0.0, 0.0))  # an emptied switch's audit
    assert repair and not [i for i in repair if isinstance(i, FlowMod)
                           and (cookie_kind(i.cookie) or (None,))[0] == CookieKind.HEALTH]
    assert shell.rest("POST", "metrics", {"dbid": INSTANCE[0], "cpu": 0.2, "sessions": 1,
                                          "queue": 0, "capacity": 10}).status == 200
    shell.app.send(core.flush(0.0))
    assert health_mods(shell.sent()) == []
    shell.syn(40000)
    mods = flow_mods(shell.sent())
    assert any(dict(m.match.items()).get("ipv4_dst") == DSID for m in mods)  # bound
    assert len(core.bindings) == 1

"""A switch without meters, on each framework: it refuses the packet-in meter and every entry
sent with it; the controller logs that once, counts the refusals (no OpenFlow error), reads
the switch's table and puts the refused entries back without the meter, and the switch steers
new flows as any other. A switch that has meters keeps its metered entries."""

from __future__ import annotations

import logging
import struct
from typing import Any

import pytest

from bench import ofgen
from controller.dataplane.punt import PUNT_METER
from tests import test_app_smoke
from tests.fakes import FakeDatapath, Sent
from tests.test_app_smoke import CLIENT, DSID, INSTANCE, Shell, flow_mods

shell = test_app_smoke.shell  # the fixture: the app on each framework
OFPET_METER_MOD_FAILED, OFPMMFC_INVALID_METER = 12, 2  # what OVS answers without meters


def error(xid: int, request: bytes) -> bytes:
    """The switch's ERROR (METER_MOD_FAILED, INVALID_METER) answering `request`."""
    data = request[:64]
    return struct.pack("!BBHIHH", 4, 1, 12 + len(data), xid, OFPET_METER_MOD_FAILED,
                       OFPMMFC_INVALID_METER) + data


def metered(mod: Any) -> bool:
    """True when a parsed FlowMod passes a meter."""
    return any(type(i).__name__ == "OFPInstructionMeter" for i in mod.instructions)


def to_controller(mod: Any) -> bool:
    """True when a parsed FlowMod's actions output to the controller."""
    return any(getattr(a, "port", None) == mod.datapath.ofproto.OFPP_CONTROLLER
               for i in mod.instructions for a in getattr(i, "actions", ()))


def key(mod: Any) -> tuple[int, int, str]:
    """An entry's identity: table, priority and match."""
    return mod.table_id, mod.priority, str(sorted(dict(mod.match.items()).items()))


def punt_meter_mods(sent: list[Sent], ofp: Any) -> list[bytes]:
    """The METER_MODs of the packet-in meter among `sent`."""
    return [s.raw for s in sent if s.msg_type == ofp.OFPT_METER_MOD
            and struct.unpack_from("!I", s.raw, 12)[0] == PUNT_METER]


def test_a_switch_refusing_the_punt_meter_gets_its_entries_unmetered_and_steers(
        shell: Shell, caplog: pytest.LogCaptureFixture) -> None:
    """The refusals of the meter's add and modify and of each metered entry: one warning, no
    error; the table read that follows gets back every refused entry, unmetered; no meter
    statistics are asked of it, nor is the meter sent again when it reconnects; a SYN to the
    D-SID is bound there; switch 2, which has meters, keeps them."""
    ofp = shell.dp.ofproto
    shell.connect()
    sent = shell.sent()
    meters = punt_meter_mods(sent, ofp)
    assert len(meters) == 2  # add, then modify
    refused = [s.raw for s in sent if type(s.msg).__name__ == "OFPFlowMod" and metered(s.msg)]
    refused_keys = {key(m) for m in flow_mods(sent) if metered(m)}
    assert refused and all(to_controller(m) for m in flow_mods(sent) if metered(m))
    core = shell.app.core
    with caplog.at_level(logging.INFO, logger="dyncast"):
        for n, raw in enumerate([*meters, *refused]):
            shell.switch_says(error(80 + n, raw))
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1 and "packet-in meter" in warned[0].getMessage(), warned
    assert core.counters["errors"] == 0
    assert (core.counters["punt_meter_refused"],
            core.counters["punt_entries_refused"]) == (1, len(refused))
    xid = shell.table_read_xid(shell.dp)  # asked again, at the first refusal
    shell.sent()
    shell.switch_says(ofgen.multipart_reply(xid, ofp.OFPMP_FLOW))  # (nothing of ours held)
    again = flow_mods(shell.sent())
    assert refused_keys <= {key(m) for m in again}, "a refused entry was not put back"
    assert not [m for m in again if metered(m)]
    requests = shell.app._stats_requests(shell.dp)
    assert not [r for r in requests if type(r).__name__ == "OFPMeterStatsRequest"]
    shell.arp_from(CLIENT)
    shell.arp_from(INSTANCE)
    shell.register()
    shell.sent()
    shell.syn(40000)
    mods = flow_mods(shell.sent())
    assert any(dict(m.match.items()).get("ipv4_dst") == DSID for m in mods)  # bound
    assert len(core.bindings) == 1 and not [m for m in mods if metered(m)]
    shell.connect()  # it reconnects: no meter is sent it again
    assert punt_meter_mods(shell.sent(), ofp) == []
    other = FakeDatapath(shell.dp.framework, dpid=2)
    shell.connect(other)
    sent = shell.sent(other)
    assert len(punt_meter_mods(sent, ofp)) == 2
    assert [m for m in flow_mods(sent) if to_controller(m)]
    assert all(metered(m) for m in flow_mods(sent) if to_controller(m))
    assert core.counters["errors"] == 0

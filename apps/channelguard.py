"""The shell's side of the channel guards: the switch allowlist and the packet-in meter.

Boundary: framework messages only; what is allowed and what is metered is decided in
controller/channel.py and controller/dataplane/punt.py.
  - A switch whose datapath id `[channel].switches` does not list is logged, counted and
    disconnected before it gets anything (no flows, no packet-outs).
  - The punt meter (`PUNT_METER`, a drop band at `[channel].punt_pps` packets a second) is
    added when a switch connects, before any entry that uses it. A switch that reconnects still
    has it: the switch answers the add with METER_EXISTS (expected, logged at info), and the
    modify that follows sets the configured rate either way. Its statistics are read with the
    port counters; the drop count is `punt_meter_drops` in GET /stats. A switch that refuses
    the punt meter (no meter support) is logged once and its entries go unmetered from then on
    (`punt_meter_error`): the entries that used the meter before the refusal came are refused
    too, counted, not logged, and the table read that follows puts them back. With passive
    health on,
    a second meter (`HEALTH_METER`, `[controller.health].punt_pps`) limits the reset copies
    the same way (controller/dataplane/healthpunt.py). A switch that refuses that meter (no
    meter support) is logged once and gets no reset copies (`refused_meter`); the entries sent
    it before its refusal arrived are refused too, and counted, not logged
    (`refused_health_entry`).
"""

from __future__ import annotations

import logging
import struct
from typing import Any

from controller.dataplane.healthpunt import HEALTH_METER
from controller.dataplane.punt import PUNT_METER
from controller.health import Health
from controller.intents import CookieKind, Intent, cookie_kind

LOG = logging.getLogger("dyncast")
OFPET_BAD_INSTRUCTION, OFPET_METER_MOD_FAILED = 3, 12  # what a switch without meters answers
OFPMMFC_METER_EXISTS = 1
OFPT_FLOW_MOD, OFPT_METER_MOD = 14, 29
_METER_ID = struct.Struct("!I")  # a METER_MOD's meter id, after header, command and flags
_COOKIE = struct.Struct("!Q")  # a FLOW_MOD's cookie, after the header


def refuse_switch(dp: Any) -> None:
    """Disconnect a switch that is not on the allowlist, saying so in the log."""
    LOG.warning("dyncast: switch %016x refused: its datapath id is not in [channel].switches; "
                "disconnected", dp.id)
    dp.close()


def meter_mods(dp: Any, pps: int, meter_id: int = PUNT_METER) -> list[Any]:
    """The messages that make the punt meter (or `meter_id`: passive health's reset copies,
    HEALTH_METER) exist at `dp` with a drop band at `pps`."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    flags = ofp.OFPMF_PKTPS | ofp.OFPMF_BURST | ofp.OFPMF_STATS
    bands = [parser.OFPMeterBandDrop(rate=pps, burst_size=max(1, pps // 10))]
    return [parser.OFPMeterMod(dp, command=cmd, flags=flags, meter_id=meter_id, bands=bands)
            for cmd in (ofp.OFPMC_ADD, ofp.OFPMC_MODIFY)]


def meter_stats_request(dp: Any) -> Any:
    """Ask for the punt meter's statistics."""
    return dp.ofproto_parser.OFPMeterStatsRequest(dp, 0, PUNT_METER)


def meter_drops(body: list[Any]) -> int:
    """Packets the punt meter dropped, from a meter statistics reply's body."""
    return sum(band.packet_band_count for stat in body if stat.meter_id == PUNT_METER
               for band in stat.band_stats)


def expected_error(msg: Any) -> bool:
    """True for the METER_EXISTS answer to our add at a reconnecting switch."""
    return bool(msg.type == OFPET_METER_MOD_FAILED and msg.code == OFPMMFC_METER_EXISTS)


def refused_meter(msg: Any) -> int | None:
    """The meter id of our METER_MOD an error message refuses (its data holds the request's
    start), but METER_EXISTS (`expected_error`); None for any other error."""
    data = bytes(msg.data)
    if len(data) < 16 or data[1] != OFPT_METER_MOD or expected_error(msg):
        return None
    return int(_METER_ID.unpack_from(data, 12)[0])


def refused_health_entry(msg: Any) -> bool:
    """True when an error message refuses one of passive health's FLOW_MODs (by its cookie)."""
    data = bytes(msg.data)
    if len(data) < 16 or data[1] != OFPT_FLOW_MOD:
        return False
    split = cookie_kind(_COOKIE.unpack_from(data, 8)[0])
    return split is not None and split[0] == CookieKind.HEALTH


def refused_flow_mod(msg: Any) -> bool:
    """True when an error message refuses one of our FLOW_MODs for its meter instruction: a
    meter error, or an instruction the switch does not support."""
    data = bytes(msg.data)
    return (len(data) >= 2 and data[1] == OFPT_FLOW_MOD
            and msg.type in (OFPET_METER_MOD_FAILED, OFPET_BAD_INSTRUCTION))


def punt_meter_error(msg: Any, unmetered: set[int], counters: Any) -> bool | None:
    """For a switch's first refusal of the punt meter: True (it joins `unmetered`, logged once;
    the caller has its table read, so that the refused entries are put back, unmetered); for
    the refusal of the modify after the add, or at such a switch of an entry sent with the
    meter before its refusal came: False, counted. None for any other error."""
    dpid = msg.datapath.id
    if refused_meter(msg) == PUNT_METER:
        if dpid in unmetered:
            return False
        unmetered.add(dpid)
        counters["punt_meter_refused"] += 1
        LOG.warning("dyncast: switch %016x refused the packet-in meter %d (error type=%d "
                    "code=%d): its entries send to the controller without it, so a flood "
                    "there is not limited at the switch; steering goes on", dpid, PUNT_METER,
                    msg.type, msg.code)
        return True
    if dpid in unmetered and refused_flow_mod(msg):
        counters["punt_entries_refused"] += 1
        return False
    return None


def health_meter_error(msg: Any, health: Health) -> list[Intent] | None:
    """For a switch's refusal of passive health's meter: the deletes of its reset-copy
    entries, logged once (the switch gets none from then on); for the refusal, at such a
    switch, of an entry using the meter (sent before the meter's refusal came): nothing,
    counted. None for any other error."""
    dpid = msg.datapath.id
    if refused_meter(msg) == HEALTH_METER:
        if dpid in health.punts.meterless:
            return []  # the modify after the add
        LOG.warning("dyncast: switch %016x refused passive health's meter %d (error type=%d "
                    "code=%d): no reset is copied from it, so its instances are not ejected "
                    "on refusals; steering, and passive health at other switches, go on",
                    dpid, HEALTH_METER, msg.type, msg.code)
        return health.meter_refused(dpid)
    if dpid in health.punts.meterless and refused_health_entry(msg):
        health.counters["health_entries_refused"] += 1
        return []
    return None

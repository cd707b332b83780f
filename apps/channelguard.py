"""The shell's side of the channel guards: the switch allowlist and the packet-in meter.

Boundary: framework messages only; what is allowed and what is metered is decided in
controller/channel.py and controller/dataplane/punt.py.
  - A switch whose datapath id `[channel].switches` does not list is logged, counted and
    disconnected before it gets anything (no flows, no packet-outs).
  - The punt meter (`PUNT_METER`, a drop band at `[channel].punt_pps` packets a second) is
    added when a switch connects, before any entry that uses it. A switch that reconnects still
    has it: the switch answers the add with METER_EXISTS (expected, logged at info), and the
    modify that follows sets the configured rate either way. Its statistics are read with the
    port counters; the drop count is `punt_meter_drops` in GET /stats. With passive health on,
    a second meter (`HEALTH_METER`, `[controller.health].punt_pps`) limits the reset copies
    the same way (controller/dataplane/healthpunt.py).
"""

from __future__ import annotations

import logging
from typing import Any

from controller.dataplane.punt import PUNT_METER

LOG = logging.getLogger("dyncast")
OFPET_METER_MOD_FAILED = 12
OFPMMFC_METER_EXISTS = 1


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

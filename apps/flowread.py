"""Reading a switch's entries back: flow statistics as the core's `SwitchEntry` values.

Boundary: framework messages in, core values out; no decisions. The match is spelt as
`controller.intents.match` spells it (sorted (field, value) pairs; an IPv4 address unmasked as
dotted text, masked as integers; Nicira field names back to ours), and the apply-actions as
their set-fields and outputs, so the core can compare what a switch holds with what it sent.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from controller.intents import (
    COOKIE_APP,
    COOKIE_MASK_APP,
    TABLE_AFFINITY,
    MatchValue,
    SwitchEntry,
)

MAX_POLLS = 256  # affinity-table reads awaiting their answer that are remembered (oldest go)
IPV4_FIELDS = ("ipv4_src", "ipv4_dst", "arp_spa", "arp_tpa")
FROM_NX = {"tcp_flags_nxm": "tcp_flags"}  # apps/ofmsg.py sends these names for ours


def _ip_int(text: Any) -> int:
    """A dotted IPv4 address (or an integer) as an integer."""
    return int(ipaddress.IPv4Address(text))


def match_value(name: str, value: Any) -> MatchValue:
    """One match field's value in the core's spelling."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        if name in IPV4_FIELDS:
            return (_ip_int(value[0]), _ip_int(value[1]))
        return (int(value[0]), int(value[1]))
    if isinstance(value, str):
        return value.lower()
    return int(value)


def entry_of(stat: Any, ofp: Any) -> SwitchEntry:
    """A SwitchEntry from one OFPFlowStats (made already by apps/flowstats.py's fast path)."""
    made = getattr(stat, "switch_entry", None)
    if made is not None:
        return made  # type: ignore[no-any-return]
    fields = sorted((FROM_NX.get(k, k), match_value(FROM_NX.get(k, k), v))
                    for k, v in stat.match.items())
    sets: list[tuple[str, int | str]] = []
    for inst in stat.instructions:
        if getattr(inst, "type", None) != ofp.OFPIT_APPLY_ACTIONS:
            continue
        for act in inst.actions:
            if act.type == ofp.OFPAT_SET_FIELD:
                value = act.value
                sets.append((act.key, value.lower() if isinstance(value, str) else int(value)))
            elif act.type == ofp.OFPAT_OUTPUT:
                sets.append(("output", int(act.port)))
    return SwitchEntry(int(stat.cookie), int(stat.table_id), int(stat.priority), tuple(fields),
                       tuple(sets), stat.duration_sec + stat.duration_nsec / 1e9,
                       int(stat.packet_count))


def read_request(dp: Any) -> Any:
    """The flow-statistics request for every entry with our cookie, in every table."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    return parser.OFPFlowStatsRequest(dp, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                      COOKIE_APP << 56, COOKIE_MASK_APP, parser.OFPMatch())


class Polls:
    """The affinity-table reads under way, by transaction id, with when each was asked: a
    drain is over only when a read asked after it began shows no flow to the instance
    (controller/dataplane/drains.py)."""

    def __init__(self) -> None:
        self._asked: dict[int, float] = {}

    def ask(self, dp: Any, now: float) -> Any:
        """The flow-statistics request for the switch's affinity table, noted as asked now."""
        ofp = dp.ofproto
        req = dp.ofproto_parser.OFPFlowStatsRequest(dp, 0, TABLE_AFFINITY, ofp.OFPP_ANY,
                                                    ofp.OFPG_ANY)
        dp.set_xid(req)
        if len(self._asked) >= MAX_POLLS:  # answers that never came: forget the oldest half
            self._asked = dict(list(self._asked.items())[MAX_POLLS // 2:])
        self._asked[req.xid] = now
        return req

    def answered(self, xid: int) -> float | None:
        """When the read answered (its last part) by `xid` was asked; None if not known."""
        return self._asked.pop(xid, None)

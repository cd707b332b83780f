"""Reading a switch's entries back: flow statistics as the core's `SwitchEntry` values.

Boundary: framework messages in, core values out; no decisions. The match is spelt as
`controller.intents.match` spells it (sorted (field, value) pairs; an IPv4 address unmasked as
dotted text, masked as integers; Nicira field names back to ours), and the apply-actions as
their set-fields and outputs, so the core can compare what a switch holds with what it sent.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from controller.intents import COOKIE_APP, COOKIE_MASK_APP, MatchValue, SwitchEntry

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
    """A SwitchEntry from one OFPFlowStats."""
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

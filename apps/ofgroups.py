"""OpenFlow 1.3 group-mod messages for the core's `GroupMod` intents (fast-failover groups).

The command "add_or_mod" is Open vSwitch's OFPGC_ADD_OR_MOD (0x8000, accepted with OpenFlow
1.1 and later): it creates the group or replaces its buckets, so the controller need not know
whether a switch still holds a group (after a reconnect or a restart of either side).
"""

from __future__ import annotations

from typing import Any

from controller.intents import GroupMod, Output, SetField

OFPGC_ADD_OR_MOD = 0x8000  # Open vSwitch extension (ovs-ofctl mod-group --may-create)


def _bucket_actions(parser: Any, actions: tuple[Any, ...]) -> list[Any]:
    """A bucket's actions: set-fields and outputs (all a failover bucket holds)."""
    out = []
    for act in actions:
        if isinstance(act, SetField):
            out.append(parser.OFPActionSetField(**{act.field: act.value}))
        elif isinstance(act, Output):
            out.append(parser.OFPActionOutput(act.port, 0))
        else:
            raise TypeError(f"no group bucket action for {act!r}")
    return out


def group_mod(dp: Any, gm: GroupMod) -> Any:
    """An OFPGroupMod of type fast-failover for a GroupMod intent."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    if gm.command == "delete":
        return parser.OFPGroupMod(dp, ofp.OFPGC_DELETE, ofp.OFPGT_FF, gm.group_id, [])
    buckets = [parser.OFPBucket(weight=0, watch_port=b.watch_port, watch_group=ofp.OFPG_ANY,
                                actions=_bucket_actions(parser, b.actions))
               for b in gm.buckets]
    return parser.OFPGroupMod(dp, OFPGC_ADD_OR_MOD, ofp.OFPGT_FF, gm.group_id, buckets)

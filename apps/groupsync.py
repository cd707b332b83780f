"""Reading a switch's groups back (a mixin of `apps.dyncast_app.DyncastApp`): after every
reading of a switch's entries was repaired (at connect and every `reconcile_interval_s`), the
app asks for its group descriptions (OpenFlow 1.3 OFPMP_GROUP_DESC, every group) and hands
them to the core as `SwitchGroup` values; the core says which groups to send again and which
stale ones of ours to delete (controller/dataplane/groupaudit.py). Boundary: shell; framework
messages in, core values out, the core's group-mods sent.
"""

from __future__ import annotations

import logging
from typing import Any

from apps import logs
from apps.framework import MAIN_DISPATCHER, ofp_event, set_ev_cls
from controller.dataplane.groupaudit import Bucket, SwitchGroup, action_pair, groups_read

LOG = logging.getLogger("dyncast")


def bucket_read(bucket: Any, ofp: Any) -> Bucket:
    """One bucket of a group description in the core's spelling (`groupaudit.bucket_of`)."""
    pairs = []
    for act in bucket.actions:
        if act.type == ofp.OFPAT_SET_FIELD:
            pairs.append(action_pair(act.key, act.value))
        elif act.type == ofp.OFPAT_OUTPUT:
            pairs.append(action_pair("output", int(act.port)))
        else:  # no bucket of ours holds it: the group differs from any we want
            pairs.append(action_pair(f"action {act.type}", 0))
    return int(bucket.watch_port), tuple(pairs)


def group_of(stat: Any, ofp: Any) -> SwitchGroup:
    """A SwitchGroup from one OFPGroupDescStats."""
    return SwitchGroup(int(stat.group_id), stat.type == ofp.OFPGT_FF,
                       tuple(bucket_read(b, ofp) for b in stat.buckets))


class GroupSync:
    """Group reads under way, by switch: (transaction id, the groups of the parts so far)."""

    core: Any
    datapaths: dict[int, Any]
    send: Any  # the app's

    def _group_reads(self) -> dict[int, tuple[int, list[SwitchGroup]]]:
        """The reads under way (made on first use: the app's __init__ stays as it is)."""
        reads: dict[int, tuple[int, list[SwitchGroup]]] | None = getattr(
            self, "_groups_reading", None)
        if reads is None:
            reads = self._groups_reading = {}
        return reads

    def _read_groups(self, dpid: int) -> None:
        """Ask a connected switch for its groups (`_group_desc_handler` repairs them)."""
        dp = self.datapaths.get(dpid)
        if dp is None:
            return
        req = dp.ofproto_parser.OFPGroupDescStatsRequest(dp, 0)
        dp.set_xid(req)
        self._group_reads()[dpid] = (req.xid, [])
        dp.send_msg(req)

    @set_ev_cls(ofp_event.EventOFPGroupDescStatsReply, MAIN_DISPATCHER)
    def _group_desc_handler(self, ev: Any) -> None:
        try:
            msg = ev.msg
            dp = msg.datapath
            reads = self._group_reads()
            read = reads.get(dp.id)
            if read is None or read[0] != msg.xid or self.datapaths.get(dp.id) is not dp:
                return  # asked again since, or the switch is gone or was replaced
            read[1].extend(group_of(s, dp.ofproto) for s in msg.body)
            if msg.flags & dp.ofproto.OFPMPF_REPLY_MORE:
                return
            del reads[dp.id]
            intents = groups_read(self.core.programmer, self.core.counters, dp.id, read[1])
            if intents:
                deleted = [i.group_id for i in intents if i.command == "delete"]
                logs.event("reconcile", "groups_repaired", dpid=f"{dp.id:016x}",
                           groups_read=len(read[1]), deleted=deleted,
                           sent=[i.group_id for i in intents if i.command != "delete"],
                           reason="the switch's groups differed from what the controller holds")
            self.send(intents)
        except Exception:
            self.core.counters["errors"] += 1
            LOG.exception("dyncast: exception in _group_desc_handler")

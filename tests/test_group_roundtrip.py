"""A group the controller sent reads back as the same group (apps/groupsync.py against
controller/dataplane/groupaudit.py), through each installed framework's own serialiser and
parser: otherwise every periodic group read would find each wanted group "changed" and send it
again (a group-mod per group per read, forever), and `reconcile_groups_added` would grow in a
quiet network.
"""

from __future__ import annotations

import struct

import pytest

from apps.groupsync import group_of
from controller.dataplane.groupaudit import groups_read, repair
from controller.intents import GroupMod
from tests.fakes import FakeDatapath, framework_bytes
from tests.test_failover import MODES, _figure2
from tests.test_pipelines import FLOWS, connect

GROUP_MOD_HEADER = 16  # ofp_header, command, type, pad, group_id: the buckets follow


def _read_back(dp: FakeDatapath, gm: GroupMod) -> object:
    """The group description a switch holding `gm` as sent gives, parsed by the framework."""
    sent = framework_bytes(dp, gm)
    buckets = sent[GROUP_MOD_HEADER:]
    group_type = sent[10]
    desc = struct.pack("!HBxI", 8 + len(buckets), group_type, gm.group_id) + buckets
    stat = dp.ofproto_parser.OFPGroupDescStats.parser(desc, 0)
    assert stat.group_id == gm.group_id and stat.type == dp.ofproto.OFPGT_FF
    return stat


@pytest.mark.parametrize("mode", MODES)
def test_every_group_sent_reads_back_unchanged(dp: FakeDatapath, mode: str) -> None:
    """Figure 2 with failover on: each switch's groups, as sent and read back, need no repair
    (none sent again, none deleted), and the counters stay at zero."""
    fig = _figure2(mode)
    connect(fig, FLOWS)
    checked = 0
    for dpid in sorted(fig.net.switches):
        wanted = fig.core.programmer.groups.held(dpid)
        found = [group_of(_read_back(dp, gm), dp.ofproto) for gm in wanted]
        assert repair(dpid, found, wanted, set(), lambda g: True) == ([], []), dpid
        assert groups_read(fig.core.programmer, fig.core.counters, dpid, found) == []
        checked += len(wanted)
    assert checked >= 4, "no failover group to read back"
    assert fig.core.counters["reconcile_groups_added"] == 0
    assert fig.core.counters["reconcile_groups_removed"] == 0

"""The shell's group read (apps/groupsync.py) on each installed framework, driven as the
framework drives it (tests/test_app_smoke.py's fake datapath): after a switch's table was read
and repaired the app asks for its group descriptions; the answer's stale group of ours is
deleted and another application's group is not touched.
"""

from __future__ import annotations

import struct

from bench import ofgen
from tests.test_app_smoke import Shell, shell  # noqa: F401 - the fixture

OFPMP_GROUP_DESC = 7
OFPGT_FF = 3
OFPT_GROUP_MOD = 15
STALE = 0xD5 << 24 | 34  # label 17's first group at the default prefix


def group_desc(group_id: int, port: int) -> bytes:
    """One fast-failover group description with one bucket (watch `port`, output `port`)."""
    action = struct.pack("!HHIH6x", 0, 16, port, 0)  # OFPAT_OUTPUT
    bucket = struct.pack("!HHII4x", 16 + len(action), 0, port, 0xFFFFFFFF) + action
    return struct.pack("!HBxI", 8 + len(bucket), OFPGT_FF, group_id) + bucket


def group_read_xid(sh: Shell) -> int:
    """The transaction id of the app's latest request for the switch's groups."""
    reads = [s for s in sh.dp.messages() if s.msg_type == sh.dp.ofproto.OFPT_MULTIPART_REQUEST
             and ofgen.multipart_type(s.raw) == OFPMP_GROUP_DESC]
    assert reads, "the app did not ask for the switch's groups"
    return int(struct.unpack_from("!I", reads[-1].raw, 4)[0])


def test_after_the_table_read_the_groups_are_read_and_a_stale_one_deleted(
        shell: Shell) -> None:  # noqa: F811 - the fixture
    """A connected switch's groups are asked for once its table is repaired; of group
    0xD5000022 (Dyncast's label 17 at the default prefix, named by nothing: svc1 has no
    failover) and groups 7 and 34 (another application's: 34 was one of our unprefixed ids
    before 2026-12, but it has not their shape), only 0xD5000022 is deleted; an answer to an
    older request changes nothing."""
    shell.connect()
    xid = group_read_xid(shell)
    shell.sent()
    shell.switch_says(ofgen.multipart_reply(xid + 1000, OFPMP_GROUP_DESC,
                                            group_desc(STALE, 2)))
    assert [s for s in shell.sent() if s.msg_type == OFPT_GROUP_MOD] == []
    shell.switch_says(ofgen.multipart_reply(xid, OFPMP_GROUP_DESC, group_desc(STALE, 2)
                                            + group_desc(7, 1) + group_desc(34, 2)))
    mods = [struct.unpack_from("!HBxI", s.raw, 8) for s in shell.sent()
            if s.msg_type == OFPT_GROUP_MOD]
    assert mods == [(shell.dp.ofproto.OFPGC_DELETE, OFPGT_FF, STALE)]
    counters = shell.app.core.counters
    assert (counters["reconcile_groups_removed"], counters["errors"]) == (1, 0)

"""The emulated switches' flow table (bench/emutable.py): OpenFlow 1.3 FLOW_MOD semantics, and
read back by the app as a real switch's table (so bench/control_plane.py measures the audit a
real switch costs, not a full repair at every read)."""

from __future__ import annotations

import importlib
import struct
from typing import Any

from bench import ofgen
from bench.emutable import (
    MAX_MESSAGE,
    OFPFC_DELETE,
    OFPFC_DELETE_STRICT,
    OFPFC_MODIFY,
    OFPFC_MODIFY_STRICT,
    OFPMP_FLOW,
    OFPMPF_REPLY_MORE,
    OFPRR_DELETE,
    OFPRR_IDLE_TIMEOUT,
    OFPT_FLOW_REMOVED,
    OFPTT_ALL,
    FlowTable,
)
from tests.fakes import FRAMEWORKS, FakeDatapath, framework_parse
from tests.test_app_smoke import Shell, shell  # noqa: F401 - the fixture, used by name

IP = 0x0800
_REQ = struct.Struct("!B3xII4xQQ")


def fm(match: list[tuple[str, ofgen.OxmValue]], port: int = 1, prio: int = 10, table: int = 0,
       cookie: int = 0, cookie_mask: int = 0, command: int = ofgen.OFPFC_ADD, flags: int = 0,
       idle: int = 0, ordered: bool = True, out_port: int = ofgen.OFPP_ANY) -> bytes:
    """A FLOW_MOD (cookie_mask patched in: ofgen.flow_mod leaves it 0)."""
    raw = ofgen.flow_mod(0, match, [("output", port)], cookie=cookie, table_id=table,
                         priority=prio, command=command, flags=flags, idle_timeout=idle,
                         ordered_match=ordered, out_port=out_port)
    return raw[:16] + cookie_mask.to_bytes(8, "big") + raw[24:]


def read(table: FlowTable, tbl: int = OFPTT_ALL, cookie: int = 0, cookie_mask: int = 0,
         match: list[tuple[str, ofgen.OxmValue]] | None = None, now: float = 0.0
         ) -> list[bytes]:
    """The multipart replies to an OFPMP_FLOW request."""
    body = (struct.pack("!HH4x", OFPMP_FLOW, 0)
            + _REQ.pack(tbl, ofgen.OFPP_ANY, ofgen.OFPG_ANY, cookie, cookie_mask)
            + ofgen.encode_match(match or []))
    return table.flow_stats(ofgen.message(ofgen.OFPT_MULTIPART_REQUEST, 77, body), now)


def stats(table: FlowTable, **kw: object) -> list[Any]:
    """Every entry read, parsed by the framework's own parser (not the app's fast path)."""
    dp = FakeDatapath(FRAMEWORKS[0])
    module = importlib.import_module(f"{dp.framework}.ofproto.ofproto_v1_3_parser")
    current = module._MSG_PARSERS[ofgen.OFPT_MULTIPART_REPLY]
    own = getattr(current, "framework", current)  # apps/flowstats.py wraps it
    out = []
    for raw in read(table, **kw):  # type: ignore[arg-type]
        length, xid = struct.unpack_from("!HI", raw, 2)
        out += own(dp, 4, raw[1], length, xid, bytearray(raw)).body
    return out


def route(k: int) -> list[tuple[str, ofgen.OxmValue]]:
    return [("eth_type", IP), ("ipv4_dst", bytes([10, 0, k >> 8, k & 255]))]


def test_add_replaces_the_entry_with_the_same_table_priority_and_match() -> None:
    t = FlowTable()
    t.flow_mod(fm(route(1), port=1, cookie=5), 0.0)
    t.flow_mod(fm(list(reversed(route(1))), port=2, cookie=6, ordered=False), 0.0)  # same match
    t.flow_mod(fm(route(1), port=3, prio=11), 0.0)  # another priority: another entry
    t.flow_mod(fm(route(1), port=4, table=1), 0.0)  # another table: another entry
    got = sorted((s.table_id, s.priority, s.cookie, s.instructions[0].actions[0].port)
                 for s in stats(t))
    assert got == [(0, 10, 6, 2), (0, 11, 0, 3), (1, 10, 0, 4)]


def test_modify_changes_instructions_of_what_it_selects_and_never_adds() -> None:
    t = FlowTable()
    t.flow_mod(fm(route(1), cookie=1), 0.0)
    t.flow_mod(fm(route(2), cookie=2), 0.0)
    t.flow_mod(fm([("eth_type", IP)], port=9, command=OFPFC_MODIFY, cookie=2,
                  cookie_mask=0xFF), 0.0)
    t.flow_mod(fm(route(3), port=9, command=OFPFC_MODIFY_STRICT), 0.0)  # none: not added
    ports = {s.cookie: s.instructions[0].actions[0].port for s in stats(t)}
    assert ports == {1: 1, 2: 9}
    t.flow_mod(fm(route(1), port=7, prio=10, command=OFPFC_MODIFY_STRICT), 0.0)
    assert {s.cookie: s.instructions[0].actions[0].port for s in stats(t)} == {1: 7, 2: 9}


def test_deletes_strict_and_not_by_cookie_table_and_out_port() -> None:
    t = FlowTable()
    for k in range(6):
        t.flow_mod(fm(route(k), port=k % 2 + 1, cookie=0xDC00 | k, table=k % 3,
                      flags=ofgen.OFPFF_SEND_FLOW_REM if k == 0 else 0), 0.0)
    gone = t.flow_mod(fm(route(0), prio=10, command=OFPFC_DELETE_STRICT), 2.5)
    assert len(gone) == 1 and gone[0][1] == OFPT_FLOW_REMOVED and gone[0][18] == OFPRR_DELETE
    assert t.flow_mod(fm(route(1), prio=99, command=OFPFC_DELETE_STRICT), 0.0) == []
    assert len(t) == 5  # a strict delete needs the priority too
    t.flow_mod(fm([], table=OFPTT_ALL, command=OFPFC_DELETE, cookie=0xDC05,
                  cookie_mask=0xFFFF), 0.0)
    assert sorted(s.cookie & 0xFF for s in stats(t)) == [1, 2, 3, 4]
    t.flow_mod(fm([], table=OFPTT_ALL, command=OFPFC_DELETE, out_port=2), 0.0)  # k odd
    assert sorted(s.cookie & 0xFF for s in stats(t)) == [2, 4]
    t.flow_mod(fm([("eth_type", IP)], table=1, command=OFPFC_DELETE), 0.0)  # k=4 in table 1
    assert [s.cookie & 0xFF for s in stats(t)] == [2]


def test_a_read_selects_by_table_cookie_and_match() -> None:
    t = FlowTable()
    for k in range(4):
        t.flow_mod(fm(route(k), table=k % 2, cookie=(0xDC << 56) | k if k < 3 else 7), 0.0)
    assert len(stats(t)) == 4
    assert sorted(s.cookie & 0xFF for s in stats(t, tbl=1)) == [1, 7]
    assert sorted(s.cookie & 0xFF for s in stats(t, cookie=0xDC << 56,
                                                 cookie_mask=0xFF << 56)) == [0, 1, 2]
    assert [s.cookie & 0xFF for s in stats(t, match=route(2))] == [2]


def test_idle_entries_end_with_a_flow_removed_when_flagged() -> None:
    t = FlowTable()
    t.flow_mod(fm(route(1), idle=30, flags=ofgen.OFPFF_SEND_FLOW_REM), 0.0)
    t.flow_mod(fm(route(2), idle=30), 0.0)
    t.flow_mod(fm(route(3)), 0.0)
    assert t.expire(29.0) == []
    gone = t.expire(30.0)
    assert len(gone) == 1 and gone[0][18] == OFPRR_IDLE_TIMEOUT and len(t) == 1
    dp = FakeDatapath(FRAMEWORKS[0])
    assert framework_parse(dp, gone[0]).match["ipv4_dst"] == "10.0.0.1"


def test_a_large_table_is_read_in_replies_under_64_kb() -> None:
    t = FlowTable()
    for k in range(3000):
        t.flow_mod(fm(route(k)), 0.0)
    replies = read(t)
    assert len(replies) > 3
    flags = [struct.unpack_from("!H", r, 10)[0] for r in replies]
    assert flags == [OFPMPF_REPLY_MORE] * (len(replies) - 1) + [0]
    assert all(len(r) <= MAX_MESSAGE and struct.unpack_from("!H", r, 2)[0] == len(r)
               for r in replies)
    dp = FakeDatapath(FRAMEWORKS[0])
    seen = [s.match["ipv4_dst"] for r in replies for s in framework_parse(dp, r).body]
    assert len(seen) == 3000 and len(set(seen)) == 3000


# --- the app's own intents --------------------------------------------------------------
def _feed(sh: Shell, table: FlowTable, now: float) -> int:
    """Apply every FLOW_MOD the app sent since the last call; how many there were."""
    n = 0
    for s in sh.sent():
        if s.msg_type == ofgen.OFPT_FLOW_MOD:
            table.flow_mod(s.raw, now)
            n += 1
    return n


def _read_back(sh: Shell, table: FlowTable, now: float) -> None:
    """The app reads the switch's table (its periodic audit) and gets what `table` holds."""
    sh.app._read_table(sh.dp)
    req = [s for s in sh.sent() if s.msg_type == ofgen.OFPT_MULTIPART_REQUEST]
    assert len(req) == 1
    for raw in table.flow_stats(req[0].raw, now):
        sh.switch_says(raw)


def test_the_app_finds_what_it_installed_and_repairs_only_what_went(
        shell: Shell) -> None:  # noqa: F811 - the fixture
    """The table holds exactly what the app's intents say: its audit of the read finds
    nothing to repair; an entry deleted behind its back is the only one sent again."""
    sh = shell
    table = FlowTable()
    sh.connect()
    for k in range(700):  # enough host routes that the read takes several replies
        ip, mac = f"10.0.{1 + k // 250}.{k % 250 + 1}", f"00:00:00:00:{k >> 8:02x}:{k & 255:02x}"
        sh.arp_from((ip, mac, 1 + k % 3))
    sh.arp_from(("10.0.0.21", "00:00:00:00:00:21", 2))
    sh.register()
    sh.syn(40000)  # a binding: forward and reverse entries, with an idle timeout
    assert _feed(sh, table, 0.0) > 700
    assert len(table) > 700
    c = sh.app.core.counters
    before = (c["reconcile_added"], c["reconcile_removed"], c["bindings_retired"])
    _read_back(sh, table, 1.0)
    assert (c["reconcile_added"], c["reconcile_removed"], c["bindings_retired"]) == before
    assert _feed(sh, table, 1.0) == 0  # nothing to repair
    lost = next(k for k, e in table.entries.items() if e.match.find(bytes([10, 0, 2, 7])) > 0)
    del table.entries[lost]
    _read_back(sh, table, 2.0)
    again = [s for s in sh.sent() if s.msg_type == ofgen.OFPT_FLOW_MOD]
    assert len(again) == 1 and again[0].msg.match["ipv4_dst"] == "10.0.2.7"
    assert c["reconcile_added"] == before[0] + 1 and c["errors"] == 0

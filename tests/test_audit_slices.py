"""The audit of a switch's table runs in bounded steps (`Audit.table_steps`), the event loop
running between two (apps/apploops.py `_send_steps`): no step loses or repeats work (any slice
size gives the one-slice repair), a read answered in several replies is repaired of exactly
what went, a flow-mod sent between two replies is not undone, and one sent between two audit
steps wins over the audit's view of the same entry."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from bench import ofgen
from bench.emutable import FlowTable
from controller.dataplane import audit as audit_module
from controller.dataplane.audit import joined
from controller.intents import TABLE_FORWARD, CookieKind, FlowMod, Intent, Output, cookie_kind
from tests.helpers import ports_settled
from tests.test_app_smoke import Shell, flow_mods
from tests.test_app_smoke import shell as shell  # the fixture, used by name
from tests.test_audit_routes import Table, apply, entries, setup

HOSTS = 1200  # host routes at switch 1: the read takes three replies


# --- the core's steps -------------------------------------------------------------------
def _damaged() -> tuple[Any, Table]:
    """A core and switch 1's table with three routes lost, one on the wrong port, a
    service's punt moved to another priority (extra, and its own missing) and a pipeline
    entry lost."""
    core, table = setup()
    routes = sorted((k for k, fm in table.items() if fm.table == TABLE_FORWARD
                     and (cookie_kind(fm.cookie) or (None,))[0] == CookieKind.HOST),
                    key=repr)
    for key in routes[:3]:
        del table[key]
    wrong = table[routes[5]]
    table[routes[5]] = FlowMod(1, wrong.table, wrong.priority, wrong.match,
                               (*wrong.actions[:-1], Output(9)), cookie=wrong.cookie)
    punt = next(k for k, fm in table.items()
                if (cookie_kind(fm.cookie) or (None,))[0] == CookieKind.SERVICE)
    moved = table.pop(punt)
    table[(moved.table, moved.priority + 1, moved.match)] = FlowMod(
        1, moved.table, moved.priority + 1, moved.match, moved.actions, cookie=moved.cookie)
    infra = next(k for k, fm in table.items()
                 if (cookie_kind(fm.cookie) or (None,))[0] == CookieKind.INFRA)
    del table[infra]
    return core, table


@pytest.mark.parametrize("size", [1, 2, 7, 64])
def test_any_slice_size_gives_the_one_slice_repair(size: int) -> None:
    whole_core, whole_table = _damaged()
    whole = list(whole_core.audit.table_steps(1, entries(whole_table), [], 1.0, 1.0,
                                              whole_core._recompute, 10**9))
    core, table = _damaged()
    read = entries(table)
    steps = list(core.audit.table_steps(1, read, [], 1.0, 1.0, core._recompute, size))
    assert joined(steps) == joined(whole)
    assert len(steps) > len(read) // size  # bounded: one slice of entries a step
    assert all(step == [] for step in steps[:-1])
    repair = joined(steps)
    adds = [fm for fm in repair if isinstance(fm, FlowMod) and fm.command == "add"]
    deletes = [fm for fm in repair if isinstance(fm, FlowMod) and fm.command != "add"]
    assert len(adds) == 6 and len(deletes) == 1  # 3 lost + 1 wrong + the punt + pipeline
    assert len({(fm.table, fm.priority, fm.match) for fm in adds}) == 6  # none twice
    assert core.counters["reconcile_added"] == 6 and core.counters["reconcile_removed"] == 1
    apply(table, repair)
    assert joined(core.switch_table_steps(1, entries(table), [], 2.0, 2.0)) == []


# --- the shell --------------------------------------------------------------------------
def _host(k: int) -> tuple[str, str, int]:
    return f"10.1.{k // 250}.{k % 250 + 1}", f"00:00:00:01:{k >> 8:02x}:{k & 255:02x}", 1 + k % 2


def _feed(sh: Shell, table: FlowTable) -> None:
    """Switch 1's table takes every FLOW_MOD the app sent since the last call."""
    for s in sh.sent():
        if s.msg_type == ofgen.OFPT_FLOW_MOD:
            table.flow_mod(s.raw, 0.0)


def _routes_to(sent: list[Intent] | list[Any], ip: str) -> list[int]:
    """The output port of each route to `ip` among the flow-mods sent, in order."""
    return [fm.instructions[0].actions[-1].port for fm in flow_mods(sent)
            if dict(fm.match.items()).get("ipv4_dst") == ip and fm.table_id == TABLE_FORWARD
            and fm.command == 0]  # OFPFC_ADD


@pytest.fixture
def loaded(shell: Shell, monkeypatch: pytest.MonkeyPatch) -> tuple[Shell, FlowTable]:
    """Switch 1 connected with HOSTS hosts located, its table holding what the app sent;
    audits in steps of 100 entries."""
    shell.connect()
    ports_settled(shell.app.core)  # (a host's move below is an ARP flooded before: held else)
    for k in range(HOSTS):
        shell.arp_from(_host(k))
    table = FlowTable()
    _feed(shell, table)
    assert len(table) > HOSTS
    monkeypatch.setattr(audit_module, "AUDIT_SLICE", 100)
    return shell, table


def _lose(table: FlowTable, ip: str) -> None:
    """The switch loses its route to `ip` behind the controller's back."""
    raw = bytes(int(x) for x in ip.split("."))
    key = next(k for k, e in table.entries.items() if e.match.find(raw) > 0)
    del table.entries[key]


def _replies(sh: Shell, table: FlowTable) -> list[bytes]:
    """The app asks for switch 1's table; the replies the switch gives (several)."""
    sh.app._read_table(sh.dp)
    req = [s for s in sh.sent() if s.msg_type == ofgen.OFPT_MULTIPART_REQUEST]
    replies = table.flow_stats(req[0].raw, 1.0)
    assert len(replies) >= 3
    return replies


def test_a_read_in_several_replies_is_audited_in_steps_and_repaired_of_what_went(
        loaded: tuple[Shell, FlowTable], monkeypatch: pytest.MonkeyPatch) -> None:
    sh, table = loaded
    lost = [_host(7)[0], _host(900)[0]]
    for ip in lost:
        _lose(table, ip)
    c = sh.app.core.counters
    before = (c["reconcile_added"], c["reconcile_removed"])
    pauses: list[float] = []
    monkeypatch.setattr(sys.modules["apps.apploops"].hub, "sleep", pauses.append)
    for raw in _replies(sh, table):
        sh.switch_says(raw)
    sent = sh.sent()
    assert len(pauses) >= 2 * HOSTS // 100  # the entries read, then the wanted ones
    assert [fm.match["ipv4_dst"] for fm in flow_mods(sent)] == lost  # each once
    assert (c["reconcile_added"], c["reconcile_removed"]) == (before[0] + 2, before[1])
    assert c["errors"] == 0
    assert sh.app._repairs == {} and sh.app._reads == {}


def test_a_route_sent_between_two_replies_is_not_undone(
        loaded: tuple[Shell, FlowTable]) -> None:
    """A host moves while its table is being read: the route to it the read found (old port)
    is older than the one sent since, which the audit leaves as it is."""
    sh, table = loaded
    ip, mac, port = _host(5)
    added = sh.app.core.counters["reconcile_added"]
    replies = _replies(sh, table)
    sh.switch_says(replies[0])
    sh.arp_from((ip, mac, 3))  # moved: a new route, out of port 3
    for raw in replies[1:]:
        sh.switch_says(raw)
    assert port != 3 and _routes_to(sh.sent(), ip) == [3]
    assert sh.app.core.counters["reconcile_added"] == added


@pytest.mark.parametrize("when", ["sorting the read", "comparing"])
def test_a_route_sent_between_two_audit_steps_wins_over_the_audits(
        loaded: tuple[Shell, FlowTable], monkeypatch: pytest.MonkeyPatch, when: str) -> None:
    """The switch lost its route to a host; the audit's repair would add it out of the old
    port, but the host moves (a route out of port 3 sent) while the audit pauses, before or
    after the audit took what the controller holds: the route out of port 3 is the last
    word, sent once."""
    sh, table = loaded
    app = sh.app
    ip, mac, port = _host(5)
    _lose(table, ip)
    held = {"taken": False, "moved": False}
    wanted = app.core.audit._wanted

    def taking(*args: Any) -> Any:
        held["taken"] = True
        return wanted(*args)

    def pause(_: float) -> None:
        if not held["moved"] and held["taken"] == (when == "comparing"):
            held["moved"] = True
            sh.arp_from((ip, mac, 3))

    monkeypatch.setattr(app.core.audit, "_wanted", taking)
    monkeypatch.setattr(sys.modules["apps.apploops"].hub, "sleep", pause)
    for raw in _replies(sh, table):
        sh.switch_says(raw)
    assert held["moved"]
    assert port != 3 and _routes_to(sh.sent(), ip) == [3]
    assert app.core.counters["errors"] == 0 and app._repairs == {}


def test_a_read_asked_again_while_a_reply_is_being_read_drops_the_old_one(
        loaded: tuple[Shell, FlowTable], monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply's body is read after a pause (apps/flowstats.py), in which the table may be
    asked for again (a read unanswered for a whole interval, or a reconnection): the old
    read's last reply is then dropped, not audited (its read is no longer the one under way),
    and the new read is audited whole when its own replies come."""
    sh, table = loaded
    app = sh.app
    _lose(table, _host(11)[0])
    c = app.core.counters
    added = c["reconcile_added"]
    old = _replies(sh, table)
    for raw in old[:-1]:
        sh.switch_says(raw)
    armed = [True]

    def pause(_: float) -> None:
        if armed.pop() if armed else False:
            app._read_table(sh.dp)  # the auditor asks again, in the first pause

    monkeypatch.setattr(sys.modules["apps.apploops"].hub, "sleep", pause)
    sh.switch_says(old[-1])
    new = [s for s in sh.sent() if s.msg_type == ofgen.OFPT_MULTIPART_REQUEST]
    assert len(new) == 1 and app._reads[1].xid == int.from_bytes(new[0].raw[4:8], "big")
    assert c["reconcile_added"] == added and flow_mods(sh.sent()) == []
    for raw in table.flow_stats(new[0].raw, 2.0):
        sh.switch_says(raw)
    assert [fm.match["ipv4_dst"] for fm in flow_mods(sh.sent())] == [_host(11)[0]]
    assert c["reconcile_added"] == added + 1 and c["errors"] == 0 and app._reads == {}

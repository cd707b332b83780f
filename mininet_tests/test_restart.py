"""Never break a flow that did not have to break (issue 16): controller restarts, switch
reconnects, tables emptied behind the controller's back, bindings that expire while it is away.

Each test holds 200 TCP connections from c1 (ingress r1) to svc1, served by e2 and e3, and
asserts what those clients observed (none broken, none moved, new connections served again)
and what the switches hold (our entries as before, no duplicates, no orphans). The fixtures
fail the test on any controller exception or OpenFlow error.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.intents import CookieKind, cookie
from mininet_tests.conftest import FIG2_DEFAULTS, _finish, _options, _running
from mininet_tests.harness import Lab
from mininet_tests.processes import wait_until
from mininet_tests.restarts import (
    HeldConnections,
    all_alive_since,
    binding_mismatches,
    damage,
    duplicates,
    ours,
    probe,
    repaired,
    snapshot,
    stat,
    table_differences,
    wait_away,
)
from mininet_tests.test_fig2 import (
    R1,
    SVC1,
    client,
    held_lines,
    start_hold,
    stored_bindings,
    wait_shares,
)

HERE = Path(__file__).parent
RECONCILE_S = 2.0  # reconcile_interval_s in the fig2_restart*.toml files
AWAY_S = 30.0  # how long the controller stays away
SERVED_WITHIN_S = 10.0  # a new connection after the restarted controller answers REST (a
# bound for "served again", not a target: the time is recorded in timings.json; issue 16's
# runs saw about 1-2 s, runs with authentication on up to 4.2 s, cause not yet found)
STALL_S = 5.0  # a held connection without a line this long (25 lines missed) counts as broken
HELD = 200
CAPACITY = 2 * HELD  # each instance can hold every connection at once (GET /hold takes a worker)
C2 = "10.0.0.2"  # the probing client's address, behind r2 (c1's connections are the held ones)
BOTH = {"10.0.0.21", "10.0.0.31"}
PG_ENV = "DYNCAST_TEST_PG_URL"


def serve(lab: Lab, held: int = HELD) -> HeldConnections:
    """Start both sites' instances (room for every held connection) and D-MAs, make the
    bridges reconnect fast, and open `held` connections from c1 to svc1 on both instances."""
    lab.fast_reconnect()
    for host in ("e2", "e3"):
        lab.start_edge(host, capacity=CAPACITY)
    wait_shares(lab, "svc1", R1, BOTH)
    wait_until(lambda: len(client(lab, "c1", SVC1, requests=8)["served"]) == 2, 20,
               "new connections from c1 do not reach both instances")  # bucket: moves done
    conns = HeldConnections(lab, "c1", SVC1, held)
    first = conns.report()
    assert first["states"] == {"open": held} and len(first["served"]) == 2, damage(first)
    return conns


def assert_unharmed(conns: HeldConnections, since: float, timeout: float = 15.0,
                    stall_s: float | None = None) -> dict[str, Any]:
    """Every held connection is open, on its first instance, and streamed a line after
    `since` (waiting up to `timeout` s for stalled ones to resume); given `stall_s`, none ever
    went longer without a line. Returns the damage summary."""
    def settled() -> dict[str, Any] | None:
        report = conns.report()
        done = all(c["state"] != "open" or (c["last_line_at"] or 0) > since
                   for c in report["connections"])
        return report if done else None
    def stalled() -> str:
        report = conns.report()
        late = [c for c in report["connections"]
                if c["state"] == "open" and (c["last_line_at"] or 0) <= since]
        return f"{len(late)} held connections stalled, e.g. {late[:2]}; {damage(report)}"
    report = wait_until(settled, timeout, stalled)
    seen = damage(report, stall_s)
    assert seen["broken"] == 0 and seen["moved"] == 0, seen
    assert all_alive_since(report, since)
    return seen


def restart_and_check(lab: Lab, conns: HeldConnections, sig: int) -> dict[str, float]:
    """Stop the controller with `sig`, keep it away AWAY_S, restart it; check clients and
    tables; return the timings."""
    assert probe(lab, "c2", SVC1, 5.0) is not None, "no new connection before the stop"
    before = snapshot(lab)
    name = signal.Signals(sig).name
    (lab.artifacts / f"flows-before-{name}.txt").write_text("".join(
        f"{bridge}:\n" + "".join(f"  {f['text']}\n" for f in flows)
        for bridge, flows in before.items()))
    code = lab.stop_controller(sig)
    assert sig != signal.SIGTERM or code == 0, f"controller exit {code} on SIGTERM"
    wait_away(AWAY_S)
    (lab.artifacts / f"neigh-{name}.txt").write_text("".join(
        f"{h}:\n{lab.host_cmd(h, 'ip neigh show')}" for h in ("c1", "e2", "e3")))
    answered = lab.restart_controller()
    served = probe(lab, "c2", SVC1, SERVED_WITHIN_S)
    assert served is not None and served - answered <= SERVED_WITHIN_S, \
        f"first new connection served {None if served is None else served - answered} s " \
        "after the restarted controller answered"
    lab.wait_connected()
    (lab.artifacts / f"flows-after-{name}.txt").write_text("".join(
        f"{bridge}:\n" + "".join(f"  {f['text']}\n" for f in flows)
        for bridge, flows in snapshot(lab).items()))
    seen = assert_unharmed(conns, time.time(), timeout=5.0, stall_s=STALL_S)

    def differences() -> list[str]:
        after = snapshot(lab)
        return (table_differences(before, after, newcomer=C2) + duplicates(after)
                + binding_mismatches(lab, after))
    wait_until(lambda: not differences(), RECONCILE_S + 2.0,
               lambda: "switch tables differ from before the stop:\n" + "\n".join(differences()))
    reconciled = time.time()
    assert_unharmed(conns, reconciled, timeout=5.0, stall_s=STALL_S)
    return {"served_after_s": round(served - answered, 2),
            "reconciled_after_s": round(reconciled - answered, 2),
            "max_gap_s": seen["max_gap_s"]}


MODES = [pytest.param({"config": HERE / "fig2_restart.toml"}, id="reactive"),
         pytest.param({"config": HERE / "fig2_restart_learn.toml"}, id="learn",
                      marks=pytest.mark.heavy),
         pytest.param({"config": HERE / "fig2_restart_bucket.toml"}, id="bucket",
                      marks=pytest.mark.heavy)]


@pytest.mark.parametrize("fig2", MODES, indirect=True)
def test_controller_kill_and_term_break_no_held_connection(fig2: Lab) -> None:
    """SIGKILL, then SIGTERM, 30 s away each: none of 200 held connections breaks or moves,
    a new one is served within 3 s of the restart, and every switch holds what it held."""
    conns = serve(fig2)
    timings = {name: restart_and_check(fig2, conns, sig)
               for name, sig in (("kill", signal.SIGKILL), ("term", signal.SIGTERM))}
    (fig2.artifacts / "timings.json").write_text(json.dumps(timings) + "\n")


@pytest.fixture
def pg_fig2(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    """Figure 2 under a controller whose store is the PostgreSQL database at $DYNCAST_TEST_PG_URL
    (emptied first); skipped when that is unset, failed when it is unreachable."""
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} is not set: no PostgreSQL server to test against")
    empty_database(url)
    config = tmp_path / "fig2_restart_pg.toml"
    text = (HERE / "fig2_restart.toml").read_text()
    config.write_text(text.replace('store_url = "sqlite:///dyncast.db"', f'store_url = "{url}"'))
    from topologies.figure2 import Figure2Topo, configure, figure2_graph

    opts = _options(request, {**FIG2_DEFAULTS, "config": config}, "pg_fig2")
    graph = figure2_graph()
    the_lab = _running(request, graph, Figure2Topo(), opts, lambda net: configure(net, graph))
    yield the_lab
    _finish(the_lab)


def empty_database(url: str) -> None:
    """Drop every table and sequence of the test database, so the controller starts from an
    empty store; fail the test if it cannot be reached."""
    from sqlalchemy import MetaData, create_engine, inspect

    try:
        engine = create_engine(url)
        with engine.begin() as conn:
            tables = MetaData()
            tables.reflect(conn)
            tables.drop_all(conn)
            for name in inspect(conn).get_sequence_names():  # the cluster's ticket sequence
                conn.exec_driver_sql(f'DROP SEQUENCE IF EXISTS "{name}"')
        engine.dispose()
    except Exception as exc:  # any driver or connection error: the test cannot run as asked
        pytest.fail(f"{PG_ENV} is set but the database cannot be used: {exc!r}", pytrace=False)


@pytest.mark.heavy  # the store's part is framework-independent; the second framework's
# restart is the SQLite cases' (CI's time budget)
def test_controller_kill_on_postgresql_breaks_no_held_connection(pg_fig2: Lab) -> None:
    """The same as the reactive SIGKILL case, with the store in PostgreSQL."""
    conns = serve(pg_fig2)
    timings = restart_and_check(pg_fig2, conns, signal.SIGKILL)
    (pg_fig2.artifacts / "timings.json").write_text(json.dumps(timings) + "\n")


RESTART = {"config": HERE / "fig2_restart.toml"}


@pytest.mark.parametrize("fig2", [RESTART], indirect=True)
def test_ingress_emptied_and_reconnected_breaks_no_held_connection(fig2: Lab) -> None:
    """r1 loses its controller connection and every entry, then reconnects (a switch that
    restarted empty): the controller re-installs the bindings so that no held connection
    breaks (no reply overtakes its reverse rewrite)."""
    conns = serve(fig2)
    targets = fig2.drop_control("r1")
    fig2.empty_switch("r1")
    restored = time.time()
    fig2.restore_control("r1", targets)
    assert_unharmed(conns, restored)


@pytest.mark.parametrize("fig2", [RESTART], indirect=True)
def test_edge_control_channel_drop_keeps_instances_active(fig2: Lab) -> None:
    """r3 (e3's switch) loses its controller connection for 5 s with its data plane intact:
    e3's instances stay active throughout and no held connection breaks."""
    conns = serve(fig2)
    states: set[tuple[str, str]] = set()

    def watch(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            states.update((i["dbid"], i["state"]) for i in fig2.rest("GET", "/instances")[1])
            time.sleep(0.5)
    targets = fig2.drop_control("r3")
    watch(5.0)
    restored = time.time()
    fig2.restore_control("r3", targets)
    fig2.wait_connected()
    watch(3.0)
    assert {s for _, s in states} == {"active"}, sorted(states)
    assert_unharmed(conns, restored, stall_s=STALL_S)


@pytest.mark.parametrize("fig2", [RESTART], indirect=True)
def test_table_emptied_without_reconnect_is_repaired_and_counted(fig2: Lab) -> None:
    """`del-flows` on r1 behind the controller's back: the audit adds the entries back within
    reconcile_interval_s + 1 s (counted in /stats), new connections are served again, and the
    held ones resume unbroken."""
    conns = serve(fig2)
    runs, added = stat(fig2, "reconcile_runs"), stat(fig2, "reconcile_added")
    emptied = time.time()
    fig2.empty_switch("r1")
    repair_s = repaired(fig2, added, emptied, RECONCILE_S + 1.0)
    served = probe(fig2, "c1", SVC1, 10.0)
    assert served is not None, f"no new connection served within 10 s of a repair at {repair_s} s"
    assert_unharmed(conns, served)
    assert stat(fig2, "reconcile_runs") > runs
    print(f"repair: entries re-added {repair_s:.2f} s, a new connection served "
          f"{served - emptied:.2f} s after del-flows")


EXPIRE = {"config": HERE / "fig2_restart_expire.toml"}
IDLE_S = 3  # svc1's affinity idle timeout in fig2_restart_expire.toml


def binding_entries(bridge: str, ident: int) -> list[dict[str, Any]]:
    """The forward and reverse entries of binding `ident` in `bridge`."""
    wanted = {cookie(CookieKind.AFFINITY_FWD, ident), cookie(CookieKind.AFFINITY_REV, ident)}
    return [f for f in ours(bridge) if f["cookie"] in wanted]


def svc1_bindings(lab: Lab) -> set[int]:
    """Ids of the controller's svc1 bindings."""
    rows = lab.rest("GET", "/bindings/svc1")[1]
    return {b["id"] for b in rows if b.get("source") == "controller"}


@pytest.mark.parametrize("fig2", [EXPIRE], indirect=True)
def test_binding_expired_while_away_leaves_nothing_behind(fig2: Lab) -> None:
    """A connection closed while the controller is killed, its entry idled out: after the
    restart its binding is gone from /bindings and from r1, counted as retired, while a
    connection still open keeps its binding and entries."""
    fig2.fast_reconnect()
    for host in ("e2", "e3"):
        fig2.start_edge(host)
    wait_shares(fig2, "svc1", R1, BOTH)
    keep, _ = start_hold(fig2, 120, name="keep")
    (kept,) = svc1_bindings(fig2)
    gone, _ = start_hold(fig2, 120, name="gone")
    (ended,) = svc1_bindings(fig2) - {kept}
    wait_until(lambda: stored_bindings(fig2) == 2, 10, "the bindings reaching the store")
    fig2.stop_controller(signal.SIGKILL)
    fig2.stop_process(gone)
    wait_away(IDLE_S + 2.0)
    assert [f for f in binding_entries("r1", ended)  # the switch idled its forward entry out
            if f["cookie"] == cookie(CookieKind.AFFINITY_FWD, ended)] == []
    fig2.restart_controller()
    fig2.wait_connected()
    lines = len(held_lines(keep))

    def left() -> list[Any]:
        return [*(["listed"] if ended in svc1_bindings(fig2) else []),
                *binding_entries("r1", ended)]
    wait_until(lambda: not left(), RECONCILE_S + 2.0,
               lambda: f"binding {ended} left behind: {left()}")
    assert kept in svc1_bindings(fig2) and len(binding_entries("r1", kept)) == 2
    assert stat(fig2, "bindings_retired") >= 1
    wait_until(lambda: len(held_lines(keep)) > lines + 5, 5, "the open connection streams on")

"""The tick in bounded slices (controller/instances/ticking.py) does exactly what the whole
tick did: same intents in the same order, same states, decisions and store writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps import apploops
from controller.core import Core
from controller.instances.ticking import InstanceWalk
from controller.intents import Intent
from tests.helpers import FAILURES_CFG, figure2_core, report, see_links

LOCATED = ["10.0.0.21", "10.0.0.22", "10.0.0.31", "10.0.0.32"]
UNLOCATED = [f"10.0.1.{k}" for k in range(1, 60)]  # registered, never seen at a port


def _whole_tick(core: Core, now: float) -> list[Intent]:
    """`Core.tick` as it was before the slices (every instance walked in one go)."""
    intents = core.flush(now)
    for dpid in core.network.grace_over(now, core.config.switch_grace_s):
        intents += core._switch_gone(dpid, now)
    if core.network.expire(now, core.config.link_timeout_s):
        intents += core._paths_changed(now)
    intents += core.forwarding.lldp(now) + core.liveness.probes(now)
    changed = {i.service for i in list(core.catalogue.instances.values())
               if core.liveness.observe(i, now) or core.decisions.saw(i) != i.state}
    intents += [i for name in sorted(changed) for i in core._recompute(name, now)]
    for inst in core.catalogue.instances.values():
        intents += core.liveness.probe_if_unknown(inst.dbid, now)
    intents += [i for n in sorted(core.programmer.expire(now)) for i in core._recompute(n, now)]
    return intents + core.drains.honour(now) + core._autoscale(now)


def _scenario(extra: list[tuple[str, bool]], events: list[tuple[str, int, float]]) -> Core:
    """A Figure 2 core with `extra` instances registered (unlocated; serving or not) and
    `events` applied: (kind, which instance, at)."""
    core = figure2_core(FAILURES_CFG)
    for k, (dbid, active) in enumerate(extra):
        core.register("10.0.100.1" if k % 2 else "10.0.100.2", dbid, "dma", active, 0.0)
    dbids = LOCATED + [d for d, _ in extra]
    for kind, which, at in sorted(events, key=lambda e: e[2]):
        dbid = dbids[which % len(dbids)]
        if dbid not in core.catalogue.instances:
            continue
        if kind == "report":
            report(core, dbid, at)
        elif kind == "withdraw":
            core.withdraw(dbid, at)
        elif core.catalogue.instances[dbid].state == "active":
            core.drain(dbid, 1.0, at)
    return core


def _state(core: Core) -> dict[str, Any]:
    """What a tick may change, as plain values."""
    return {
        "states": {d: i.state for d, i in sorted(core.catalogue.instances.items())},
        "decisions": {k: d.to_dict() for k, d in sorted(core.engine.decisions.items())},
        "writes": core.drain_writes(),
        "counters": dict(core.counters),
    }


EXTRA = st.lists(st.tuples(st.sampled_from(UNLOCATED), st.booleans()), max_size=30,
                 unique_by=lambda x: x[0])
EVENTS = st.lists(st.tuples(st.sampled_from(["report", "withdraw", "drain"]),
                            st.integers(0, 70), st.floats(0.0, 10.0)), max_size=20)
TICKS = st.lists(st.floats(0.5, 40.0), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(EXTRA, EVENTS, TICKS, st.integers(1, 12))
def test_a_round_of_slices_gives_what_the_whole_tick_gives(
        extra: list[tuple[str, bool]], events: list[tuple[str, int, float]],
        ticks: list[float], size: int) -> None:
    """For random instance sets, reports and tick times, the slices' intents joined (in
    order), the instances' states, the decisions and the store writes equal the whole tick's."""
    whole, sliced = _scenario(extra, events), _scenario(extra, events)
    assert _state(whole) == _state(sliced)
    for now in sorted(ticks):
        see_links(whole, now)
        see_links(sliced, now)
        steps = list(sliced.tick_steps(now, size))
        assert _whole_tick(whole, now) == [i for step in steps for i in step]
        assert _state(whole) == _state(sliced)


def test_the_walk_yields_between_slices() -> None:
    """45 instances in slices of 10: each phase takes five steps."""
    core = _scenario([(d, True) for d in UNLOCATED[:41]], [])
    assert len(core.catalogue.instances) == 45
    for dbid in LOCATED:
        report(core, dbid, 1.0)
    walk = InstanceWalk(core.catalogue, core.liveness, core.decisions.saw, 30.0, 10)
    assert len(list(walk.probes())) == 5
    assert len(list(walk.observe())) == 5
    assert len(list(walk.unlocated())) == 5
    assert walk.changed == {"svc1", "svc2"}  # their reported instances went stale


def test_an_instance_withdrawn_between_slices_is_skipped() -> None:
    """A withdrawal between two slices: the later slice leaves the instance out."""
    core = _scenario([(d, True) for d in UNLOCATED[:16]], [])
    walk = InstanceWalk(core.catalogue, core.liveness, core.decisions.saw, 30.0, 10)
    probes = walk.unlocated()
    first = next(probes)
    core.withdraw(UNLOCATED[15], 30.0)  # the last registered: in the second slice
    rest = [i for step in probes for i in step]
    assert first and rest
    assert not any(UNLOCATED[15] in repr(i) for i in rest)


def test_a_slice_size_below_one_is_refused() -> None:
    """A slice of no instance would never end the walk."""
    core = figure2_core(FAILURES_CFG)
    with pytest.raises(ValueError, match="size"):
        InstanceWalk(core.catalogue, core.liveness, core.decisions.saw, 0.0, 0)


def test_the_shell_lets_the_loop_run_between_two_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """apps/apploops.py sends each step's intents, with the event loop let run between two."""
    seen: list[object] = []
    monkeypatch.setattr(apploops.hub, "sleep", lambda s: seen.append(("sleep", s)))
    core = _scenario([(d, True) for d in UNLOCATED[:30]], [])
    steps = [list(s) for s in core.tick_steps(30.0, 10)]
    shell = type("Shell", (apploops.Loops,), {})()
    shell.core = core
    shell.core.tick_steps = lambda now: iter(steps)  # type: ignore[method-assign]
    shell.send = seen.append  # type: ignore[attr-defined]
    shell._tick_round(30.0)
    want: list[object] = []
    for k, step in enumerate(steps):
        want += [("sleep", 0)] * bool(k) + [step]
    assert len(steps) > 5 and seen == want


def test_the_bench_runs_and_checks_its_figures(tmp_path: Any) -> None:
    """bench/tick_slices.py at 200 instances: every figure written (it asserts the sliced tick
    and the kept bodies equal the whole); bench/stall_summary.py reads a stall log."""
    bench = Path(__file__).resolve().parent.parent / "bench"
    out = tmp_path / "t.txt"
    subprocess.run([sys.executable, str(bench / "tick_slices.py"), "--instances", "200", "--rounds",
                    "1", "--output", str(out)], check=True, capture_output=True, timeout=120)
    text = out.read_text()
    for figure in ("tick, all at once", "most CPU in one step (Core.tick_steps)",
                   "GET /decisions, cached, again: all steps"):
        assert figure in text
    log = tmp_path / "c.log"
    log.write_text("dyncast: event loop stalled 80 ms (60 ms CPU, 1 samples)\n"
                   "  [1x] apps/dyncast_app.py:225 _tick_handler < x\n"
                   "dyncast: event loop stalled 40 ms (10 ms CPU, 0 samples)\n")
    got = subprocess.run([sys.executable, str(bench / "stall_summary.py"), str(log)], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    assert "2 stalls; 1 with >= 50 ms CPU {'tick': 1}; most CPU 60 ms; longest 80 ms" in got

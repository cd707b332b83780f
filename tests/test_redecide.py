"""A pick's placed-flow re-decision (controller/selection/redecide.py): the decision that
taking it again in full gives, and at most one log line per decision and second."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from controller.config import ControllerConfig, SelectionConfig
from controller.core import Core
from controller.intents import VIRTUAL_MAC
from controller.model import Metrics, Service
from controller.network.packet import ARP_REQUEST, BROADCAST, build_arp
from controller.selection import redecide
from tests.helpers import HOSTS, SVC1, SVC2, figure2_core, flow_mods, tcp_frame

DSID = "10.0.100.1"
SWITCHES = 4  # unlinked: from each, the instances of the others are unreachable


def _islands() -> tuple[Core, list[tuple[str, str, int]]]:
    """Switches without links, each with two clients (port 1) and three instances of svc1
    (ports 2-4): a decision has three usable candidates and nine it cannot reach."""
    core = Core(ControllerConfig(services=(SVC1, SVC2), selection=SelectionConfig(
        spread=0.3, sharpness=4.0, hysteresis=0.15)))
    clients = []
    for s in range(1, SWITCHES + 1):
        core.switch_connected(s)
        core.switch_ports(s, {1, 2, 3, 4}, 0.0)
        for k, port in ((1, 1), (2, 1), (21, 2), (22, 3), (23, 4)):
            ip, mac = f"10.{s}.0.{k}", f"02:00:00:00:{s:02x}:{k:02x}"
            core.packet_in(s, port, build_arp(ARP_REQUEST, mac, ip, BROADCAST, "10.9.9.9"), 0.0)
            if port == 1:
                clients.append((ip, mac, s))
            else:
                core.register(DSID, ip, "dma", True, 0.0)
    return core, clients


def _figure2() -> tuple[Core, list[tuple[str, str, int]]]:
    """Figure 2: svc1's two instances reachable from every ingress."""
    return figure2_core(), [(HOSTS[c][0], HOSTS[c][1], HOSTS[c][2]) for c in ("c1", "c2")]


def _reports(core: Core, rng: random.Random, now: float) -> None:
    for dbid in sorted(i.dbid for i in core.catalogue.of_service("svc1")):
        cap = rng.choice((1, 2, 4, 8))
        core.report(dbid, Metrics(cpu=rng.random() * 0.5, sessions=rng.randint(0, cap),
                                  queue=rng.randint(0, 2), capacity=cap,
                                  processing_delay_ms=rng.choice((None, 5.0, 30.0))), now)


def _decisions(core: Core) -> dict[tuple[int, str], object]:
    """What a decision sends where: the primary and, per reachable candidate, cost and share
    (an unreachable candidate has no share at any compute cost)."""
    return {k: (d.primary, sorted((c.dbid, c.state, c.cost, c.share) for c in d.candidates
                                  if c.network_ms is not None))
            for k, d in core.decisions.engine.decisions.items()}


def _run(make: str, seed: int) -> Iterator[tuple[str, object]]:
    """Bursts of new flows between random reports; each pick and the decisions after it."""
    core, clients = _islands() if make == "islands" else _figure2()
    rng = random.Random(seed)
    now, sport = 1.0, 10000
    for _ in range(6):
        _reports(core, rng, now)
        for _ in range(rng.randint(5, 40)):
            ip, mac, dpid = rng.choice(clients)
            now += rng.choice((0.0, 0.0005, 0.002, 0.01))
            sport += 1
            intents = core.packet_in(dpid, 1, tcp_frame(mac, VIRTUAL_MAC, ip, DSID, sport, 8000),
                                     now)
            picked = [m.actions[1].value for m in flow_mods(intents)[:1]]
            yield "pick", picked
            yield "decisions", _decisions(core)
        now += rng.choice((0.005, 0.05, 0.5))
    yield "redecisions", core.counters["placement_redecisions"]
    yield "errors", core.counters["errors"]


@pytest.mark.parametrize("make", ["islands", "figure2"])
@pytest.mark.parametrize("seed", range(6))
def test_a_redecision_from_the_decisions_own_inputs_is_the_full_one(
        make: str, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-pricing only the candidates the ingress can reach, from the decision's own inputs,
    picks exactly what taking the decision again in full (every instance priced afresh)
    picks, flow for flow, and leaves the same decisions."""
    fast = list(_run(make, seed))
    monkeypatch.setattr(redecide.Redecisions, "_retake", lambda *a, **k: None)  # in full
    full = list(_run(make, seed))
    assert fast == full
    assert dict(fast)["errors"] == 0
    assert sum(dict(f)["redecisions"] for f in [fast]) >= 1  # the path ran


def test_the_seeds_run_many_redecisions_in_both_networks() -> None:
    """The scenarios above exercise the rule: re-decisions that change decisions, and
    some that find it stands, in each network."""
    for make in ("islands", "figure2"):
        counts = [dict(_run(make, seed))["redecisions"] for seed in range(6)]
        assert sum(counts) >= 30, (make, counts)


def _burst_core() -> Core:
    core = figure2_core()
    for dbid in ("10.0.0.21", "10.0.0.31"):  # one worker each, equal: the share flips with
        core.report(dbid, Metrics(cpu=0.0, sessions=0, capacity=1), 1.0)  # every placement
    return core


def _new_flow(core: Core, sport: int, now: float) -> None:
    ip, mac, dpid, port = HOSTS["c1"]
    core.packet_in(dpid, port, tcp_frame(mac, VIRTUAL_MAC, ip, DSID, sport, 8000), now)


def test_changes_a_burst_makes_are_logged_once_a_second_per_decision() -> None:
    """A burst that changes c1's decision again and again within a second: the first change
    is logged at once (why: flows placed), the others held; the tick after the second writes
    one line for them (how many, the primary before the first and after the last); nothing
    is lost from the count of changes."""
    core = _burst_core()
    log = core.decisions.bases.change_log
    log.clear()
    changes = core.counters["decision_changes"]
    for i in range(30):
        _new_flow(core, 20000 + i, 1.1 + i * 0.001)
    made = core.counters["decision_changes"] - changes
    assert made >= 3
    lines = [e for e in log if e[0] == 1 and e[1] == "svc1"]
    assert len(lines) == 1 and lines[0][5] == redecide.REASON
    first = lines[0]
    log.clear()
    core.tick(1.5)  # within the second: still held
    assert not [e for e in log if e[5].startswith(redecide.REASON)]
    core.tick(first[4] + redecide.WINDOW_S)
    (held,) = [e for e in log if e[5].startswith(redecide.REASON)]
    assert held[:2] == (1, "svc1") and held[2] == first[3]  # continues from the first line
    assert held[5] == f"{redecide.REASON} ({made - 1} changes since the last line)"
    assert held[3] == core.decisions.engine.decisions[(1, "svc1")].primary
    log.clear()
    core.tick(first[4] + 2.0)  # nothing held any more: no line
    assert not [e for e in log if e[5].startswith(redecide.REASON)]


def test_a_change_after_a_quiet_second_is_logged_at_once() -> None:
    """Once a decision's window is over, its next change is a line at once, carrying the
    changes held before it."""
    core = _burst_core()
    log = core.decisions.bases.change_log
    for i in range(6):
        _new_flow(core, 21000 + i, 1.1 + i * 0.001)
    log.clear()
    changes = core.counters["decision_changes"]
    for i in range(6):
        _new_flow(core, 22000 + i, 2.2 + i * 0.001)
    lines = [e for e in log if e[5].startswith(redecide.REASON)]
    assert core.counters["decision_changes"] > changes
    assert lines and lines[0][4] == pytest.approx(2.2, abs=0.01)
    assert len(lines) == 1


def test_other_changes_are_logged_as_before() -> None:
    """A report that changes decisions is logged for every ingress at once, with its own
    reason, whatever the re-decisions held."""
    core = _burst_core()
    for i in range(10):
        _new_flow(core, 23000 + i, 1.1 + i * 0.001)
    log = core.decisions.bases.change_log
    log.clear()
    core.report("10.0.0.21", Metrics(cpu=1.0, sessions=1, queue=5, capacity=1), 1.2)
    assert {e[0] for e in log if not e[5].startswith(redecide.REASON)} >= {1, 2, 3}


def test_a_service_without_instances_reached_is_left_to_the_full_path() -> None:
    """No basis (nothing decided yet): `retake` hands over to the full re-decision."""
    core = figure2_core()
    svc = Service("other", "10.0.100.9", "tcp", 80)
    taken = []
    assert core.decisions.redecisions.retake(svc, 1, {}, lambda i: 0.0,
                                             lambda: taken.append(1) or True, 1.0)
    assert taken == [1]

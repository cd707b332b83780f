"""bench/steering_replay.py: a traced run's requests replayed through a model of its sites."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import bench.steering_replay as replay_mod
from bench.steering_replay import (
    DEFAULTS,
    MIN_POOL,
    Decider,
    Policy,
    Site,
    network_costs,
    path_samples,
    problems,
    replay,
    results,
    serve,
    sites_of,
)

NET = {"e2": 2.0, "e3": 190.0, "e4": 1.0}  # c1's ingress, r1: e4 beside it, e3 across x0-r3


def _req(t: float, ms: float, inst: str, ka: bool = False, src: str = "c1") -> dict[str, object]:
    return {"t": t, "ms": ms, "inst": inst, "src": src, "ka": ka}


def _trace(requests: list[dict[str, object]], scenario: str = "load-step",
           seed: int = 1) -> dict[str, object]:
    """A figure2 run whose decisions priced c1's paths as NET (and c2's alike)."""
    polls = [{"at": 100.0, "sites": {},
              "decisions": [{"ingress": dpid, "candidates": {site: [ms, 100.0, 0.0]
                                                             for site, ms in NET.items()}}
                            for dpid in (1, 2)]}]
    return {"network": "figure2", "scenario": scenario, "policy": "dyncast",
            "target_load": 0.6, "seed": seed, "duration_s": 15.0, "start_at": 100.0,
            "poll_errors": 0, "polls": polls, "requests": requests}


def _base(p95_ms: float = 400.0, seed: int = 1) -> list[dict[str, object]]:
    keys = {"network": "figure2", "scenario": "load-step", "target_load": 0.6, "seed": seed}
    return [{**keys, "policy": "dyncast", "p95_ms": 100.0},
            {**keys, "policy": "least-loaded", "p95_ms": p95_ms},
            {**keys, "policy": "p2c", "p95_ms": p95_ms + 50}]


def _everywhere(t0: float = 20.0) -> list[dict[str, object]]:
    """Unqueued answers from every site (MIN_POOL each), late in the run: path samples."""
    out = []
    for k in range(MIN_POOL):
        t = t0 + k
        out += [_req(t, 105.0, "e2"), _req(t, 105.0, "e4"), _req(t, 330.0, "e3")]
    return out


def test_the_sites_are_the_networks_with_the_scenarios_slowdown() -> None:
    assert sites_of(_trace([])) == {"e4": Site(2, 100.0), "e2": Site(3, 100.0),
                                    "e3": Site(2, 130.0)}
    assert sites_of(_trace([], scenario="hot-site"))["e4"] == Site(2, 300.0)


def test_workers_serve_first_come_first_served() -> None:
    queue = [0.0, 0.0]
    site = Site(2, 100.0)
    assert [serve(queue, site, 0.0) for _ in range(3)] == [0.0, 0.0, 100.0]
    assert serve(queue, site, 250.0) == 0.0  # the first two ended at 100 ms
    assert serve(queue, site, 250.0) == 0.0  # the third at 200 ms


def test_the_path_is_what_the_traced_answers_leave_beyond_wait_and_service() -> None:
    """Four requests at e2's three workers at once, answered 105, 105, 105 and 205 ms: the
    fourth waited 100 ms, so every path is 5 ms."""
    tr = _trace([_req(0.0, 105.0, "e2"), _req(0.0, 105.0, "e2"), _req(0.0, 105.0, "e2"),
                 _req(0.0, 205.0, "e2"), {**_req(0.1, 0.0, ""), "ms": None}])
    assert path_samples([tr]) == {"e2": [5.0, 5.0, 5.0, 5.0]}


def test_the_network_cost_is_the_decisions_for_the_clients_ingress() -> None:
    tr = _trace([_req(0.0, 105.0, "e2", src="c1"), _req(0.0, 105.0, "e2", src="c2")])
    tr["polls"][0]["decisions"][1]["candidates"]["e3"] = [7.0, 100.0, 1.0]  # type: ignore[index]
    costs = network_costs(tr)
    assert costs["c1"] == NET and costs["c2"]["e3"] == 7.0


def test_a_decision_shares_within_the_spread_in_turn_and_stands_within_the_hysteresis() -> None:
    decider = Decider(DEFAULTS)
    assert {decider.pick({"a": 100.0, "b": 200.0}) for _ in range(20)} == {"a"}
    decider = Decider(DEFAULTS)
    picks = [decider.pick({"a": 100.0, "b": 110.0}) for _ in range(100)]
    share_b = (100 / 110) ** 4 / (1 + (100 / 110) ** 4)
    assert picks.count("b") == pytest.approx(100 * share_b, abs=1)
    # moves within the hysteresis keep the shares: b still gets its turns, though taken anew
    # the decision would leave it out (125 > 1.3 x 96)
    assert "b" in {decider.pick({"a": 96.0, "b": 125.0}) for _ in range(10)}
    # one beyond it takes the decision anew: b is out of the spread
    assert {decider.pick({"a": 50.0, "b": 110.0}) for _ in range(10)} == {"a"}
    cheapest = Decider(Policy("cheapest", spread=0.0))
    assert {cheapest.pick({"a": 100.0, "b": 100.5}) for _ in range(10)} == {"a"}


def test_a_replay_places_fresh_requests_and_leaves_kept_alive_ones_where_they_went() -> None:
    """e2 and e4 are 2 ms and 1 ms away: three fresh requests at once go to e4, e4, then e2
    (e4's two workers are taken); a kept-alive request stays on e3 though it is the dearest."""
    tr = _trace([_req(0.0, 105.0, "e2"), _req(0.0, 105.0, "e2"), _req(0.0, 105.0, "e2"),
                 _req(0.001, 330.0, "e3", ka=True), *_everywhere()])
    cheapest = Policy("cheapest", wait="exact", spread=0.0)
    p95, placed = replay(tr, cheapest, path_samples([tr]), 100.0, random.Random(1))
    assert placed["e3"] == 1  # the kept-alive one only
    assert placed["e4"] + placed["e2"] == 3 + 3 * MIN_POOL  # every fresh one, off e3
    assert p95 == pytest.approx(330.0)  # e3's answer: 130 ms of service and its 200 ms path


def test_a_deadline_takes_the_slowest_site_within_it_else_the_cheapest() -> None:
    """Hot-site: e4 serves in 300 ms. Within 310 ms it takes the first two requests (the
    slower site within the deadline), e2 the third; with 250 ms e2 takes all three."""
    reqs = [_req(0.0, 105.0, "e2") for _ in range(3)] + _everywhere()
    tr = _trace(reqs, scenario="hot-site")
    pools = path_samples([tr])
    _, placed = replay(tr, Policy("d310", wait="exact", deadline_ms=310.0), pools, 100.0,
                       random.Random(1))
    assert placed["e4"] >= 2
    _, placed = replay(tr, Policy("d250", wait="exact", deadline_ms=250.0), pools, 100.0,
                       random.Random(1))
    assert placed["e4"] == 0 and placed["e3"] == 0


def test_the_allowance_prices_the_wait_beyond_it_at_its_price() -> None:
    policy = Policy("allowance", allowance=0.5, price=3.0)
    assert policy.wait_cost(40.0, 100.0) == 40.0
    assert policy.wait_cost(80.0, 100.0) == 50.0 + 3.0 * 30.0
    assert DEFAULTS.wait_cost(80.0, 100.0) == 80.0


def test_traces_without_a_baseline_or_path_samples_are_refused() -> None:
    tr = _trace(_everywhere())
    assert problems([tr], _base()) == []
    assert problems([tr], _base(seed=2)) == ["load-step load 0.6 seed 1: no other policy's run "
                                             "in the base sweep"]
    blind = _trace(_everywhere())
    del blind["polls"][0]["decisions"][0]["candidates"]["e3"]  # type: ignore[index]
    assert problems([blind], _base()) == [
        "load-step load 0.6 seed 1: no decision for c1's ingress priced ['e3']"]
    thin = _trace([r for r in _everywhere() if r["inst"] != "e3"])
    assert problems([thin], _base()) == [
        f"figure2 load-step: 0 answers from e3 (at least {MIN_POOL} sample its path time)"]


def test_results_set_the_replays_against_the_best_other_policy() -> None:
    rows = results([_trace(_everywhere())], _base(p95_ms=400.0), (DEFAULTS,), rounds=2)
    assert len(rows) == 1
    row = rows[0]
    assert row["best_other_ms"] == 400.0
    assert row["traced"] == pytest.approx(330.0 / 400.0)  # the traced p95: e3's answers
    # replayed, every fresh request finds e2 or e4 free and nothing crosses to e3
    assert row["replayed"]["defaults"]["ratio"] == pytest.approx(105.0 / 400.0)
    assert row["replayed"]["defaults"]["congested"] == 0.0


def _saved(results: Path, monkeypatch: pytest.MonkeyPatch, tag: str) -> None:
    """A trace saved under `tag` and a base sweep `b`, in `results` instead of bench/results."""
    monkeypatch.setattr(replay_mod, "RESULTS", results)
    monkeypatch.setattr(replay_mod, "trace_path", lambda t: results / f"trace-{t}.json")
    (results / f"trace-{tag}.json").write_text(json.dumps({"runs": [_trace(_everywhere())]}))
    (results / "steering-sweep-b.json").write_text(json.dumps({"runs": _base()}))


def test_main_replays_saved_traces_and_saves_the_table(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _saved(tmp_path, monkeypatch, "t")
    assert replay_mod.main(["--tag", "t", "--base", "b", "--rounds", "1"]) == 0
    saved = json.loads((tmp_path / "steering-replay-t.json").read_text())
    assert saved["command"].endswith("--tag t --base b --rounds 1")
    assert "defaults" in saved["runs"][0]["replayed"]
    assert "figure2 load-step load 0.6" in (tmp_path / "steering-replay-t.txt").read_text()
    (tmp_path / "steering-sweep-b.json").write_text(json.dumps({"runs": _base(seed=2)}))
    assert replay_mod.main(["--tag", "t", "--base", "b"]) == 1


def test_a_deadline_at_the_target_is_the_runs_own() -> None:
    """Told its run's target, the deadline policy uses it: 310 ms sends the first two
    hot-site requests to e4, as a fixed 310 ms deadline does; without a target it refuses."""
    reqs = [_req(0.0, 105.0, "e2") for _ in range(3)] + _everywhere()
    tr = _trace(reqs, scenario="hot-site")
    pools = path_samples([tr])
    told = Policy("target", wait="exact", at_target=True)
    _, placed = replay(tr, told, pools, 100.0, random.Random(1), target_ms=310.0)
    _, fixed = replay(tr, Policy("d310", wait="exact", deadline_ms=310.0), pools, 100.0,
                      random.Random(1))
    assert placed == fixed and placed["e4"] >= 2
    _, placed = replay(tr, told, pools, 100.0, random.Random(1), target_ms=250.0)
    assert placed["e4"] == 0
    with pytest.raises(ValueError, match="target"):
        replay(tr, told, pools, 100.0, random.Random(1))


def test_a_longer_hold_fills_the_workers_and_comes_off_the_path() -> None:
    """Each request holding e2's worker 10 ms more: its path samples are 10 ms shorter (the
    answers are the run's), and four requests at once make the fourth wait 110 ms."""
    tr = _trace([_req(0.0, 115.0, "e2") for _ in range(3)] + [_req(0.0, 225.0, "e2")])
    assert path_samples([tr], hold_ms=10.0) == {"e2": [5.0, 5.0, 5.0, 5.0]}
    assert sites_of(tr, hold_ms=10.0)["e2"] == Site(3, 110.0)


def test_main_names_the_hold_in_its_command_and_files(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _saved(tmp_path, monkeypatch, "t-0.5")
    assert replay_mod.main(["--tag", "t-0.5", "--base", "b", "--rounds", "1",
                            "--hold-ms", "3"]) == 0
    saved = json.loads((tmp_path / "steering-replay-t-0.5-hold-3.json").read_text())
    assert saved["command"].endswith("--tag t-0.5 --base b --rounds 1 --hold-ms 3")
    with pytest.raises(SystemExit):
        replay_mod.main(["--tag", "t-0.5", "--base", "b", "--hold-ms", "-1"])

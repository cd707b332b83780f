"""The steering benchmark's pure parts: Poisson arrivals and what runs are reduced to."""

from __future__ import annotations

import pytest

from bench.loadgen import Recorder, arrivals, keepalive, keepalive_phase
from bench.steering_stats import (
    Capacity,
    affinity,
    deadline_share,
    over_deadline,
    percentile,
    reaction_time,
    recovery_time,
    response_times,
    utilisation,
)


def _fresh(t: float, ms: float | None, inst: str | None = "a", src: str = "c1") -> dict:
    return {"t": t, "ms": ms, "inst": inst, "err": None if ms is not None else "refused",
            "src": src}


def _ka(conn: int, seq: int, inst: str | None, epoch: int = 0, src: str = "c1") -> dict:
    return {"t": float(seq), "conn": conn, "epoch": epoch, "seq": seq, "inst": inst,
            "ms": None if inst is None else 10.0, "err": None if inst else "reset", "src": src}


def test_arrivals_are_poisson_at_the_rate_and_repeatable() -> None:
    """About rate x duration arrivals, all inside the run, the same for the same seed."""
    times = list(arrivals(20.0, 100.0, seed=3))
    assert times == list(arrivals(20.0, 100.0, seed=3)) != list(arrivals(20.0, 100.0, seed=4))
    assert 1800 < len(times) < 2200 and all(0 < t < 100 for t in times)
    assert times == sorted(times)


def test_arrivals_follow_a_rate_step() -> None:
    """After the step the rate is the new one; before it, the old one."""
    times = list(arrivals(10.0, 200.0, seed=1, step_at=100.0, step_rate=30.0))
    before = sum(1 for t in times if t < 100)
    after = len(times) - before
    assert 850 < before < 1150 and 2700 < after < 3300


def test_keepalive_connections_do_not_send_in_step() -> None:
    """Each persistent connection starts at its own point of the interval, the same on every
    run with the same seed; load generators with other seeds are out of step too."""
    phases = [keepalive_phase(seed, k, 1.0) for seed in (101, 102, 103) for k in range(2)]
    assert all(0.0 <= p < 1.0 for p in phases)
    assert len({round(p, 3) for p in phases}) == len(phases)
    assert phases == [keepalive_phase(seed, k, 1.0) for seed in (101, 102, 103) for k in range(2)]
    assert max(phases) - min(phases) > 0.3


def test_zero_rate_gives_no_arrivals_until_a_step() -> None:
    """A silent client stays silent, unless its rate steps up."""
    assert list(arrivals(0.0, 10.0, seed=1)) == []
    assert all(t >= 5.0 for t in arrivals(0.0, 10.0, seed=1, step_at=5.0, step_rate=10.0))


def test_percentile_is_nearest_rank() -> None:
    """p95 of 1..100 is 95; of nothing, None."""
    values = [float(v) for v in range(100, 0, -1)]
    assert percentile(values, 0.95) == 95.0 and percentile(values, 0.5) == 50.0
    assert percentile([], 0.95) is None


def test_errors_are_left_out_of_times_and_miss_the_deadline() -> None:
    """A failed request counts as an error and a deadline miss, never as a fast answer."""
    records = [_fresh(0.1, 50.0), _fresh(0.2, 150.0), _fresh(0.3, None, None),
               _ka(0, 0, "a")]
    times = response_times(records)
    assert (times["requests"], times["errors"], times["mean_ms"]) == (3, 1, 100.0)
    assert deadline_share(records, 100.0) == pytest.approx(1 / 3)


def test_utilisation_is_busy_worker_time_over_capacity() -> None:
    """10 requests of 100 ms at a 2-worker instance in 1 s: 50 % busy."""
    records = [_fresh(i / 10, 100.0, "a") for i in range(10)]
    util = utilisation(records, {"a": Capacity(2, 100.0), "b": Capacity(1, 50.0)}, 1.0)
    assert util == {"a": pytest.approx(0.5), "b": 0.0}
    assert utilisation(records, {"a": Capacity(2, 100.0, 2.0)}, 1.0)["a"] == pytest.approx(1.0)


def test_affinity_counts_changes_and_breaks_per_client_connection() -> None:
    """Connections are told apart by client, index and epoch; a change or an error counts."""
    records = [_ka(0, 0, "a"), _ka(0, 1, "a"), _ka(0, 0, "b", src="c2"), _ka(0, 1, "b", src="c2"),
               _ka(1, 0, "a"), _ka(1, 1, "b"),  # changed instance on one connection
               _ka(2, 0, "a"), _ka(2, 1, None), _ka(2, 2, "b", epoch=1)]  # broke, reconnected
    timeout = {**_ka(3, 0, None), "err": "TimeoutError: timed out"}
    assert affinity([*records, timeout]) == {"connections": 6, "changed": 1, "broken": 1,
                                             "timeouts": 1}


def test_reaction_time_is_half_the_eventual_shift_of_the_mix() -> None:
    """The mix moves from a to b one second after the step: reaction 1 s; no move: None."""
    records = [_fresh(t / 10, 10.0, "a") for t in range(0, 100)]
    records += [_fresh(10 + t / 10, 10.0, "a" if t < 10 else "b") for t in range(0, 100)]
    assert reaction_time(records, step_at=10.0, duration=20.0) == pytest.approx(1.0)
    same = [_fresh(t / 10, 10.0, "a") for t in range(0, 200)]
    assert reaction_time(same, step_at=10.0, duration=20.0) is None


def test_recovery_is_the_last_failure_after_the_event() -> None:
    """Failures before the event do not count; none after it means 0."""
    records = [_fresh(1.0, None, None), _fresh(5.5, None, None), _fresh(7.0, None, None),
               _fresh(8.0, 20.0)]
    assert recovery_time(records, 5.0) == pytest.approx(2.0)
    assert recovery_time(records[:1], 5.0) == 0.0


def test_passive_health_is_on_in_the_bench_as_by_default_and_no_health_turns_it_off() -> None:
    """The bench runs what users get (health on); `--no-health` writes `enabled = false`,
    and the settings line says which (the health section takes only an off run as off)."""
    import tomllib

    from bench.steering import Plan
    from bench.steering_net import NETWORKS, controller_config
    from controller.config import config_from_dict

    for health in (True, False):
        plan = Plan(["failure"], ["dyncast"], {"failure": 10.0}, health=health)
        config = config_from_dict(tomllib.loads(controller_config(NETWORKS["figure2"](),
                                                                  "dyncast",
                                                                  plan.controller_extra())))
        assert config.health.enabled is health
        assert f"passive health {'on' if health else 'off'};" in plan.describe()
    assert Plan(["failure"], ["dyncast"], {"failure": 10.0}).health


@pytest.mark.parametrize("defaults", [False, True])
def test_benchmark_controller_config_is_valid(defaults: bool) -> None:
    """The TOML the benchmark writes for each network parses, with the settings under test."""
    import tomllib

    from bench.steering import SCORING, SELECTION, Plan
    from bench.steering_net import NETWORKS, controller_config
    from controller.config import SelectionConfig, config_from_dict

    plan = Plan(["balanced"], ["dyncast"], {"balanced": 10.0})  # the controller's defaults
    if not defaults:  # --tuned
        plan.selection, plan.scoring = dict(SELECTION), SCORING
    for make in NETWORKS.values():
        net = make()
        config = config_from_dict(tomllib.loads(controller_config(net, "nearest",
                                                                  plan.controller_extra())))
        assert config.services[0].policy == "nearest"
        assert config.scoring.enabled is (not defaults) and bool(SCORING)
        assert config.health.enabled  # the controller's default (issue 22)
        default_spread = SelectionConfig().spread
        assert config.selection.spread == (default_spread if defaults else
                                           SELECTION.get("spread", default_spread))
        assert {s.host for s in net.sites} <= set(net.graph.nodes)


def test_over_deadline_counts_late_seconds_after_the_step() -> None:
    """Seconds whose p95 (failures counting as late) misses the deadline, after the step."""
    records = [_fresh(t / 10, 50.0) for t in range(0, 100)]  # 0-10 s: on time
    records += [_fresh(10 + t / 10, 500.0 if t < 20 else 50.0) for t in range(0, 100)]
    assert over_deadline(records, 10.0, 20.0, 100.0) == 2.0
    assert over_deadline(records, 0.0, 10.0, 100.0) == 0.0
    failed = [_fresh(20 + t / 10, None, None) for t in range(10)]
    assert over_deadline(records + failed, 10.0, 21.0, 100.0) == 3.0


def test_selection_settings_from_the_command_line_reach_the_controller() -> None:
    """`--selection placed_flows=false spread=0.5` become TOML the controller reads back;
    a value that is neither a number nor true/false is refused with the item named."""
    import tomllib

    from bench.steering import Plan, _pairs
    from bench.steering_net import NETWORKS, controller_config
    from controller.config import config_from_dict

    plan = Plan(["balanced"], ["dyncast"], {"balanced": 10.0},
                selection=_pairs(["placed_flows=false", "spread=0.5"]))
    config = config_from_dict(tomllib.loads(controller_config(NETWORKS["figure2"](), "dyncast",
                                                              plan.controller_extra())))
    assert config.selection.placed_flows is False and config.selection.spread == 0.5
    assert "placed_flows false" in plan.describe()
    word = Plan(["balanced"], ["dyncast"], {"balanced": 10.0}, selection=_pairs(["pick=per-flow"]))
    config = config_from_dict(tomllib.loads(controller_config(NETWORKS["figure2"](), "dyncast",
                                                              word.controller_extra())))
    assert config.selection.pick == "per-flow" and 'pick "per-flow"' in word.describe()
    price = Plan(["balanced"], ["dyncast"], {"balanced": 10.0},
                 selection=_pairs(["queue_price=allowance", "wait_allowance=0.5"]))
    config = config_from_dict(tomllib.loads(controller_config(NETWORKS["figure2"](), "dyncast",
                                                              price.controller_extra())))
    assert (config.selection.queue_price, config.selection.wait_allowance) == ("allowance", 0.5)
    with pytest.raises(SystemExit, match="'spread=wide'"):
        _pairs(["spread=wide"])
    with pytest.raises(SystemExit, match=r"'interval=true': expected KEY=NUMBER$"):
        _pairs(["interval=true"], booleans=False)  # the D-MA's options are all numbers


def test_load_scales_every_client_rate_and_must_be_positive(
        capsys: pytest.CaptureFixture[str]) -> None:
    """`--load 1.5` multiplies each client's base rate (the load step multiplies that) and says
    so in the settings line; zero or a word is refused by the command line, before anything
    runs."""
    from bench.steering import Plan, main
    from bench.steering_net import NETWORKS

    net = NETWORKS["figure2"]()
    plan = Plan(["balanced"], ["dyncast"], {"balanced": 10.0}, load=1.5)
    assert [plan.rate(c) for c in net.clients] == [c.rate * 1.5 for c in net.clients]
    assert plan.describe().endswith("; client rates x1.5")
    assert "client rates" not in Plan(["balanced"], ["dyncast"], {"balanced": 10.0}).describe()
    for bad in ("0", "-1", "heavy", "inf"):
        with pytest.raises(SystemExit) as exc:
            main(["--load", bad])
        assert exc.value.code == 2
        assert "--load" in capsys.readouterr().err


def test_a_keepalive_connection_first_sends_at_its_phase() -> None:
    """The first request goes `phase` s after the start, the next ones an interval apart, all
    on one connection."""
    import json
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = json.dumps({"instance": "e1"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        rec = Recorder()
        keepalive(f"http://127.0.0.1:{server.server_port}/", 0, time.time(), 0.65, 0.2, 5.0,
                  rec, phase=0.3)
    finally:
        server.shutdown()
        server.server_close()
    times = [r["t"] for r in rec.records]
    assert len(times) == 2 and {r["inst"] for r in rec.records} == {"e1"}
    assert 0.29 <= times[0] < 0.4 and 0.49 <= times[1] < 0.6
    assert {r["epoch"] for r in rec.records} == {0}


def _run(network: str, scenario: str, policy: str, p95: float | None) -> dict[str, object]:
    return {"network": network, "scenario": scenario, "policy": policy, "p95_ms": p95}


def test_targets_compare_dyncast_with_the_best_other_policy_of_each_cell() -> None:
    """Hot site and load step need 0.7x the best other p95, other scenarios 1.05x; a policy
    without a p95 (every request failed) is not the best; another run (another load) is set
    beside this one, cell by cell, where it has the cell."""
    from bench.steering_report import ratios_table, targets

    runs = [_run("f", "hot-site", "dyncast", 70.0), _run("f", "hot-site", "nearest", 100.0),
            _run("f", "hot-site", "random", None),
            _run("f", "balanced", "dyncast", 106.0), _run("f", "balanced", "random", 100.0),
            _run("f", "load-step", "dyncast", 71.0), _run("f", "load-step", "random", 100.0)]
    rows = {t["scenario"]: t for t in targets(runs)}
    assert rows["hot-site"]["best"] == "nearest" and rows["hot-site"]["met"]
    assert rows["balanced"]["limit"] == 1.05 and not rows["balanced"]["met"]
    assert not rows["load-step"]["met"] and rows["load-step"]["ratio"] == pytest.approx(0.71)
    other = [_run("f", "hot-site", "dyncast", 50.0), _run("f", "hot-site", "random", 200.0)]
    table = ratios_table(runs, other, ("light", "heavy"))
    assert table[0].startswith("| network | scenario | light: dyncast / best other | ratio "
                               "| heavy: dyncast")
    assert "| f | hot-site | 70 / 100 (nearest) | 0.70 | 50 / 200 (random) | 0.25 |" in table
    assert len(table) == 3  # the cells the other run does not have are left out


def test_congestion_is_standing_unless_asked_for_the_hot_site_only() -> None:
    """By default the bulk transfer runs in every scenario; `--congestion hot-site` keeps it
    to the scenarios that ask for it, and an unknown value is refused."""
    from bench.steering import Plan, main
    from bench.steering_net import NETWORKS

    net = NETWORKS["figure2"]()
    plan = Plan(["balanced"], ["dyncast"], {"balanced": 10.0})
    assert all(plan.bulk_in(sc) for sc in net.scenarios)
    assert "congestion standing" in plan.describe()
    plan.congestion = "hot-site"
    assert [sc.name for sc in net.scenarios if plan.bulk_in(sc)] == ["hot-site"]
    with pytest.raises(SystemExit):
        main(["--congestion", "sometimes", "--report-only"])


def test_a_small_ovs_send_buffer_is_refused_before_any_network_is_built(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """With Open vSwitch's packet socket at the kernel's 208 KB default, queued packets at the
    shaped links would block sends on every port: the benchmark says so and exits 1 without
    running (no network, no results written)."""
    import bench.steering as steering

    monkeypatch.setattr(steering.os, "geteuid", lambda: 0)
    monkeypatch.setattr(steering, "ovs_send_buffer", lambda: 212992)
    monkeypatch.setattr(steering, "run_network", lambda *a: pytest.fail("a network was run"))
    assert steering.main(["--quick", "--no-report"]) == 1
    out = capsys.readouterr().out
    assert "212992-byte send buffer" in out and "scripts/setup.sh" in out


def test_the_report_states_the_client_rates_that_ran() -> None:
    """The set-up section gives each client's rate times the run's load factor."""
    from bench.steering_net import NETWORKS
    from bench.steering_report import setup_section

    net = NETWORKS["figure2"]()
    rates = [c.rate for c in net.clients]
    plain = "\n".join(setup_section([net], "in every scenario"))
    heavy = "\n".join(setup_section([net], "in every scenario", load=1.5))
    assert f"c1 (r1) {rates[0]:g}/s, c2 (r2) {rates[1]:g}/s;" in plain
    assert f"c1 (r1) {rates[0] * 1.5:g}/s, c2 (r2) {rates[1] * 1.5:g}/s;" in heavy


def test_a_reference_run_is_never_the_best_other_policy_and_is_set_beside_dyncast() -> None:
    """The reference (every new flow to the scenario's best sites) would be the best other
    in this cell; it is reported beside dyncast instead, and cells without one show none."""
    from bench.steering_report import targets

    runs = [_run("f", "hot-site", "dyncast", 280.0), _run("f", "hot-site", "least-loaded", 400.0),
            {**_run("f", "hot-site", "e2 only", 250.0), "reference": ["e2"]},
            _run("f", "balanced", "dyncast", 100.0), _run("f", "balanced", "nearest", 120.0)]
    rows = {t["scenario"]: t for t in targets(runs)}
    hot = rows["hot-site"]
    assert hot["best"] == "least-loaded" and hot["ratio"] == pytest.approx(0.7) and hot["met"]
    assert hot["reference"] == "e2 only" and hot["reference_p95"] == 250.0
    assert rows["balanced"]["reference"] is None and rows["balanced"]["reference_p95"] is None


def test_reference_runs_follow_the_policies_unless_turned_off() -> None:
    """A scenario with a reference gets one more run after the policies, with the reference's
    sites; `--no-reference` (Plan.references False) leaves it out; Figure 2's hot site names
    e2, the one site neither slowed nor behind the congested path."""
    from bench.steering import Plan
    from bench.steering_net import NETWORKS

    net = NETWORKS["figure2"]()
    hot, balanced = net.scenario("hot-site"), net.scenario("balanced")
    assert hot.reference == ("e2",) and hot.extra_load.keys().isdisjoint(hot.reference)
    assert net.congested not in hot.reference
    plan = Plan(["hot-site"], ["dyncast", "nearest"], {"hot-site": 10.0})
    assert plan.runs(hot) == [("dyncast", ()), ("nearest", ()), ("dyncast", ("e2",))]
    assert plan.runs(balanced) == [("dyncast", ()), ("nearest", ())]
    plan.references = False
    assert plan.runs(hot) == [("dyncast", ()), ("nearest", ())]


class _FakeLab:
    """The controller's REST API as the benchmark uses it for a reference run: drain and
    undrain change which instances the decisions give new flows to."""

    def __init__(self, dbids: list[str], stuck: bool = False) -> None:
        self.drained: set[str] = set()
        self.dbids = dbids
        self.stuck = stuck  # the decisions never follow the drains
        self.calls: list[tuple[str, str]] = []

    def rest(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        self.calls.append((method, path))
        parts = path.strip("/").split("/")
        if method == "POST" and parts[0] == "instances":
            (self.drained.add if parts[2] == "drain" else self.drained.discard)(parts[1])
            return 200, {"dbid": parts[1]}
        if parts[0] == "decisions":
            given = set(self.dbids) - (set() if self.stuck else self.drained)
            return 200, [{"candidates": [{"dbid": d, "share": 1.0 / len(given)
                                          if d in given else 0.0} for d in self.dbids]}]
        if parts[0] == "instances":
            return 200, [{"dbid": d, "state": "draining" if d in self.drained else "active",
                          "location": {"dpid": 1}} for d in self.dbids]
        return 404, {}


def test_restrict_drains_the_others_until_the_decisions_follow_and_release_undoes_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A reference run drains every instance but its sites' and waits until no decision
    gives new flows elsewhere; afterwards all are undrained and active. An unknown site or
    decisions that do not follow are a BenchError, not a silent comparison."""
    import bench.steering as steering
    from bench.steering_net import NETWORKS

    net = NETWORKS["figure2"]()
    dbids = [s.dbid for s in net.sites]
    lab = _FakeLab(dbids)
    bench = steering.Bench(net, lab, steering.Plan(["hot-site"], ["dyncast"], {}))
    drained = bench.restrict(("e2",))
    assert sorted(drained) == sorted(d for d in dbids if d != net.site("e2").dbid)
    assert lab.drained == set(drained)
    bench.release(drained)
    assert lab.drained == set()
    assert [p for m, p in lab.calls if m == "POST"] == (
        [f"/instances/{d}/drain" for d in drained] + [f"/instances/{d}/undrain" for d in drained])
    with pytest.raises(steering.BenchError, match="unknown one"):
        bench.restrict(("e9",))
    monkeypatch.setattr(steering.time, "sleep", lambda s: None)
    clock = iter(range(0, 100))
    monkeypatch.setattr(steering.time, "monotonic", lambda: float(next(clock)))
    with pytest.raises(steering.BenchError, match="still give new flows"):
        steering.Bench(net, _FakeLab(dbids, stuck=True), bench.plan).restrict(("e2",))


def test_the_seeds_table_gives_each_target_cell_per_seed_its_median_and_how_often_met() -> None:
    """Seed 1 is the main run; each other seed's ratio uses the best other policy of that
    seed's runs; a cell a seed did not run shows '-' and is left out of the median and the
    count; a cell with a reference gets a row against it; other scenarios are not shown."""
    from bench.steering_report import seeds_table

    def hot(d: float, ll: float, ref: float | None = None) -> list[dict[str, object]]:
        runs = [_run("f", "hot-site", "dyncast", d), _run("f", "hot-site", "least-loaded", ll)]
        if ref is not None:
            runs.append({**_run("f", "hot-site", "e2 only", ref), "reference": ["e2"]})
        return runs

    main = [*hot(72.0, 100.0, 80.0), _run("f", "balanced", "dyncast", 1.0),
            _run("f", "balanced", "nearest", 2.0), _run("f", "load-step", "dyncast", 50.0),
            _run("f", "load-step", "nearest", 100.0)]
    table = seeds_table(main, {3: hot(60.0, 100.0, 60.0), 2: hot(65.0, 100.0)})
    assert table[0] == ("| network | scenario | dyncast p95 against | seed 1 | seed 2 | seed 3 "
                        "| median | target met |")
    assert "| f | hot-site | the best other policy | 0.72 | 0.65 | 0.60 | 0.65 | 2 of 3 |" in table
    assert "| f | hot-site | the reference (e2 only) | 0.90 | - | 1.00 | 0.95 | |" in table
    assert "| f | load-step | the best other policy | 0.50 | - | - | 0.50 | 1 of 1 |" in table
    assert not any("balanced" in line for line in table)


def test_no_reference_on_the_command_line_turns_the_reference_runs_off(
        monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    """`--no-reference` reaches the plan the networks are run with; by default it is on."""
    import bench.steering as steering

    plans = []
    monkeypatch.setattr(steering.os, "geteuid", lambda: 0)
    monkeypatch.setattr(steering, "ovs_send_buffer", lambda: steering.OVS_SEND_BUFFER)
    monkeypatch.setattr(steering, "RESULTS", tmp_path)
    monkeypatch.setattr(steering, "run_network",
                        lambda name, plan, log: plans.append(plan) or [])
    assert steering.main(["--quick", "--no-report"]) == 0
    assert steering.main(["--quick", "--no-report", "--no-reference"]) == 0
    assert [p.references for p in plans] == [True, False]


def test_the_baselines_page_says_why_dyncast_lost_more_in_the_failure_only_when_it_did() -> None:
    """The paragraph quotes the run's own counts (failed, in flight at the kill, the dying
    site's share before it) and is left out when dyncast lost no more than the best."""
    from bench.steering_baselines import failure_lines

    def run(policy: str, errors: int, in_flight: int, share: float) -> dict:
        return {"policy": policy, "errors": errors, "failure": {
            "new": {"in_flight_failed": in_flight}, "share_before": share}}

    lines = failure_lines([run("dyncast", 4, 1, 0.534), run("p2c", 3, 0, 0.424),
                           run("least-loaded", 4, 1, 0.517)])
    text = "\n".join(lines)
    assert "dyncast lost more requests than p2c" in text
    assert "dyncast: 4 failed, 1 of them in flight at the kill" in text
    assert "p2c: 3 failed, 0 of them in flight at the kill" in text and "0.42)" in text
    assert failure_lines([run("dyncast", 3, 0, 0.5), run("p2c", 3, 0, 0.4)]) == []
    assert failure_lines([run("p2c", 3, 0, 0.4)]) == []

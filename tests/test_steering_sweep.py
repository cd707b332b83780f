"""The steering load sweep's pure parts: target loads to rate multipliers, and the check that a
run's measured load is the one it claims."""

from __future__ import annotations

import json

import pytest

from bench.steering import DMA, Plan
from bench.steering_net import NETWORKS, controller_config
from bench.steering_stats import Capacity, offered_rate, summarise
from bench.steering_sweep import (
    LoadError,
    SweepPlan,
    capacity_rate,
    load_multiplier,
    load_problem,
    main,
    measured_load,
    merge,
    peak_rates,
)
from controller.config import config_from_toml

FIG2 = NETWORKS["figure2"]()
KEEPALIVE_RATE = 4.0  # two clients x two keep-alive connections x one request a second


def _offered_at_peak(scenario: str, multiplier: float) -> float:
    """What the clients send at the scenario's peak with `multiplier`, computed the way
    bench/steering.py starts them (Plan.rate, the step factor, keep-alive connections)."""
    sc = FIG2.scenario(scenario)
    plan = Plan([scenario], ["dyncast"], {scenario: 10.0}, load=multiplier)
    return (sum(plan.rate(c) * sc.step.get(c.host, 1.0) for c in FIG2.clients)
            + KEEPALIVE_RATE)


def test_capacity_counts_slowed_sites_at_their_slower_rate_and_not_a_killed_one() -> None:
    # e4: 2 workers x 100 ms, e2: 3 x 100 ms, e3: 2 x 130 ms
    assert capacity_rate(FIG2, FIG2.scenario("load-step")) == pytest.approx(20 + 30 + 2000 / 130)
    # hot-site: e4 at 3x its service time
    assert capacity_rate(FIG2, FIG2.scenario("hot-site")) == pytest.approx(20 / 3 + 30
                                                                           + 2000 / 130)
    # failure: e2 dies half-way; the peak of demand per capacity comes after
    assert capacity_rate(FIG2, FIG2.scenario("failure")) == pytest.approx(20 + 2000 / 130)


@pytest.mark.parametrize("scenario", ["hot-site", "load-step", "balanced", "failure"])
@pytest.mark.parametrize("target", [0.3, 0.6, 0.8, 0.95])
def test_the_multiplier_makes_the_peak_offered_load_the_target(scenario: str,
                                                               target: float) -> None:
    sc = FIG2.scenario(scenario)
    multiplier = load_multiplier(FIG2, sc, target)
    assert _offered_at_peak(scenario, multiplier) == pytest.approx(
        target * capacity_rate(FIG2, sc))


def test_load_step_is_sized_on_the_rate_after_the_step() -> None:
    fresh, keepalive = peak_rates(FIG2, FIG2.scenario("load-step"))
    assert (fresh, keepalive) == (9.0 * 3 + 9.0, KEEPALIVE_RATE)
    # the base rates (9/s per client) put load-step at 40/65 of capacity at its peak
    assert load_multiplier(FIG2, FIG2.scenario("load-step"), 40 / capacity_rate(
        FIG2, FIG2.scenario("load-step"))) == pytest.approx(1.0)


@pytest.mark.parametrize("target", [0.0, -0.5, 2.0])
def test_a_target_outside_the_range_is_refused(target: float) -> None:
    with pytest.raises(LoadError, match="fraction of the sites' capacity"):
        load_multiplier(FIG2, FIG2.scenario("hot-site"), target)


def test_a_target_the_keepalive_connections_alone_exceed_is_refused() -> None:
    with pytest.raises(LoadError, match="keep-alive"):
        load_multiplier(FIG2, FIG2.scenario("hot-site"), 0.05)  # 2.6/s < 4/s keep-alive


def _records(fresh_rate: float, duration: float, step_at: float | None = None,
             after_rate: float | None = None) -> list[dict]:
    """Evenly spaced fresh requests (and one keep-alive request a second), all served by e2."""
    end = step_at if step_at is not None else duration
    times = [k / fresh_rate for k in range(round(end * fresh_rate))]
    if step_at is not None and after_rate:
        times += [step_at + k / after_rate for k in range(round((duration - step_at) * after_rate))]
    out: list[dict] = [{"t": t, "ms": 100.0, "inst": "e2", "err": None, "src": "c1"}
                       for t in times]
    out += [{"t": k + 0.5, "ms": 100.0, "inst": "e2", "err": None, "conn": 0, "epoch": 0,
             "seq": k, "src": "c1"} for k in range(int(duration))]
    return out


def test_offered_rate_counts_fresh_and_keepalive_requests_in_the_window() -> None:
    records = _records(10.0, 10.0)
    assert offered_rate(records, 0.0, 10.0) == pytest.approx(11.0)
    assert offered_rate(records, 5.0, 10.0) == pytest.approx(11.0)
    with pytest.raises(ValueError):
        offered_rate(records, 5.0, 5.0)


def test_the_measured_load_of_a_stepped_run_is_the_one_after_the_step() -> None:
    sc = FIG2.scenario("load-step")
    cap = capacity_rate(FIG2, sc)
    records = _records(10.0, 20.0, step_at=10.0, after_rate=38.0)
    summary = summarise(records, {"e2": Capacity(3, 100.0)}, 20.0, 300.0, step_at=10.0)
    assert measured_load(FIG2, sc, summary) == pytest.approx(39.0 / cap, rel=0.02)
    hot = FIG2.scenario("hot-site")
    flat = summarise(_records(25.0, 20.0), {"e2": Capacity(3, 100.0)}, 20.0, 300.0)
    assert measured_load(FIG2, hot, flat) == pytest.approx(26.0 / capacity_rate(FIG2, hot),
                                                           rel=0.02)


def test_a_run_whose_load_missed_its_target_is_a_problem() -> None:
    assert load_problem(0.8, 0.75) is None and load_problem(0.8, 0.9) is None
    assert load_problem(0.3, 0.34) is None  # within the 0.05 floor
    assert "target 0.8" in (load_problem(0.8, 0.6) or "")
    assert "offered 0.40" in (load_problem(0.3, 0.40) or "")
    assert load_problem(0.95, 0.70) is not None


def test_merge_replaces_the_same_cell_and_seed_only() -> None:
    def run(policy: str, load: float, seed: int, p95: float) -> dict:
        return {"network": "figure2", "scenario": "hot-site", "policy": policy,
                "target_load": load, "seed": seed, "p95_ms": p95}
    old = [run("dyncast", 0.3, 1, 100), run("dyncast", 0.6, 1, 200), run("p2c", 0.3, 1, 150)]
    new = [run("dyncast", 0.3, 1, 120), run("dyncast", 0.3, 2, 130)]
    merged = merge(old, new)
    assert sorted((r["policy"], r["target_load"], r["seed"], r["p95_ms"]) for r in merged) == [
        ("dyncast", 0.3, 1, 120), ("dyncast", 0.3, 2, 130), ("dyncast", 0.6, 1, 200),
        ("p2c", 0.3, 1, 150)]


def test_the_command_line_names_a_bad_load_or_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, field in ((["--plan", "--loads", "0.05"], "--loads"),
                        (["--plan", "--loads", "x"], "--loads"),
                        (["--plan", "--scenarios", "nowhere"], "--scenarios")):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert field in capsys.readouterr().err
    assert main(["--plan", "--scenarios", "hot-site", "--loads", "0.6"]) == 0
    assert "--load 1.513" in capsys.readouterr().out


def test_controller_keys_reach_the_controller_and_unknown_ones_are_refused(
        capsys: pytest.CaptureFixture[str]) -> None:
    """`--controller congestion_ms=1.2 use_measured_delay=true` is what the controller runs
    with (its own loader reads the benchmark's TOML), beside a [controller.selection] table."""
    plan = SweepPlan(["hot-site"], ["dyncast"], {"hot-site": 15.0}, selection={"spread": 0.2},
                     dma=dict(DMA), references=False,
                     network={"congestion_ms": 1.2, "use_measured_delay": True})
    config = config_from_toml(controller_config(FIG2, extra=plan.controller_extra()), "bench")
    assert (config.congestion_ms, config.use_measured_delay) == (1.2, True)
    assert config.selection.spread == 0.2
    assert "controller congestion_ms 1.2, use_measured_delay true" in plan.describe()
    default = config_from_toml(controller_config(FIG2, extra=SweepPlan(
        ["hot-site"], ["dyncast"], {"hot-site": 15.0}).controller_extra()), "bench")
    assert (default.congestion_ms, default.use_measured_delay) != (1.2, True)
    with pytest.raises(SystemExit) as exc:
        main(["--plan", "--controller", "hop_ms=3"])
    assert exc.value.code == 2
    assert "--controller" in capsys.readouterr().err


def _sweep_run(policy: str, load: float, seed: int, p95: float, scenario: str = "hot-site",
               errors: int = 0) -> dict:
    return {"network": "figure2", "scenario": scenario, "policy": policy, "target_load": load,
            "seed": seed, "p95_ms": p95, "errors": errors, "measured_load": load + 0.01,
            "duration_s": 15.0}


def test_the_sweep_report_takes_medians_over_seeds_and_names_the_misses(tmp_path) -> None:
    from bench.steering_sweep_report import ratios, sweep_section, verdict

    runs = [_sweep_run("dyncast", 0.3, 1, 100), _sweep_run("p2c", 0.3, 1, 90),
            _sweep_run("dyncast", 0.8, 1, 200), _sweep_run("p2c", 0.8, 1, 400),
            _sweep_run("least-loaded", 0.8, 1, 300),
            _sweep_run("dyncast", 0.8, 2, 280), _sweep_run("p2c", 0.8, 2, 350),
            _sweep_run("least-loaded", 0.8, 2, 320, errors=3)]
    cell = {p: [r for r in runs if r["policy"] == p and r["target_load"] == 0.8]
            for p in ("dyncast", "p2c", "least-loaded")}
    got, best = ratios(cell)  # per seed against that seed's best other
    assert got == [pytest.approx(200 / 300), pytest.approx(280 / 320)]
    assert best == "least-loaded"
    assert verdict(0.3, 1.04) == "yes" and verdict(0.3, 1.1).startswith("**no**")
    assert verdict(0.6, 0.8) == "yes" and verdict(0.6, 0.81).startswith("**no**")
    md = "\n".join(sweep_section({"settings": "defaults", "runs": runs}, tmp_path))
    assert (tmp_path / "steering_sweep.png").stat().st_size > 0
    assert ("| hot-site | 0.3 | 0.31 (0.31-0.31) | 1 | 100 | 90 | - | 1.11 | p2c "
            "| **no** (> 1.05) |") in md
    assert ("| hot-site | 0.8 | 0.81 (0.81-0.81) | 2 | 240 (200-280) | 375 (350-400) "
            "| 310 (300-320) (3 failed) | 0.77 (0.67-0.88) | least-loaded | yes |") in md
    assert "does not meet the targets:** hot-site at 0.3: 1.11x p2c." in md
    assert "--loads 0.3 0.8 --duration 15" in md


def test_the_0_8x_target_is_hot_site_and_load_steps_the_ceiling_everyones(tmp_path,
                                                                         capsys) -> None:
    """Issue 22 asks for 0.8x in hot-site and load-step only; 1.05x holds in every scenario.
    The report's command prints a saved sweep's tables with the verdicts so."""
    from bench.steering_sweep_report import main, verdict

    assert verdict(0.8, 0.95, "balanced") == "yes" and verdict(0.8, 0.95, "failure") == "yes"
    assert verdict(0.8, 1.06, "balanced").startswith("**no** (> 1.05)")
    assert verdict(0.8, 0.95, "load-step").startswith("**no** (> 0.8)")
    runs = [_sweep_run("dyncast", 0.8, 1, 190, "balanced"), _sweep_run("p2c", 0.8, 1, 200,
                                                                        "balanced"),
            _sweep_run("dyncast", 0.95, 1, 240, "balanced"), _sweep_run("p2c", 0.95, 1, 200,
                                                                         "balanced")]
    for r, util in zip(runs, ({"e2": 0.9, "e3": 0.5}, {"e2": 0.8, "e3": 0.7},
                              {"e2": 1.0, "e3": 0.8}, {"e2": 0.97, "e3": 0.9}), strict=True):
        r["util"] = util
    saved = tmp_path / "sweep.json"
    saved.write_text(json.dumps({"runs": runs}))
    assert main([str(saved), "--policies", "dyncast", "p2c"]) == 0
    out = capsys.readouterr().out
    assert "| balanced | 0.8 | 0.81 (0.81-0.81) | 1 | 190 | 200 | 0.95 | p2c | yes |" in out
    assert ("| balanced | 0.95 | 0.96 (0.96-0.96) | 1 | 240 | 200 | 1.20 | p2c "
            "| **no** (> 1.05) |") in out
    assert "| balanced | 0.95 | 1.00 / 0.80 | 0.97 / 0.90 |" in out


def test_a_tagged_sweep_cites_its_own_files_plot_and_commands(tmp_path) -> None:
    """A sweep saved under a tag is quoted with its own log, runs and plot, the commands as
    they were run and its own notes; the untagged one keeps its names."""
    from bench.steering_sweep_report import NOTES, sweep_section

    runs = [_sweep_run("dyncast", 0.6, 1, 200), _sweep_run("p2c", 0.6, 1, 400)]
    md = "\n".join(sweep_section({"settings": "defaults", "runs": runs}, tmp_path,
                                 tag="queue-model-10", title="A load sweep, now",
                                 commands=("bench/steering_sweep.py --tag queue-model-10",),
                                 notes=["Notes of this sweep."]))
    assert (tmp_path / "steering_sweep_queue_model_10.png").stat().st_size > 0
    assert not (tmp_path / "steering_sweep.png").exists()
    assert md.startswith("## A load sweep, now\n")
    assert "`bench/steering_sweep.py --tag queue-model-10` (log" in md
    assert "`bench/results/steering-sweep-queue-model-10.txt`" in md
    assert "`bench/results/steering-sweep-queue-model-10.json`" in md
    assert "![p95 against offered load](steering_sweep_queue_model_10.png)" in md
    assert md.endswith("Notes of this sweep.") and NOTES[0] not in md
    plain = "\n".join(sweep_section({"settings": "defaults", "runs": runs}, tmp_path))
    assert "`bench/results/steering-sweep.json`" in plain and NOTES[0] in plain


def test_the_queueing_section_sets_each_cell_beside_the_defaults_of_the_same_seeds() -> None:
    """Only the defaults' runs of the cells and seeds the queueing sweep ran are compared;
    e3's utilisation is quoted per policy from the runs at 0.8 and 0.95."""
    from bench.steering_sweep_report import queueing_section

    defaults = [_sweep_run("dyncast", 0.95, 1, 500), _sweep_run("p2c", 0.95, 1, 400),
                _sweep_run("dyncast", 0.95, 2, 900), _sweep_run("p2c", 0.95, 2, 300)]
    queueing = [_sweep_run("dyncast", 0.95, 1, 600), _sweep_run("p2c", 0.95, 1, 400)]
    for r, util in zip(queueing, (0.3, 0.6), strict=True):
        r["util"] = {"e3": util}
    md = "\n".join(queueing_section({"runs": queueing}, {"runs": defaults}))
    assert "| hot-site | 0.95 | 1 | 500 | 600 | 1.25 (p2c) | 1.50 (p2c) |" in md
    assert "hot-site: dyncast 0.30-0.30, p2c 0.60-0.60." in md
    assert "--selection queueing=true --tag queueing`" in md


def test_the_link_pricing_table_sets_each_setting_beside_the_others() -> None:
    """bench/steering_links_report.py: per cell and setting, dyncast's p95 over the best other
    policy's of the same seed, median (range) over the seeds."""
    from bench.steering_links_report import table

    mtu = {"runs": [_sweep_run("dyncast", 0.8, 1, 400.0), _sweep_run("p2c", 0.8, 1, 500.0),
                    _sweep_run("dyncast", 0.8, 2, 600.0), _sweep_run("p2c", 0.8, 2, 500.0)]}
    base = {"runs": [_sweep_run("dyncast", 0.8, 1, 550.0), _sweep_run("p2c", 0.8, 1, 500.0)]}
    lines = table({"link-mtu": mtu, "link-defaults": base})
    assert "congestion_ms 1.2" in lines[0] and "congestion_ms 10" in lines[0]
    assert lines[2] == "| hot-site | 0.8 | 1.00 (0.80-1.20) | 1.10 |"

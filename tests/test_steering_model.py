"""The steering benchmark's discrete-event model: repeatable, and it steers as the engine does."""

from __future__ import annotations

import pytest

from bench.steering_model import Settings, main, run


def test_a_cell_is_repeatable_and_every_request_is_served_somewhere() -> None:
    """The same settings and seed give the same times; the shares add up to one."""
    a, b = run(Settings(scenario="balanced", seed=3)), run(Settings(scenario="balanced", seed=3))
    assert a.times == b.times and a.shares == b.shares
    assert sum(a.shares.values()) == pytest.approx(1.0)
    assert len(a.times) > 250  # two clients at 9/s for 18 s
    assert run(Settings(scenario="balanced", seed=4)).times != a.times


def test_dyncast_keeps_off_the_slowed_site_and_the_congested_path() -> None:
    """In the hot site, round-robin sends a third of the requests to each site; dyncast sends
    few to the slowed e4 and the congested e3, and its p95 is the lower."""
    dyncast = run(Settings(scenario="hot-site", policy="dyncast"))
    even = run(Settings(scenario="hot-site", policy="round-robin"))
    assert even.shares["e4"] == pytest.approx(1 / 3, abs=0.02)
    assert dyncast.shares["e4"] + dyncast.shares["e3"] < 0.15
    assert dyncast.p95 < 0.5 * even.p95


def test_ageing_reports_keeps_more_flows_on_the_best_instance() -> None:
    """Without ageing, a busy report counts until the next one and pushes flows away from e2
    while it has room: over the same seeds, e2 gets more of the flows with ageing."""
    def e2_share(ageing: bool) -> float:
        return sum(run(Settings(scenario="hot-site", rate=12.0, spread=1.0, sharpness=2.0,
                                slow=0.0, ageing=ageing, seed=k)).shares["e2"]
                   for k in range(1, 4))
    assert e2_share(True) > e2_share(False)


def test_only_restricts_the_choice_and_bad_settings_are_refused() -> None:
    """`only` is the bound a policy could reach by sending everything to those instances;
    an unknown scenario, policy or instance is an error."""
    assert run(Settings(scenario="hot-site", only=("e2",))).shares["e2"] == 1.0
    for bad in ({"scenario": "storm"}, {"policy": "fastest"}, {"only": ("e9",)}):
        with pytest.raises(ValueError, match="unknown"):
            run(Settings(**bad))  # type: ignore[arg-type]


def test_the_command_line_prints_each_scenario_and_refuses_bad_numbers(
        capsys: pytest.CaptureFixture[str]) -> None:
    """One line per scenario with every policy's p95 and dyncast's ratio; --seeds 0 is refused."""
    assert main(["--scenario", "balanced", "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("balanced ") and "dyncast/best other" in out
    with pytest.raises(SystemExit) as exc:
        main(["--seeds", "0"])
    assert exc.value.code == 2

"""bench/steering_bound.py: the linear programme's upper bound on the requests any schedule can
finish within a time, and the sweep runs' arrivals it is given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.steering_bound import (
    Site,
    bound_cells,
    bound_section,
    lines,
    max_on_time,
    releases_of,
    sites_of,
)
from bench.steering_net import NETWORKS

SWEEP = Path(__file__).resolve().parent.parent / "bench" / "results"
ONE = Site("a", 1, 0.1)


def test_one_worker_cannot_finish_two_requests_10_ms_apart_within_150_ms() -> None:
    """The second can start only when the first is done, at 0.1 s, and ends at 0.2 s: 0.19 s
    after it arrived. Within 0.2 s both make it; a second worker, or a second site, takes it
    at once."""
    assert max_on_time([0.0, 0.01], [ONE], 0.15) == pytest.approx(1.0)
    assert max_on_time([0.0, 0.01], [ONE], 0.2) == pytest.approx(2.0)
    assert max_on_time([0.0, 0.01], [Site("a", 2, 0.1)], 0.15) == pytest.approx(2.0)
    assert max_on_time([0.0, 0.01], [ONE, Site("b", 1, 0.1)], 0.15) == pytest.approx(2.0)


def test_a_site_slower_than_the_time_serves_none_and_nothing_is_nothing() -> None:
    assert max_on_time([0.0, 1.0], [Site("slow", 4, 0.3)], 0.25) == 0.0
    assert max_on_time([], [ONE], 1.0) == 0.0


def test_a_burst_beyond_the_workers_is_bounded_by_what_they_can_serve() -> None:
    """Ten requests at once, two workers of 0.1 s, within 0.3 s: three rounds of two, six."""
    assert max_on_time([0.0] * 10, [Site("a", 2, 0.1)], 0.3) == pytest.approx(6.0)


def _runs() -> list[dict]:
    return json.loads((SWEEP / "steering-sweep-queue-model-10.json").read_text())["runs"]


def test_the_arrivals_are_the_runs_own_and_a_count_that_differs_is_refused() -> None:
    net = NETWORKS["figure2"]()
    run = next(r for r in _runs() if r["scenario"] == "load-step" and r["target_load"] == 0.6)
    times = releases_of(net, run)
    assert len(times) == run["requests"] and times == sorted(times)
    # the step: c1 sends three times as much in the second half
    half = run["duration_s"] / 2
    assert sum(t >= half for t in times) > 1.5 * sum(t < half for t in times)
    with pytest.raises(ValueError, match="arrivals drawn"):
        releases_of(net, {**run, "requests": run["requests"] + 1})


def test_the_congested_site_is_left_out_or_counted_and_a_slowed_site_is_slower() -> None:
    net = NETWORKS["figure2"]()
    assert {s.name for s in sites_of(net, "hot-site", False)} == {"e2", "e4"}
    hot = {s.name: s for s in sites_of(net, "hot-site", True)}
    assert hot["e4"].service_s == pytest.approx(0.3) and hot["e3"].service_s == pytest.approx(0.13)


def test_a_cell_is_judged_against_its_own_seeds_best_other() -> None:
    """load-step at 0.6, seed 1: 0.8x the better of least-loaded and p2c in that seed; with the
    sites' capacity to spare every request fits, with or without e3."""
    runs = [r for r in _runs() if r["scenario"] == "load-step" and r["target_load"] == 0.6
            and r["seed"] == 1]
    [cell] = bound_cells(runs)
    best = min(r["p95_ms"] for r in runs if r["policy"] != "dyncast")
    assert cell["within_ms"] == pytest.approx(0.8 * best)
    assert cell["network"] == "figure2"
    assert cell["without"] <= cell["with"] + 1e-6 <= 1.0 + 2e-6  # the solver's tolerance
    assert cell["without"] * cell["requests"] >= cell["need"]
    assert "not excluded" in lines([cell])[-1]
    assert bound_cells([r for r in runs if r["policy"] == "dyncast"]) == []


def test_the_section_tells_the_cells_that_fit_from_those_that_need_the_congested_site() -> None:
    cell = {"network": "figure2", "scenario": "load-step", "target_load": 0.8, "seed": 1,
            "requests": 100, "need": 95,
            "best_other": "p2c", "best_other_p95_ms": 400.0, "within_ms": 320.0,
            "dyncast_p95_ms": 350.0, "without": 0.97, "with": 1.0}
    short = {**cell, "scenario": "hot-site", "without": 0.9, "within_ms": 450.0}
    excluded = {**short, "target_load": 0.95, "with": 0.9}
    saved = {"from": "x.json", "command": ".venv/bin/python bench/steering_bound.py --tag t",
             "cells": [cell, short, excluded]}
    text = "\n".join(bound_section(saved, "t"))
    row = "| figure2 | load-step | 0.8 | 1 | 100 | 320 | 350 | 97.0% | 100.0% | not excluded |"
    assert row in text
    assert "only if the path were free" in text and "**excluded**" in text
    assert "(load-step at 0.8: 97 % of the requests)" in text
    assert "(hot-site at 0.8, hot-site at 0.95: at most 90 %)" in text
    assert "`.venv/bin/python bench/steering_bound.py --tag t` (results: " in text

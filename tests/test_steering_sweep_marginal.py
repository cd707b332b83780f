"""The load sweep's `--selection queue_price=marginal` and the table comparing it with the
defaults (bench/steering_sweep.py, bench/steering_sweep_marginal_report.py)."""

from __future__ import annotations

import pytest

from bench.steering import DMA
from bench.steering_net import NETWORKS, controller_config
from bench.steering_sweep import SweepPlan, _selection
from controller.config import config_from_toml

FIG2 = NETWORKS["figure2"]()


def test_queue_price_reaches_the_controller_as_a_word_beside_numbers() -> None:
    sel = _selection(["queue_price=marginal", "spread=0.2", "placed_flows=true"])
    assert sel == {"queue_price": "marginal", "spread": 0.2, "placed_flows": True}
    plan = SweepPlan(["hot-site"], ["dyncast"], {"hot-site": 15.0}, selection=sel,
                     dma=dict(DMA), references=False)
    config = config_from_toml(controller_config(FIG2, extra=plan.controller_extra()), "bench")
    assert (config.selection.queue_price, config.selection.spread) == ("marginal", 0.2)
    with pytest.raises(SystemExit):
        _selection(["spread=wide"])  # anything else is read as bench/steering.py reads it


def _run(policy: str, load: float, seed: int, p95: float, e3: float = 0.5) -> dict:
    return {"network": "figure2", "scenario": "load-step", "policy": policy, "target_load": load,
            "seed": seed, "p95_ms": p95, "errors": 0, "util": {"e3": e3, "e4": 0.9},
            "requests": 100, "by_instance": {"e3": {"n": round(e3 * 20), "p50_ms": 300 + seed}}}


def test_the_table_sets_each_setting_beside_the_defaults_with_the_targets() -> None:
    """Per cell and setting: dyncast's p95 over the best other's of the same seed and session,
    median (range), the best other named, and issue 22's verdict on the median."""
    from bench.steering_sweep_marginal_report import table

    marginal = {"runs": [_run("dyncast", 0.8, 1, 300.0, 0.6), _run("p2c", 0.8, 1, 400.0),
                         _run("dyncast", 0.8, 2, 280.0, 0.7), _run("p2c", 0.8, 2, 400.0)]}
    defaults = {"runs": [_run("dyncast", 0.8, 1, 420.0, 0.2), _run("p2c", 0.8, 1, 400.0)]}
    lines = table({"marginal-defaults": defaults, "marginal": marginal})
    assert "defaults (mean)" in lines[0] and "marginal" in lines[0]
    assert lines[2] == ("| load-step | 0.8 | 1.05 (p2c) not met: > 0.8 "
                        "| 0.72 (0.70-0.75) (p2c) met |")
    assert "| load-step | 0.8 | 420 | 290 (280-300) | 400 / 400 (400-400) |" in lines
    assert "- e3's utilisation at 0.8 and 0.95, marginal: load-step: dyncast 0.60-0.70, " \
           "p2c 0.50-0.50" in lines
    assert lines[-1] == ("- e3's share of the requests and its requests' median (ms), marginal: "
                         "load-step 0.8 dyncast 12%-14% at 301-302; load-step 0.8 p2c 10% at "
                         "301-302")

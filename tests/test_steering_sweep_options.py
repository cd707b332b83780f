"""The section comparing the opt-in selection settings with the defaults' sweep
(bench/steering_sweep_options_report.py): a setting run for dyncast alone is judged against the
other policies' runs of the session it borrows them from, seed by seed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.steering_sweep_options_report import load, options_section, summary, table


def _run(policy: str, load: float, seed: int, p95: float) -> dict[str, Any]:
    return {"network": "figure2", "scenario": "load-step", "policy": policy, "target_load": load,
            "seed": seed, "p95_ms": p95, "errors": 0, "requests": 100,
            "by_instance": {"e3": {"n": 10, "p50_ms": 340.0}}}


def _save(where: Path, tag: str, runs: list[dict[str, Any]]) -> None:
    (where / f"steering-sweep-{tag}.json").write_text(json.dumps({"runs": runs}))


def test_a_setting_run_alone_is_judged_against_the_borrowed_sessions_policies(
        tmp_path: Path) -> None:
    _save(tmp_path, "queue-model-10", [
        _run("dyncast", 0.6, 1, 300.0), _run("p2c", 0.6, 1, 400.0),
        _run("dyncast", 0.3, 1, 100.0), _run("p2c", 0.3, 1, 400.0)])  # 0.3: not in the section
    _save(tmp_path, "qm-marginal", [
        _run("dyncast", 0.6, 1, 420.0), _run("p2c", 0.6, 1, 500.0),
        _run("least-loaded", 0.6, 1, 350.0),
        _run("dyncast", 0.6, 2, 380.0), _run("p2c", 0.6, 2, 400.0)])
    _save(tmp_path, "qm-perflow", [_run("dyncast", 0.6, 1, 280.0), _run("dyncast", 0.6, 2, 500.0)])
    saved = load(tmp_path)
    assert set(saved) == {"queue-model-10", "qm-marginal", "qm-perflow"}
    assert {r["target_load"] for runs in saved.values() for r in runs} == {0.6}
    # per-flow: 280 / least-loaded's 350 (seed 1), 500 / p2c's 400 (seed 2)
    assert summary(saved) == {"queue-model-10": (1, 0, 1), "qm-marginal": (0, 1, 1),
                              "qm-perflow": (0, 0, 1)}
    row = table(saved)[2]
    assert row.startswith("| load-step | 0.6 | 0.75, met; p95 300 ms | ")
    marginal, perflow = row.split(" | ")[3:5]
    assert marginal.startswith("1.07 (0.95-1.20), not met: > 1.05; p95 400 (380-420) ms")
    assert perflow.startswith("1.02 (0.80-1.25), not met: > 0.8; p95 390 (280-500) ms")


def test_no_section_without_the_defaults_sweep(tmp_path: Path) -> None:
    _save(tmp_path, "qm-perflow", [_run("dyncast", 0.6, 1, 280.0)])
    assert options_section(load(tmp_path)) == []


def test_a_dyncast_run_with_nothing_to_be_compared_with_stops_the_section(
        tmp_path: Path) -> None:
    """A seed the borrowed session did not run would leave its cell's median over fewer seeds
    without saying so: the section refuses it, naming the run."""
    _save(tmp_path, "queue-model-10", [_run("dyncast", 0.6, 1, 300.0), _run("p2c", 0.6, 1, 400.0)])
    _save(tmp_path, "qm-marginal", [_run("dyncast", 0.6, 1, 420.0), _run("p2c", 0.6, 1, 500.0)])
    _save(tmp_path, "qm-perflow", [_run("dyncast", 0.6, 1, 280.0), _run("dyncast", 0.6, 3, 290.0)])
    with pytest.raises(ValueError, match=r"qm-perflow: dyncast's run of load-step at 0\.6, seed 3"):
        options_section(load(tmp_path))


def test_the_allowance_is_compared_with_the_defaults_cell_by_cell(tmp_path: Path) -> None:
    """bench/steering_sweep_current.py's `versus`: per scenario and load that both sweeps ran,
    the median over seeds of dyncast / the best other, the defaults' first."""
    from bench.steering_sweep_current import versus

    defaults = [_run("dyncast", 0.6, 1, 300.0), _run("p2c", 0.6, 1, 400.0),
                _run("dyncast", 0.8, 1, 450.0), _run("p2c", 0.8, 1, 500.0)]
    allowance = [_run("dyncast", 0.6, 1, 240.0), _run("least-loaded", 0.6, 1, 400.0),
                 _run("p2c", 0.6, 1, 300.0), _run("dyncast", 0.6, 2, 200.0),
                 _run("p2c", 0.6, 2, 400.0), _run("dyncast", 0.95, 1, 1.0),
                 _run("p2c", 0.95, 1, 1.0)]
    # 0.6: 240/300 and 200/400, median 0.65; 0.95 is not in the defaults, 0.8 not here
    assert versus(allowance, defaults) == "load-step 0.75 and 0.65 (0.6)"

"""bench/steering_replay_check.py: the replay's ratios beside the sweeps that measured them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.steering_replay_check import lines, measured


def _run(policy: str, p95: float, seed: int = 1, load: float = 0.6,
         e3: int = 0) -> dict[str, object]:
    return {"network": "figure2", "scenario": "hot-site", "target_load": load, "seed": seed,
            "policy": policy, "p95_ms": p95, "requests": 100,
            "by_instance": {"e3": {"n": e3}} if e3 else {}}


def _save(results: Path, tag: str, runs: list[dict[str, object]]) -> None:
    (results / f"steering-sweep-{tag}.json").write_text(json.dumps({"runs": runs}))


def test_a_sweep_of_dyncast_alone_is_judged_by_its_baselines_sweep(tmp_path: Path) -> None:
    _save(tmp_path, "alone", [_run("dyncast", 300.0), _run("dyncast", 310.0, load=0.3)])
    _save(tmp_path, "base", [_run("dyncast", 999.0), _run("p2c", 400.0), _run("p2c", 1.0, seed=9)])
    runs = measured("alone", "base", tmp_path)
    assert sorted((r["policy"], r["p95_ms"]) for r in runs) == [  # (0.3 is not a LOADS cell)
        ("dyncast", 300.0), ("p2c", 1.0), ("p2c", 400.0)]
    _save(tmp_path, "base", [_run("p2c", 400.0, seed=2)])
    with pytest.raises(ValueError, match="seed 1 has no other policy's run"):
        measured("alone", "base", tmp_path)


def test_the_table_sets_measured_beside_replayed(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The defaults measured 0.75 against their session (met) and 0.6 against the replay's
    baselines; the replay said 0.7; e3 took 4 % of one seed's requests and none of the
    other's; a setting whose sweep is not saved is not left out quietly."""
    import bench.steering_replay_check as check
    monkeypatch.setattr(check, "MEASURED", {"defaults": ("own", "own")})
    _save(tmp_path, "own", [_run("dyncast", 300.0, e3=4), _run("least-loaded", 400.0),
                            _run("dyncast", 300.0, seed=2), _run("least-loaded", 400.0, seed=2)])
    _save(tmp_path, "queue-model-10", [_run("p2c", 500.0), _run("p2c", 500.0, seed=2)])
    row = {"scenario": "hot-site", "target_load": 0.6,
           "replayed": {"defaults": {"ratio": 0.7, "congested": 0.05}}}
    (tmp_path / "steering-replay-trace.json").write_text(json.dumps({"runs": [row]}))
    text = lines(tmp_path)
    assert text[1] == "== defaults: bench/results/steering-sweep-own.json"
    assert text[2] == ("  hot-site 0.6: measured 0.75 (0.75-0.75) vs least-loaded, met; over "
                       "queue-model-10's baselines 0.60 (0.60-0.60), replayed 0.70 (0.70-0.70); "
                       "congested site 2% (0%-4%)")
    monkeypatch.setattr(check, "MEASURED", {"defaults": ("own", "own"), "x": ("absent", "own")})
    with pytest.raises(FileNotFoundError):
        lines(tmp_path)

"""The results page's section on dyncast choosing per flow (`pick = "per-flow"`, issue 22).

Boundary: saved sweep runs in (bench/results/steering-sweep-perflow.json, and the same cells
with the defaults, run in the same session: steering-sweep-perflow-defaults.json), markdown
lines out; no Mininet. bench/steering.py's `report` appends them to the load-sweep section.
"""

from __future__ import annotations

from typing import Any

from bench.steering_sweep_report import _cells, _spread, ratios

COMMAND = ("sudo .venv/bin/python bench/steering_sweep.py --scenarios hot-site load-step "
           "--policies dyncast p2c --loads 0.8 0.95 --seeds 1 2 --duration 15")


def _p95(runs: list[dict[str, Any]]) -> str:
    """The runs' p95s as `median (min-max)`, or '-'."""
    got = [r["p95_ms"] for r in runs if r["p95_ms"] is not None]
    return _spread(got) if got else "-"


def perflow_section(perflow: dict[str, Any], defaults: dict[str, Any]) -> list[str]:
    """dyncast with `pick = "per-flow"` against p2c, beside the same cells with the defaults."""
    mine, base = _cells(perflow["runs"]), _cells(defaults["runs"])
    lines = ["### Choosing per flow, measured: `pick = \"per-flow\"`", "",
             f"`{COMMAND} --selection pick=per-flow --tag perflow` and, for the defaults in the "
             f"same session, `{COMMAND} --tag perflow-defaults` (logs: "
             "`bench/results/steering-sweep-perflow.txt`, `-perflow-defaults.txt`; runs: the "
             "`.json` beside them). With the setting, dyncast sends each new flow to the "
             "cheapest of its decision's candidates re-priced at the pick (network cost plus "
             "the compute cost of the last report aged to now with the flows placed since: "
             "[decisions.md](../decisions.md#choosing-per-flow-opt-in), "
             "`controller/selection/perflow.py`) instead of serving the decision's shares; "
             "p2c is unaffected by it. Ratios are dyncast's p95 over p2c's of the same seed "
             "and session:", "",
             "| scenario | target load | seeds | dyncast p95 ms, shares | dyncast p95 ms, "
             "per-flow | p2c p95 ms (both sessions) | dyncast / p2c, shares | dyncast / p2c, "
             "per-flow |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key, cell in mine.items():
        old = base.get(key, {})
        got, _ = ratios(cell)
        was, _ = ratios(old)
        seeds = len({r["seed"] for rs in cell.values() for r in rs})
        lines.append(
            f"| {key[0]} | {key[1]:g} | {seeds} | {_p95(old.get('dyncast', []))}"
            f" | {_p95(cell.get('dyncast', []))}"
            f" | {_p95(cell.get('p2c', []) + old.get('p2c', []))}"
            f" | {_spread(was, 2) if was else '-'} | {_spread(got, 2) if got else '-'} |")
    return [*lines, "", *NOTES]


NOTES = [
    "NOTES-PLACEHOLDER",
    "",
]

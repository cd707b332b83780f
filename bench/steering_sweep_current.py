"""The results page's load sweeps with the controller's defaults since placements wait behind
the reported queue (issue 22), and with `congestion_ms = 3` tried as the default.

Boundary: saved sweep runs (bench/results/steering-sweep-TAG.json) in, markdown lines and
plots out (through bench/steering_sweep_report.py); no Mininet. bench/steering.py's `report`
places them on the page.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.steering_sweep_report import sweep_section

DOCS = Path(__file__).resolve().parent.parent / "docs" / "results"
SWEEP = "sudo .venv/bin/python bench/steering_sweep.py --scenarios hot-site load-step --policies "
DEFAULTS_TAG = "queue-model-10"
DEFAULTS_COMMANDS = (
    SWEEP + "dyncast least-loaded p2c --loads 0.3 0.6 0.8 0.95 --seeds 1 2 --duration 15 "
    "--controller congestion_ms=10 --tag queue-model-10",
    SWEEP + "dyncast least-loaded p2c --loads 0.6 0.8 0.95 --seeds 3 --duration 15 "
    "--controller congestion_ms=10 --tag queue-model-10",
)
CONGESTION_TAG = "congestion-3"
CONGESTION_COMMANDS = (
    SWEEP + "dyncast least-loaded p2c --loads 0.3 0.6 0.8 0.95 --seeds 1 2 --duration 15 "
    "--controller congestion_ms=3 --tag congestion-3",
)
BEFORE_QUEUE = "A load sweep, before placements waited behind the queue"

DEFAULTS_NOTES = [
    "TODO",
    "",
]

CONGESTION_NOTES = [
    "TODO",
    "",
]


def _load(path: Path, tag: str) -> dict | None:
    """The saved sweep with this tag beside `path`, if it was run."""
    found = path.with_name(f"steering-sweep-{tag}.json")
    return json.loads(found.read_text()) if found.exists() else None


def current_sweeps(path: Path) -> list[str]:
    """The sweep with the controller's defaults."""
    saved = _load(path, DEFAULTS_TAG)
    if saved is None:
        return []
    return sweep_section(saved, DOCS, tag=DEFAULTS_TAG, commands=DEFAULTS_COMMANDS,
                         title="A load sweep, with the controller's defaults",
                         notes=DEFAULTS_NOTES)


def congestion_sweep(path: Path) -> list[str]:
    """The sweep with `congestion_ms = 3`, a default tried and not kept."""
    saved = _load(path, CONGESTION_TAG)
    if saved is None:
        return []
    return sweep_section(saved, DOCS, tag=CONGESTION_TAG, commands=CONGESTION_COMMANDS,
                         title="A cheaper congested link as the default, tried: "
                               "`congestion_ms = 3`",
                         notes=CONGESTION_NOTES)

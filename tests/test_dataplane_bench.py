"""The dataplane benchmark's pure parts: per-round ratios against static and their summary."""

from __future__ import annotations

from bench.dataplane import MODES, ratio_cell, ratios


def _rows(static: list[float], bucket: list[float]) -> list[dict]:
    """Rows as measure() returns them, with only first-byte times filled in."""
    per_mode = {"static": static, "bucket": bucket}
    return [{"mode": m, "rounds": [{"first_byte_ms": v} for v in per_mode.get(m, static)]}
            for m in MODES]


def test_ratios_are_taken_round_by_round() -> None:
    """A slow round slows every mode: its ratio stays near 1 although its times doubled."""
    rows = _rows(static=[2.0, 4.0, 2.0], bucket=[2.2, 4.4, 1.8])
    assert [round(r, 2) for r in ratios(rows, "bucket", "first_byte_ms")] == [1.1, 1.1, 0.9]


def test_ratio_cell_shows_the_median_and_the_range() -> None:
    assert ratio_cell([1.1, 1.3, 0.9]) == "1.10x (0.90-1.30)"
    assert ratio_cell([1.234]) == "1.23x"

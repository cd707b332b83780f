"""bench/rehome_cost.py runs and measures what it says (a small N: the figures are not checked)."""

from __future__ import annotations

import re

import pytest

from bench import rehome_cost


def test_the_rehome_bench_moves_every_flow_and_prints_each_part(
        capsys: pytest.CaptureFixture[str]) -> None:
    rehome_cost.main(["--flows", "20", "--repeats", "1"])
    line = capsys.readouterr().out.strip()
    assert re.fullmatch(r"N=20: rehomed [\d.]+ ms, told [\d.]+ ms, serialise [\d.]+ ms; "
                        r"total [\d.]+ ms, [\d.]+ us a flow \(median of 1, CPU time\)", line), line

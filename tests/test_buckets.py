"""Bucket mapping for bounded-state affinity: quotas, and remapping that moves the fewest."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from controller.dataplane.buckets import minimum_moves, moved, quotas, remap


def test_quotas_follow_shares_and_sum_to_the_bucket_count() -> None:
    """Largest remainder: counts within one of the exact share, summing to the total."""
    assert quotas({"a": 0.5, "b": 0.5}, 64) == {"a": 32, "b": 32}
    q = quotas({"a": 0.6, "b": 0.25, "c": 0.15}, 64)
    assert sum(q.values()) == 64 and q == {"a": 38, "b": 16, "c": 10}
    assert quotas({"a": 1.0, "b": 0.0}, 8) == {"a": 8}
    assert quotas({}, 8) == {} and quotas({"a": 1.0}, 0) == {}


def test_first_mapping_fills_every_bucket_in_proportion() -> None:
    """From nothing, every bucket gets an instance, in quota."""
    mapping = remap([None] * 64, {"a": 0.75, "b": 0.25})
    assert Counter(mapping) == {"a": 48, "b": 16}


def test_unchanged_shares_move_nothing() -> None:
    """The same decision again keeps every bucket where it is."""
    first = remap([None] * 64, {"a": 0.5, "b": 0.3, "c": 0.2})
    assert remap(first, {"a": 0.5, "b": 0.3, "c": 0.2}) == first


@pytest.mark.parametrize("seed", range(30))
def test_weight_changes_move_exactly_the_minimum(seed: int) -> None:
    """For random weight changes (instances joining and leaving too), the buckets that change
    instance are exactly the unavoidable ones, and the new counts are the new quotas."""
    rnd = random.Random(seed)
    names = [f"10.0.0.{i}" for i in range(1, 7)]
    mapping: list[str | None] = [None] * rnd.choice((16, 64, 256))
    for _ in range(5):
        shares = {d: rnd.random() for d in rnd.sample(names, rnd.randint(1, 5))}
        new = remap(mapping, shares)
        assert len(moved(mapping, new)) == minimum_moves(mapping, shares)
        want = {d: n for d, n in quotas(shares, len(mapping)).items() if n}
        assert Counter(d for d in new if d is not None) == want
        mapping = new


def test_an_instance_leaving_moves_only_its_buckets() -> None:
    """When an instance gets no share, only its buckets move; the others' stay put."""
    old = remap([None] * 60, {"a": 1, "b": 1, "c": 1})
    new = remap(old, {"a": 1, "b": 1})
    assert {old[i] for i in moved(old, new)} == {"c"}
    assert all(new[i] == old[i] for i in range(60) if old[i] != "c")


def test_no_shares_empties_the_mapping() -> None:
    """No usable instance: no bucket maps anywhere."""
    assert remap(["a", "b"], {}) == [None, None]

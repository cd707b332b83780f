"""Bounded-state affinity (CATS R18): a fixed number of buckets per service and ingress, each
mapped to one instance, and the consistent remapping that moves as few buckets as possible.

Boundary: pure arithmetic on lists; the switch rules are built in controller/dataplane/rules.py.

`quotas()` turns a decision's shares into whole bucket counts (largest remainder, ties by
D-BID); `remap()` keeps every bucket whose instance is still under its quota and hands only
the surplus buckets to the instances that lack some. The number of buckets that change
instance is then exactly the sum of the positive differences between old and new counts,
which no other mapping can beat.
"""

from __future__ import annotations

import math
from collections import Counter


def quotas(shares: dict[str, float], buckets: int) -> dict[str, int]:
    """Whole bucket counts proportional to `shares` (summing to `buckets`, or 0 if no shares)."""
    total = sum(v for v in shares.values() if v > 0)
    if buckets <= 0 or total <= 0:
        return {}
    exact = {d: buckets * v / total for d, v in shares.items() if v > 0}
    out = {d: math.floor(x) for d, x in exact.items()}
    left = buckets - sum(out.values())
    for d in sorted(exact, key=lambda d: (-(exact[d] - out[d]), d))[:left]:
        out[d] += 1
    return out


def remap(current: list[str | None], shares: dict[str, float]) -> list[str | None]:
    """The new bucket -> instance mapping for `shares`, moving the fewest buckets."""
    want = quotas(shares, len(current))
    if not want:
        return [None] * len(current)
    kept: Counter[str] = Counter()
    new: list[str | None] = []
    for dbid in current:  # keep a bucket while its instance is within its quota
        if dbid is not None and kept[dbid] < want.get(dbid, 0):
            kept[dbid] += 1
            new.append(dbid)
        else:
            new.append(None)
    lacking = [d for d in sorted(want) for _ in range(want[d] - kept[d])]
    it = iter(lacking)
    return [b if b is not None else next(it) for b in new]


def moved(old: list[str | None], new: list[str | None]) -> list[int]:
    """Indices of the buckets whose instance changed (from a real instance to another)."""
    return [i for i, (a, b) in enumerate(zip(old, new, strict=True))
            if a is not None and a != b]


def minimum_moves(old: list[str | None], new_shares: dict[str, float]) -> int:
    """The least number of assigned buckets any remapping to `new_shares` must move."""
    have = Counter(d for d in old if d is not None)
    want = quotas(new_shares, len(old))
    return sum(max(0, n - want.get(d, 0)) for d, n in have.items())

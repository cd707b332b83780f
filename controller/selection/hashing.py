"""Consistent hashing for the `consistent-hash` policy: a Maglev lookup table.

Boundary: pure functions of strings. `maglev_table` fills a table of `TABLE_SIZE` (a prime)
slots from the instances' D-BIDs (Eisenbud et al., NSDI 2016, section 3.4): each instance has
its own permutation of the slots (an offset and a skip from two hashes of its name) and the
instances take turns claiming their next preferred free slot, so each holds about 1/n of the
table, and when one joins or leaves most slots keep their instance. `stable_hash` is the same
in every process (Python's `hash` of a string is not), so a key maps to the same instance after
a restart.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

TABLE_SIZE = 4099  # a prime well above the instances of a service (Maglev: M >= 100 n)


def stable_hash(text: str, salt: str = "") -> int:
    """A 64-bit hash of `text`, the same in every process."""
    digest = hashlib.blake2b(text.encode(), digest_size=8, person=salt.encode()[:16])
    return int.from_bytes(digest.digest(), "big")


@lru_cache(maxsize=512)
def maglev_table(dbids: tuple[str, ...], size: int = TABLE_SIZE) -> tuple[str, ...]:
    """The lookup table over `dbids` (sorted by the caller, so that the same set gives the same
    table): slot -> D-BID. Empty when there are none."""
    if not dbids:
        return ()
    offsets = [stable_hash(d, "offset") % size for d in dbids]
    skips = [stable_hash(d, "skip") % (size - 1) + 1 for d in dbids]
    nexts = [0] * len(dbids)
    table: list[str | None] = [None] * size
    filled = 0
    while True:
        for i, dbid in enumerate(dbids):
            slot = (offsets[i] + nexts[i] * skips[i]) % size
            while table[slot] is not None:
                nexts[i] += 1
                slot = (offsets[i] + nexts[i] * skips[i]) % size
            table[slot] = dbid
            nexts[i] += 1
            filled += 1
            if filled == size:
                return tuple(d for d in table if d is not None)

"""Which live member masters a switch: rendezvous (highest-random-weight) hashing.

Every member scores every (member, switch) pair with the same stable hash (BLAKE2b of both
names, never Python's per-process `hash`) and the highest score masters the switch. Each member
computes it alone from the same list of live members and gets the same answer. Switches spread
evenly, and when a member joins it takes only the switches it now scores highest on; when one
leaves only its own switches move, each to its runner-up. Nothing else changes hands.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def weight(member: str, dpid: int) -> int:
    """The pair's score: 64 bits of BLAKE2b over the member id and the datapath id."""
    data = f"{member}\x00{dpid:016x}".encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def master_of(dpid: int, members: Iterable[str]) -> str | None:
    """The member that masters `dpid` among `members` (None when there is none); a tie of
    scores (2^-64) goes to the larger id, so every member still agrees."""
    best: tuple[int, str] | None = None
    for member in members:
        score = (weight(member, dpid), member)
        if best is None or score > best:
            best = score
    return None if best is None else best[1]


def assignment(dpids: Iterable[int], members: Iterable[str]) -> dict[int, str]:
    """Every switch's master among `members` (empty when there are no members)."""
    live = sorted(set(members))
    if not live:
        return {}
    return {dpid: master_of(dpid, live) or "" for dpid in dpids}

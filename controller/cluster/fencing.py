"""Fencing: the store records only one member may write are written only while it may.

A binding belongs to its ingress switch, and only the switch's master makes, moves and ends
the bindings there. A member that lost its lease (paused, cut off from the database) or the
switch (another member joined and the rule gives it the switch) may still have a batch of
binding writes on its way to the store; applied late, they would overwrite or delete what the
new master holds. So the transaction that applies a batch first reads the heartbeat rows, on
the database's clock, and judges each fenced record (`judge`):

- the writer's row must still be live and carry the lease epoch the writer holds (its
  *token*: a lapsed lease taken anew has a new epoch, so a write decided under the old one is
  refused) — else every fenced record of the batch is refused and the writer steps down;
- the record's ingress must be mastered by the writer by the rule over the live rows — else
  that record is refused (the writer keeps its lease and its other switches).

Refused records are dropped, never retried: the new master holds the switch's entries and
adopts them at takeover (docs/cluster.md). The shell (`apps/fencing.py`) makes the check and
the writes one transaction, and makes a takeover's read of the stored bindings wait for the
fenced writes in flight.

Boundary: pure. Heartbeat rows, the database's `now`, the writer's id and token and each
fenced record's ingress in; a `Verdict` out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from controller.cluster.mastership import master_of
from controller.cluster.membership import MemberRow

FENCED = ("binding",)  # the record kinds a switch's master alone writes
LEASE = "lease"  # refused: the writer's lease ended or was taken anew
MASTERSHIP = "mastership"  # refused: the rule gives the record's switch another member


@dataclass(frozen=True, slots=True)
class Verdict:
    """Which fenced records a batch may write; `refused` maps the others to the reason."""

    refused: dict[str, str] = field(default_factory=dict)
    lease_lost: bool = False

    def allowed(self, key: str) -> bool:
        """True if the record `key` may be written."""
        return key not in self.refused


def judge(rows: Iterable[MemberRow], now: float, member_id: str, token: int | None,
          ingress: Mapping[str, int | None]) -> Verdict:
    """The verdict on writing the fenced records `ingress` (record key -> its switch, None
    when it has none: a deletion of a record not stored) as `member_id` holding lease epoch
    `token`, with the heartbeat rows read in the writing transaction at the database's `now`."""
    rows = tuple(rows)
    me = next((r for r in rows if r.member_id == member_id), None)
    if token is None or me is None or not me.live(now) or me.epoch != token:
        return Verdict({key: LEASE for key in ingress}, lease_lost=True)
    live = sorted(r.member_id for r in rows if r.live(now))
    return Verdict({key: MASTERSHIP for key, dpid in ingress.items()
                    if dpid is not None and master_of(dpid, live) != member_id})

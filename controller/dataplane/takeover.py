"""Which binding holds a flow when a cluster member takes a switch over, and which of its
bindings the store must be given again.

A member that masters a switch again (after its lease lapsed and was taken anew, or after a
member joined and left) may hold bindings there that the store lacks: their writes were
refused by the fence (controller/cluster/fencing.py) or dropped with the lease. And the store
may hold a binding of the same flow another member made while it mastered the switch (a flow
moved off a lost instance), or an older one of a flow this member moved meanwhile. Per flow
the binding numbered last wins: each member numbers its bindings from its start and from each
takeover on (`IDENTS_PER_S` steps a second), so a later binding has the higher identifier, as
long as the members' clocks agree within the time between two owners of a switch (a lease).

Boundary: pure. The stored bindings of one switch and the bindings held in; which to take,
which of ours to end and which stored records to delete out (`settle`); which held bindings
the store lacks (`unstored`). reactive.py applies them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from controller.dataplane.affinity import Binding, BindingTable

IDENTS_PER_S = 100_000  # a process numbers its bindings from its start time in these steps:
# above every number an earlier process can have used (unless it made more than 100,000 a
# second on average), and below 2**48 (cookie identifiers) until the year 2059


@dataclass(slots=True)
class Settled:
    """A takeover's verdict on the stored bindings of one switch."""

    taken: list[Binding] = field(default_factory=list)  # stored, to hold
    ended: list[Binding] = field(default_factory=list)  # ours, superseded by a stored one
    dropped: list[int] = field(default_factory=list)  # stored records superseded by ours
    moved: list[tuple[Binding, Binding]] = field(default_factory=list)  # (ours, stored): the
    # same binding, moved to another instance later by another member: ours moves with it

    @property
    def superseded(self) -> int:
        """How many versions of a flow's binding lost to a later one."""
        return len(self.ended) + len(self.dropped) + len(self.moved)


def settle(stored: Iterable[Binding], held: BindingTable) -> Settled:
    """What to do with each stored binding of a switch, the bindings `held` as they are. A
    binding keeps its identifier when its flow moves off a lost instance: of two versions of
    one, the one moved last (`moved_at`) wins."""
    out = Settled()
    for b in sorted(stored, key=lambda b: b.ident):
        same = held.by_ident(b.ident)
        if same is not None:
            if same.dbid != b.dbid and b.moved_at > same.moved_at:
                out.moved.append((same, b))
            continue
        mine = held.get(b.key)
        if mine is not None and mine.ident > b.ident:
            out.dropped.append(b.ident)  # we bound the flow again after it was stored
            continue
        if mine is not None:
            out.ended.append(mine)  # another member bound it again after us
        out.taken.append(b)
    return out


def unstored(held_at_switch: Iterable[Binding], stored: Iterable[Binding]) -> list[Binding]:
    """The bindings held at the switch that the store does not hold as they are held (none
    under their identifier, or an older move's)."""
    kept = {b.ident: (b.dbid, b.moved_at) for b in stored}
    return [b for b in held_at_switch if kept.get(b.ident) != (b.dbid, b.moved_at)]

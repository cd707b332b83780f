"""Reconciling a switch's groups: its group table read back, compared with what it should hold.

Boundary: pure. The shell reads a switch's group descriptions (OpenFlow 1.3) after every
reading of its entries was repaired (at connect and every `reconcile_interval_s`) and hands
them over as `SwitchGroup` values; this module says which group-mods make the switch hold the
fast-failover groups the programmer wants (dataplane/failover.py), and nothing else of ours:
- a wanted group missing, of another type, or with other buckets: sent again (add-or-modify);
- a group in Dyncast's id range (`GROUP_FIRST` to `GROUP_END`: 2L and 2L+1 for every label L)
  that no wanted group is and no entry we keep names: deleted. Open vSwitch deletes every
  entry that outputs to a deleted group, so a group an entry we keep names is never deleted,
  even when it is not wanted (an entry adopted at connect and still held as found names its
  groups by its cookie's label);
- a group outside that range is another application's: left alone.
A group sent or deleted between the read and its answer is judged against what the programmer
wants when the answer comes, so a late answer costs at most a group sent, or deleted, again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from controller.dataplane.failover import group_ids
from controller.dataplane.labels import FIRST_LABEL, LABEL_LIMIT
from controller.dataplane.programmer import Programmer
from controller.dataplane.reconciler import Key
from controller.intents import (
    CookieKind,
    FlowMod,
    Group,
    GroupBucket,
    GroupMod,
    Intent,
    Output,
    SetField,
    cookie_kind,
)

GROUP_FIRST = group_ids(FIRST_LABEL)[0]  # 32: the first label's first group
GROUP_END = group_ids(LABEL_LIMIT)[0]  # 131,072: past the last label's groups
Bucket = tuple[int, tuple[tuple[str, int | str], ...]]  # watch port, (set-field or output)


@dataclass(frozen=True, slots=True)
class SwitchGroup:
    """One group a switch holds, as a group description gives it: its id, whether it is a
    fast-failover group, and each bucket's watch port and actions (`bucket_of`'s spelling)."""

    group_id: int
    fast_failover: bool
    buckets: tuple[Bucket, ...]


def action_pair(name: str, value: int | str) -> tuple[str, int | str]:
    """One bucket action: ("output", port) or (field, value), text in lower case."""
    return name, value.lower() if isinstance(value, str) else value


def bucket_of(bucket: GroupBucket) -> Bucket:
    """A wanted bucket in the spelling the shell reads a switch's buckets in."""
    pairs = []
    for act in bucket.actions:
        if isinstance(act, SetField):
            pairs.append(action_pair(act.field, act.value))
        elif isinstance(act, Output):
            pairs.append(action_pair("output", act.port))
        else:
            pairs.append(action_pair(type(act).__name__, 0))
    return bucket.watch_port, tuple(pairs)


def ours(group_id: int) -> bool:
    """True when a group id is in Dyncast's range (module docstring)."""
    return GROUP_FIRST <= group_id < GROUP_END


def named(held: dict[Key, tuple[str, FlowMod]]) -> set[int]:
    """The groups that entries we keep name: a group action of a known entry, or both groups
    of the label of a failover entry adopted as found (its actions are not known)."""
    out: set[int] = set()
    for _, fm in held.values():
        if fm.command == "adopted":
            split = cookie_kind(fm.cookie)
            if split is not None and split[0] == CookieKind.FAILOVER:
                out.update(group_ids(split[1] & 0xFFFF))
            continue
        out.update(a.group_id for a in fm.actions if isinstance(a, Group))
    return out


def repair(dpid: int, found: list[SwitchGroup], wanted: list[GroupMod],
           kept: set[int]) -> tuple[list[GroupMod], list[GroupMod]]:
    """(groups to send again, groups to delete) for switch `dpid` holding `found`, given the
    groups we want there and the groups entries we keep name (`kept`)."""
    have = {g.group_id: g for g in found}
    again = []
    for gm in sorted(wanted, key=lambda g: g.group_id):
        held = have.get(gm.group_id)
        if held is None or not held.fast_failover or held.buckets != tuple(
                bucket_of(b) for b in gm.buckets):
            again.append(gm)
    want = {g.group_id for g in wanted}
    stale = [GroupMod(dpid, gid, command="delete") for gid in sorted(have)
             if ours(gid) and gid not in want and gid not in kept]
    return again, stale


def groups_read(programmer: Programmer, counters: Counter[str], dpid: int,
                found: list[SwitchGroup]) -> list[Intent]:
    """Switch `dpid` was read to hold `found`: the group-mods that repair it (the groups sent
    again first, the deletes after them), counted on /stats (`reconcile_groups_added`,
    `reconcile_groups_removed`). Nothing while its entries are being read at connect: what
    it should hold is not known before they are (the next read judges its groups)."""
    if programmer.unread(dpid):
        return []
    again, stale = repair(dpid, found, programmer.groups.held(dpid),
                          named(programmer.reconciler.held(dpid)))
    counters["reconcile_group_runs"] += 1
    counters["reconcile_groups_added"] += len(again)
    counters["reconcile_groups_removed"] += len(stale)
    return [*again, *stale]

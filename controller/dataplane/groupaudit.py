"""Reconciling a switch's groups: its group table read back, compared with what it should hold.

Boundary: pure. The shell reads a switch's group descriptions (OpenFlow 1.3) after every
reading of its entries was repaired (at connect and every `reconcile_interval_s`) and hands
them over as `SwitchGroup` values; this module says which group-mods make the switch hold the
fast-failover groups the programmer wants (dataplane/failover.py), and nothing else of ours:
- a wanted group missing, of another type, or with other buckets: sent again (add-or-modify);
- a group of ours (its id carries the prefix, `[dataplane] group_id_prefix`, and a label's
  2L or 2L+1 below it: dataplane/failover.py `group_ids`) that no wanted group is and no entry
  we keep names: deleted. Open vSwitch deletes every entry that outputs to a deleted group,
  so a group an entry we keep names is never deleted, even when it is not wanted (an entry
  adopted at connect and still held as found names its groups by its cookie's label);
- a group numbered the way processes before 2026-12 did, 2L or 2L+1 with no prefix (32 to
  131,071: `legacy`), is deleted on the same terms only when it has the shape ours had
  (fast-failover; bucket 1 watches the port of label L's instance at this switch, sets its
  MAC and outputs there; bucket 2 sets a known instance's D-BID and a MAC and outputs to its
  watch port, or to in_port for 2L+1). After an upgrade, entries adopted at connect may name
  such groups: they are kept until those entries are replaced by ones naming the new ids;
- any other group is another application's: left alone, whatever its id.
A group sent or deleted between the read and its answer is judged against what the programmer
wants when the answer comes, so a late answer costs at most a group sent, or deleted, again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from controller.dataplane.failover import group_ids, label_of_group
from controller.dataplane.programmer import Programmer
from controller.dataplane.reconciler import Key
from controller.intents import (
    PORT_IN,
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

LEGACY_PREFIX = 0  # the ids of processes before 2026-12: 2L and 2L+1, 32 to 131,071
Bucket = tuple[int, tuple[tuple[str, int | str], ...]]  # watch port, (set-field or output)
Where = Callable[[int], tuple[int, int, str] | None]  # label -> (dpid, port, MAC) of its instance


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


def ours(group_id: int, prefix: int) -> bool:
    """True when a group id is one of Dyncast's at `prefix` (module docstring)."""
    return label_of_group(group_id, prefix) is not None


def legacy(dpid: int, group: SwitchGroup, where: Where, known: Callable[[str], bool]) -> bool:
    """True when switch `dpid`'s `group` is an unmarked group of ours from an earlier process
    (module docstring): `where(L)` locates label L's instance, `known` tells a D-BID we know."""
    label = label_of_group(group.group_id, LEGACY_PREFIX)
    at = None if label is None else where(label)
    if at is None or at[0] != dpid or not group.fast_failover or len(group.buckets) != 2:
        return False
    (watch, first), (backup, second) = group.buckets
    out = PORT_IN if group.group_id & 1 else backup
    return (watch == at[1] and first == (("eth_dst", at[2].lower()), ("output", watch))
            and len(second) == 3 and second[0][0] == "ipv4_dst" and known(str(second[0][1]))
            and second[1][0] == "eth_dst" and second[2] == ("output", out))


def named(held: dict[Key, tuple[str, FlowMod]], prefix: int) -> set[int]:
    """The groups that entries we keep name: a group action of a known entry, or the groups
    of the label of a failover entry adopted as found (its actions are not known: the ids at
    `prefix`, or an earlier process's unmarked ones)."""
    out: set[int] = set()
    for _, fm in held.values():
        if fm.command == "adopted":
            split = cookie_kind(fm.cookie)
            if split is not None and split[0] == CookieKind.FAILOVER:
                out.update(group_ids(split[1] & 0xFFFF, prefix))
                out.update(group_ids(split[1] & 0xFFFF, LEGACY_PREFIX))
            continue
        out.update(a.group_id for a in fm.actions if isinstance(a, Group))
    return out


def repair(dpid: int, found: list[SwitchGroup], wanted: list[GroupMod], kept: set[int],
           stale_if: Callable[[SwitchGroup], bool]) -> tuple[list[GroupMod], list[GroupMod]]:
    """(groups to send again, groups to delete) for switch `dpid` holding `found`, given the
    groups we want there, the groups entries we keep name (`kept`) and which groups are ours
    to delete when neither (`stale_if`)."""
    have = {g.group_id: g for g in found}
    again = []
    for gm in sorted(wanted, key=lambda g: g.group_id):
        held = have.get(gm.group_id)
        if held is None or not held.fast_failover or held.buckets != tuple(
                bucket_of(b) for b in gm.buckets):
            again.append(gm)
    want = {g.group_id for g in wanted}
    stale = [GroupMod(dpid, gid, command="delete") for gid, g in sorted(have.items())
             if gid not in want and gid not in kept and stale_if(g)]
    return again, stale


def groups_read(programmer: Programmer, counters: Counter[str], dpid: int,
                found: list[SwitchGroup]) -> list[Intent]:
    """Switch `dpid` was read to hold `found`: the group-mods that repair it (the groups sent
    again first, the deletes after them), counted on /stats (`reconcile_groups_added`,
    `reconcile_groups_removed`). Nothing while its entries are being read at connect: what
    it should hold is not known before they are (the next read judges its groups)."""
    if programmer.unread(dpid):
        return []
    prefix = programmer.group_prefix

    def where(label: int) -> tuple[int, int, str] | None:
        dbid = programmer.dbid_of(label)
        host = None if dbid is None else programmer.topology.hosts.get(dbid)
        return None if host is None else (host.dpid, host.port, host.mac)

    def stale_if(g: SwitchGroup) -> bool:
        return ours(g.group_id, prefix) or legacy(
            dpid, g, where, lambda dbid: dbid in programmer.labels)

    again, stale = repair(dpid, found, programmer.groups.held(dpid),
                          named(programmer.reconciler.held(dpid), prefix), stale_if)
    counters["reconcile_group_runs"] += 1
    counters["reconcile_groups_added"] += len(again)
    counters["reconcile_groups_removed"] += len(stale)
    return [*again, *stale]

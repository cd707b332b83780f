"""A switch's groups read back and repaired (controller/dataplane/groupaudit.py), over fake
switches on Figure 2 with failover on svc1: a stale group of ours that no entry names is
deleted, a group an entry we keep names is kept, a wanted group missing or changed is sent
again, another application's group is never touched (even inside 32-131,071, where our ids
were before they carried a prefix); and a controller restarted with failover
turned off leaves no group of ours while every flow keeps its instance.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from apps.store import Store
from controller.dataplane.failover import DEFAULT_GROUP_PREFIX, group_ids
from controller.dataplane.groupaudit import (
    SwitchGroup,
    bucket_of,
    groups_read,
    ours,
)
from controller.intents import GroupBucket, GroupMod, Output, SetField
from controller.network.packet import TCP_SYN
from controller.views import stats_view
from tests.test_failover import MODES, _figure2, _port_down, _served
from tests.test_pipelines import ATTACHED_PORT, E21, E31, FLOWS, Figure2, connect, to_dsid
from tests.test_reconcile import reconcile, rediscover, restart

R2 = ATTACHED_PORT[E21][0]  # e21's switch: holds e21's two groups
# another application's groups: below, inside and above 32-131,071 (the unprefixed ids of
# processes before 2026-12), and one with the prefix after ours
FOREIGN = (7, 40, 100, 131_071, 200_000, (DEFAULT_GROUP_PREFIX + 1) << 24 | 74)
STALE_LABEL = 999  # a label no instance has: its groups are an earlier process's


def _held(fig: Figure2, dpid: int) -> list[SwitchGroup]:
    """A fake switch's groups as the shell reads them (group descriptions)."""
    return [SwitchGroup(g.group_id, True, tuple(bucket_of(b) for b in g.buckets))
            for g in fig.net.switch(dpid).groups.values()]


def _read_groups(fig: Figure2, dpid: int) -> None:
    """The shell read the switch's groups: the core repairs them."""
    fig.apply(groups_read(fig.core.programmer, fig.core.counters, dpid, _held(fig, dpid)))


def _ids(label: int) -> tuple[int, int]:
    """A label's two group ids at the default prefix."""
    return group_ids(label, DEFAULT_GROUP_PREFIX)


def _ours(fig: Figure2, dpid: int) -> set[int]:
    return {gid for gid in fig.net.switch(dpid).groups
            if ours(gid, fig.core.programmer.group_prefix)}


def _put(fig: Figure2, dpid: int, group_id: int) -> None:
    """A group put into a switch behind the controller's back (one bucket out of port 1)."""
    fig.net.switch(dpid).apply_group(GroupMod(dpid, group_id, (GroupBucket(1, (Output(1),)),)))


def _on_e21_fail_over(fig: Figure2, placed: dict[int, str]) -> None:
    """e21's link down: every flow placed on e21 reaches e31 (the groups work); then up."""
    on_e21 = [s for s, dbid in placed.items() if dbid == E21]
    assert on_e21
    _port_down(fig, E21)
    assert {_served(fig, "c1", s, TCP_SYN) for s in on_e21} == {E31}
    fig.net.switch(R2).down.clear()


def test_ours_are_every_labels_two_groups_under_the_prefix() -> None:
    """Dyncast's group ids are prefix << 24 | 2L (+1) for labels 16 to 65,535: nothing else,
    in particular not the unprefixed 2L ids nor another prefix's."""
    assert _ids(16) == (0xD5000020, 0xD5000021) and _ids(65_535)[1] == 0xD501FFFF
    assert all(ours(g, DEFAULT_GROUP_PREFIX) for g in (*_ids(16), *_ids(65_535)))
    assert not any(ours(g, DEFAULT_GROUP_PREFIX) for g in (
        0, 31, *FOREIGN, *group_ids(16, 0), 0xD5000000 | 31, 0xD5020000, 0xFFFFFF00))


@pytest.mark.parametrize("mode", MODES)
def test_a_stale_group_is_deleted_and_a_foreign_one_left_alone(mode: str) -> None:
    """A group of ours no entry names (an earlier process's) is deleted; other applications'
    groups, below and above our range, stay; the wanted groups stay and still fail over."""
    fig = _figure2(mode)
    placed = connect(fig, FLOWS)
    wanted = _ours(fig, R2)
    assert len(wanted) == 2, wanted
    stale = _ids(STALE_LABEL)
    for gid in (*stale, *FOREIGN):
        _put(fig, R2, gid)
    _read_groups(fig, R2)
    assert set(fig.net.switch(R2).groups) == wanted | set(FOREIGN)
    stats = stats_view(fig.core)
    assert (stats["reconcile_groups_removed"], stats["reconcile_groups_added"]) == (2, 0)
    assert not set(stale) & set(fig.net.switch(R2).groups)
    _read_groups(fig, R2)  # in step: nothing more
    assert stats_view(fig.core)["reconcile_groups_removed"] == 2
    _on_e21_fail_over(fig, placed)


@pytest.mark.parametrize("mode", MODES)
def test_a_wanted_group_missing_or_changed_is_sent_again(mode: str) -> None:
    """One of e21's groups lost, the other's buckets changed behind our back: both are sent
    again as wanted, and the flows fail over again."""
    fig = _figure2(mode)
    placed = connect(fig, FLOWS)
    plain, back_in = sorted(_ours(fig, R2))
    sw = fig.net.switch(R2)
    del sw.groups[plain]  # (the fake keeps the entries naming it)
    changed = sw.groups[back_in]
    sw.groups[back_in] = dataclasses.replace(changed, buckets=changed.buckets[:1])
    _read_groups(fig, R2)
    assert sw.groups[back_in] == changed and plain in sw.groups
    assert stats_view(fig.core)["reconcile_groups_added"] == 2
    _on_e21_fail_over(fig, placed)


@pytest.mark.parametrize("mode", MODES)
def test_a_group_a_kept_entry_names_is_kept(mode: str, tmp_path: Path) -> None:
    """Restarted with failover on, before the instances are located again: the groups are not
    wanted yet (the entries are held as found) but the entries name them, so none is deleted
    and the switch still fails over; once programmed they are wanted again."""
    fig = _figure2(mode)
    placed = connect(fig, FLOWS)
    before = {d: _ours(fig, d) for d in fig.net.switches}
    restart(fig, Store(f"sqlite:///{tmp_path / 'dyncast.db'}"), after=1.0)
    for dpid in fig.net.switches:
        _read_groups(fig, dpid)
    assert {d: _ours(fig, d) for d in fig.net.switches} == before
    assert stats_view(fig.core)["reconcile_groups_removed"] == 0
    _on_e21_fail_over(fig, placed)
    rediscover(fig)
    for dpid in fig.net.switches:
        _read_groups(fig, dpid)
    assert {d: _ours(fig, d) for d in fig.net.switches} == before
    _on_e21_fail_over(fig, placed)


@pytest.mark.parametrize("mode", MODES)
def test_restarted_with_failover_off_no_group_of_ours_is_left(mode: str,
                                                               tmp_path: Path) -> None:
    """Stopped with failover on, started with it off: after the switches are read (entries,
    then groups) no switch holds a group of ours, the flows keep their instances, a down port
    now drops e21's flows' packets (nothing sends them to a backup nobody updates), and the
    foreign groups survive."""
    fig = _figure2(mode)
    placed = connect(fig, FLOWS)
    assert _ours(fig, R2)
    for gid in FOREIGN:
        _put(fig, R2, gid)
    fig.svc = dataclasses.replace(fig.svc, failover=False)
    restart(fig, Store(f"sqlite:///{tmp_path / 'dyncast.db'}"), after=1.0)
    assert {s: fig.go(s)[0] for s in FLOWS} == placed
    rediscover(fig)
    for dpid in sorted(fig.net.switches):
        reconcile(fig, dpid)
        _read_groups(fig, dpid)
    assert not any(_ours(fig, d) for d in fig.net.switches), {
        d: _ours(fig, d) for d in fig.net.switches}
    assert set(FOREIGN) <= set(fig.net.switch(R2).groups)
    assert stats_view(fig.core)["reconcile_groups_removed"] == 4  # e21's at r2, e31's at r3
    assert {s: fig.go(s)[0] for s in FLOWS} == placed
    _port_down(fig, E21)
    on_e21 = [s for s, dbid in placed.items() if dbid == E21]
    assert not any(fig.send("c1", to_dsid("c1", s, TCP_SYN)).outputs for s in on_e21)


def test_nothing_is_judged_while_the_entries_are_being_read() -> None:
    """At connect, before the switch's entries are read, what it should hold is unknown: its
    groups are left as they are (the next read judges them)."""
    fig = _figure2("bucket")
    connect(fig, FLOWS)
    wanted = _ours(fig, R2)
    fig.apply(fig.core.switch_connected(R2, reads_table=True))
    _put(fig, R2, _ids(STALE_LABEL)[0])
    assert groups_read(fig.core.programmer, fig.core.counters, R2, _held(fig, R2)) == []
    assert _ours(fig, R2) == wanted | {_ids(STALE_LABEL)[0]}


def test_bucket_spelling_matches_a_read_bucket() -> None:
    """A wanted bucket and the same bucket read back compare equal (MAC case aside)."""
    b = GroupBucket(3, (SetField("eth_dst", "00:00:00:00:00:AA"), Output(3)))
    assert bucket_of(b) == (3, (("eth_dst", "00:00:00:00:00:aa"), ("output", 3)))

"""Dyncast's group ids carry a prefix ([dataplane] `group_id_prefix`, dataplane/failover.py),
so that a switch shared with other applications keeps theirs: over fake switches on Figure 2
with failover on svc1, a non-default prefix is used for every group made and recognised; a
bad prefix is refused naming the key; and a controller upgraded from one that numbered its
groups 2L and 2L+1 without a prefix moves every entry to the new ids, keeps the old groups
while adopted entries may name them, then deletes them (and only groups of their shape).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import pytest

import tests.test_pipelines
from apps.store import Store
from controller.config import ControllerConfig, config_from_dict, config_from_toml
from controller.dataplane.failover import DEFAULT_GROUP_PREFIX, group_ids, label_of_group
from controller.dataplane.groupaudit import SwitchGroup, bucket_of, legacy
from controller.errors import ConfigError, ValidationError
from controller.intents import PORT_IN, Group
from controller.network.packet import BROADCAST
from controller.reload import plan
from controller.views import stats_view
from tests.test_failover import MODES, _figure2
from tests.test_group_reconcile import R2, _on_e21_fail_over, _put, _read_groups
from tests.test_pipelines import E21, E31, FLOWS, Figure2, arp, connect
from tests.test_reconcile import rediscover, restart

OTHER = 0x42  # a prefix other than the default
FOREIGN = (7, 40, 100)  # another application's groups, inside the old unprefixed range too


def _with_prefix(monkeypatch: pytest.MonkeyPatch, where: object, prefix: int) -> None:
    """Cores made by `where` (tests.test_pipelines: Figure2; tests.test_reconcile: restart)
    run with `prefix` (0: the unprefixed ids of processes before 2026-12, which the config
    refuses)."""
    monkeypatch.setattr(where, "ControllerConfig",
                        functools.partial(ControllerConfig, group_id_prefix=prefix))


def _groups(fig: Figure2) -> dict[int, set[int]]:
    return {d: set(sw.groups) for d, sw in fig.net.switches.items() if sw.groups}


def _named(fig: Figure2) -> set[int]:
    """The groups the switches' entries name."""
    return {a.group_id for sw in fig.net.switches.values() for fm in sw.entries()
            for a in fm.actions if isinstance(a, Group)}


def _labels(fig: Figure2, prefix: int) -> set[int]:
    """The groups of e21 and e31 (each at its own switch) at `prefix`."""
    p = fig.core.programmer
    return {*group_ids(p.label(E21), prefix), *group_ids(p.label(E31), prefix)}


@pytest.mark.parametrize("label", [16, 17, 4_000, 65_535])
@pytest.mark.parametrize("prefix", [1, DEFAULT_GROUP_PREFIX, OTHER, 0xFE])
def test_group_ids_round_trip_at_any_prefix(prefix: int, label: int) -> None:
    """Both groups of a label read back as that label at their prefix, and as none at
    another prefix; every id stays below OpenFlow's reserved ids (0xffffff00 and up)."""
    plain, back_in = group_ids(label, prefix)
    assert (plain >> 24, back_in - plain, plain & 1) == (prefix, 1, 0)
    assert label_of_group(plain, prefix) == label_of_group(back_in, prefix) == label
    assert label_of_group(plain, prefix ^ 1) is None and label_of_group(plain, 0) is None
    assert back_in < 0xFFFFFF00
    assert label_of_group(prefix << 24 | 31, prefix) is None  # under the first label


@pytest.mark.parametrize("mode", MODES)
def test_a_non_default_prefix_is_used_for_every_group(mode: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Configured with prefix 0x42: the switches hold e21's and e31's groups at 0x42 and their
    entries name them, the flows fail over; a read deletes a stale 0x42 group and leaves the
    default prefix's group and other applications' alone."""
    _with_prefix(monkeypatch, tests.test_pipelines, OTHER)
    fig = _figure2(mode)
    placed = connect(fig, FLOWS)
    assert fig.core.programmer.group_prefix == OTHER
    assert set().union(*_groups(fig).values()) == _labels(fig, OTHER) == _named(fig)
    stale, default = group_ids(999, OTHER)[0], group_ids(999, DEFAULT_GROUP_PREFIX)[0]
    for gid in (stale, default, *FOREIGN):
        _put(fig, R2, gid)
    _read_groups(fig, R2)
    assert stale not in fig.net.switch(R2).groups
    assert {default, *FOREIGN} <= set(fig.net.switch(R2).groups)
    assert stats_view(fig.core)["reconcile_groups_removed"] == 1
    _on_e21_fail_over(fig, placed)


@pytest.mark.parametrize("value", [0, 0xFF, 256, -1, True, "0xD5", 1.5])
def test_a_bad_prefix_is_refused_naming_the_key(value: object) -> None:
    """0 (other applications' low ids), 0xFF (OFPG_MAX, ALL, ANY), out of 8 bits, or not an
    integer: refused, naming dataplane.group_id_prefix."""
    with pytest.raises(ValidationError) as err:
        config_from_dict({"dataplane": {"group_id_prefix": value}})
    assert err.value.field == "dataplane.group_id_prefix"


def test_the_prefix_is_read_from_the_file_and_needs_a_restart() -> None:
    """The default is 0xD5, a TOML hex value is read, a bad one names the file and the key, and
    a reload that changes it says a restart is needed (running groups keep their ids)."""
    assert config_from_dict({}).group_id_prefix == DEFAULT_GROUP_PREFIX == 0xD5
    cfg = config_from_toml("[dataplane]\ngroup_id_prefix = 0x42\n", "d.toml")
    assert cfg.group_id_prefix == OTHER
    with pytest.raises(ConfigError, match=r"d\.toml.*dataplane\.group_id_prefix.*0xfe"):
        config_from_toml("[dataplane]\ngroup_id_prefix = 0xFF\n", "d.toml")
    p = plan(config_from_dict({}), cfg, {})
    assert p.restart_required == ("dataplane.group_id_prefix",)
    assert p.config.group_id_prefix == DEFAULT_GROUP_PREFIX


@pytest.mark.parametrize("mode", MODES)
def test_an_upgrade_moves_entries_to_the_new_ids_then_deletes_the_old_groups(
        mode: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A process numbering groups 2L, 2L+1 (no prefix) is replaced by one with the default
    prefix. While the adopted entries are held as found (e21 located again, e31 not yet), the
    old groups are kept: an adopted entry may name them, and the flows still fail over. Once
    programmed, the entries name the new groups and the next read deletes the old ones, but not
    another application's groups inside the old range."""
    _with_prefix(monkeypatch, tests.test_pipelines, 0)
    fig = _figure2(mode)
    placed = connect(fig, FLOWS)
    old = _labels(fig, 0)
    assert set().union(*_groups(fig).values()) == old
    for gid in FOREIGN:
        _put(fig, R2, gid)
    restart(fig, Store(f"sqlite:///{tmp_path / 'dyncast.db'}"), after=1.0)
    fig.apply(fig.core.tick(fig.now))  # the links; then only e21 is seen again
    fig.send("e21", arp("00:00:00:00:00:21", E21, BROADCAST, "10.0.0.254"))
    assert E21 in fig.core.topology.hosts and E31 not in fig.core.topology.hosts
    for dpid in fig.net.switches:
        _read_groups(fig, dpid)
    assert set().union(*_groups(fig).values()) == old | set(FOREIGN)
    _on_e21_fail_over(fig, placed)
    rediscover(fig)
    new = _labels(fig, DEFAULT_GROUP_PREFIX)
    assert _named(fig) == new and not new & old
    for dpid in fig.net.switches:
        _read_groups(fig, dpid)
    assert set().union(*_groups(fig).values()) == new | set(FOREIGN)
    assert stats_view(fig.core)["reconcile_groups_removed"] == 4
    assert {s: fig.go(s)[0] for s in FLOWS} == placed
    _on_e21_fail_over(fig, placed)


def _shaped(fig: Figure2) -> SwitchGroup:
    """e21's first group as the process before 2026-12 made it (label 2L, no prefix)."""
    (wanted,) = [g for g in fig.core.programmer.groups.held(R2) if g.group_id & 1 == 0]
    return SwitchGroup(wanted.group_id & 0xFFFFFF, True,
                       tuple(bucket_of(b) for b in wanted.buckets))


def test_only_a_group_of_the_old_shape_is_taken_for_an_old_one_of_ours() -> None:
    """An unprefixed group is ours to delete only with the shape ours had at that switch:
    fast-failover, bucket 1 watching and reaching label L's instance there, bucket 2 rewriting
    to an instance we know and leaving by its watch port (in_port for 2L+1)."""
    fig = _figure2("bucket")
    connect(fig, FLOWS)
    p = fig.core.programmer
    g = _shaped(fig)
    host = fig.core.topology.hosts[E21]

    def where(label: int) -> tuple[int, int, str] | None:
        return (host.dpid, host.port, host.mac) if label == p.label(E21) else None

    def judge(group: SwitchGroup, dpid: int = R2) -> bool:
        return legacy(dpid, group, where, lambda dbid: dbid in p.labels)

    (watch, first), (backup, second) = g.buckets
    odd = dataclasses.replace(g, group_id=g.group_id | 1, buckets=(
        g.buckets[0], (backup, (*second[:2], ("output", PORT_IN)))))
    assert judge(g) and judge(odd)
    assert not judge(g, dpid=3)  # label L's instance is not at that switch
    assert not judge(dataclasses.replace(g, group_id=g.group_id | 1))  # 2L+1 out of Q
    assert not judge(dataclasses.replace(g, fast_failover=False))
    assert not judge(dataclasses.replace(g, buckets=g.buckets[:1]))
    elsewhere = (watch + 1, (first[0], ("output", watch + 1)))  # not the instance's port
    assert not judge(dataclasses.replace(g, buckets=(elsewhere, g.buckets[1])))
    assert not judge(dataclasses.replace(g, buckets=((watch, (("eth_dst", "02:00:00:00:00:09"),
                                                               first[1])), g.buckets[1])))
    assert not judge(dataclasses.replace(g, buckets=(g.buckets[0], (backup, (
        ("ipv4_dst", "10.9.9.9"), *second[1:])))))  # rewrites to no instance we know
    assert not judge(dataclasses.replace(g, group_id=g.group_id + 2))  # another label's id
    assert not judge(dataclasses.replace(g, group_id=g.group_id | DEFAULT_GROUP_PREFIX << 24))

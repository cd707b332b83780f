"""apps/gcpause.py: what survives a full collection is frozen, cycles made later are still
collected, and every `walk_s` the frozen objects go back to the collector for one full walk
that frees the cycles among them."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from apps import gcpause


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def pauses() -> Iterator[tuple[gcpause.GcPauses, Clock]]:
    gc.unfreeze()
    clock = Clock()
    watch = gcpause.GcPauses(clock, rss=lambda: 0)  # RSS unknown: walks by time only
    watch.install()
    watch.install()  # once only
    try:
        yield watch, clock
    finally:
        watch.uninstall()
        gc.unfreeze()


def test_survivors_of_a_full_collection_are_frozen_and_new_cycles_still_freed(
        pauses: tuple[gcpause.GcPauses, Clock]) -> None:
    watch, clock = pauses
    assert gc.callbacks.count(watch._callback) == 1
    kept = [[i] for i in range(10_000)]
    full = watch.full  # (making them may have run a full collection of its own)
    clock.t = 1.0
    gc.collect()
    assert watch.full == full + 1 and gc.get_freeze_count() >= len(kept)
    frozen = gc.get_freeze_count()
    Cycle()  # garbage made after the freeze: a full collection frees it
    assert gc.collect() >= 1
    assert gc.get_freeze_count() >= frozen  # and what is frozen stays so
    gc.collect(0)  # a young collection freezes nothing
    assert watch.full == full + 2


def test_frozen_objects_go_back_to_the_collector_every_walk_interval(
        pauses: tuple[gcpause.GcPauses, Clock]) -> None:
    watch, clock = pauses
    watch.freeze_young = False
    gc.collect()
    assert gc.get_freeze_count() > 0
    clock.t = watch.walk_s
    gc.collect()
    assert gc.get_freeze_count() == 0  # the next full collection walks everything again
    clock.t += 1.0
    gc.collect()
    assert gc.get_freeze_count() > 0
    assert watch.longest_s >= 0.0 and watch.full == 3 and watch.walks == 1
    assert watch.frozen == gc.get_freeze_count()


@pytest.mark.parametrize("young", [False, True])
def test_a_garbage_cycle_of_frozen_objects_is_freed_after_the_walk_interval(
        pauses: tuple[gcpause.GcPauses, Clock], young: bool) -> None:
    """A cycle frozen while alive, then dropped (an expired binding, a gone switch's state):
    kept while frozen, freed by the first full collection after `walk_s`, even with the
    generation-1 survivors frozen too (their freezing must not undo the unfreeze)."""
    watch, clock = pauses
    watch.freeze_young = young
    watch.walk_s = 600.0
    cycle = Cycle()
    gone = weakref.ref(cycle)
    gc.collect()  # survives: frozen
    del cycle
    for t in (1.0, 300.0, 599.0):
        clock.t = t
        gc.collect(1)
        gc.collect()
        assert gone() is not None  # frozen: never walked, never freed
    clock.t = 600.0
    gc.collect(1)  # a young collection in between freezes nothing now
    gc.collect()  # due: handed back
    gc.collect(1)
    gc.collect()  # the walk
    assert gone() is None
    assert watch.walks == 1 and gc.get_freeze_count() > 0  # what lives is frozen again
    clock.t = 601.0
    kept = Cycle()
    gc.collect()
    del kept
    gc.collect()
    assert watch.walks == 1  # the next walk only after another `walk_s`


def test_with_young_freezing_the_walk_still_comes_from_the_collectors_own_runs(
        pauses: tuple[gcpause.GcPauses, Clock]) -> None:
    """Freezing resets the counts that start a full collection, so with the generation-1
    survivors frozen no full collection ever starts by itself: the walk must be started after
    a generation-1 collection, and the collector's own next full collection frees the cycle."""
    watch, clock = pauses
    watch.freeze_young = True
    cycle = Cycle()
    gone = weakref.ref(cycle)
    gc.collect(1)  # frozen
    del cycle
    clock.t = watch.walk_s
    for _ in range(2_000_000):  # garbage cycles, as a busy controller makes: only the
        Cycle()  # collector's automatic collections run
        if watch.walks:
            break
    assert watch.walks == 1 and gone() is None


def test_after_a_walk_the_next_is_due_before_its_time_once_rss_doubled() -> None:
    """Memory bounded whatever the period: once a walk has set the base (not at start: the
    controller grows while switches and instances come), RSS twice that starts the next."""
    gc.unfreeze()
    rss, clock = Clock(), Clock()
    rss.t = 100e6
    watch = gcpause.GcPauses(clock, rss=rss)
    watch.freeze_young = True
    watch.install()
    try:
        rss.t = 300e6  # growth before any walk: nothing
        gc.collect(1)
        gc.collect()
        assert watch.walks == 0
        clock.t = watch.walk_s  # the first by time
        gc.collect(1)
        gc.collect()
        assert watch.walks == 1
        cycle = Cycle()
        gone = weakref.ref(cycle)
        gc.collect(1)
        del cycle
        rss.t = 590e6  # under twice 300 MB
        gc.collect(1)
        gc.collect()
        assert watch.walks == 1 and gone() is not None
        rss.t = 610e6
        gc.collect(1)  # due
        gc.collect()  # the walk
        assert watch.walks == 2 and gone() is None
    finally:
        watch.uninstall()
        gc.unfreeze()


def test_rss_is_read_from_proc_or_unknown() -> None:
    assert gcpause.rss_bytes() > 1e6


def test_a_long_collection_is_logged_only_when_asked_for(
        pauses: tuple[gcpause.GcPauses, Clock], caplog: pytest.LogCaptureFixture) -> None:
    """With the stall watch on, each collection at least `log_over_s` long is logged with
    its generation; shorter ones and, by default, all of them are not."""
    watch, clock = pauses
    cpu = Clock()
    watch.cpu = cpu

    def collection(generation: int, seconds: float) -> None:
        watch._callback("start", {"generation": generation})
        clock.t += seconds
        cpu.t += seconds / 5.0  # the process had a fifth of its CPU meanwhile
        watch._callback("stop", {"generation": generation, "collected": 3})

    with caplog.at_level("WARNING", logger="dyncast"):
        collection(1, 0.050)
        watch.log_over_s = 0.010
        collection(0, 0.004)
        collection(2, 0.025)
    logged = [r.getMessage() for r in caplog.records if "garbage collection" in r.getMessage()]
    assert logged == ["dyncast: garbage collection of generation 2 took 25.0 ms (5.0 ms CPU, "
                      "3 collected)"]


@pytest.mark.parametrize(("raw", "want"), [
    ("", ()), ("20000", (20000,)), (" 20000,20,30 ", (20000, 20, 30)),
    ("lots", ()), ("0", ()), ("1,2,3,4", ()), ("700,-1", ()), ("700,,10", ())])
def test_thresholds_are_read_from_the_environment_and_bad_ones_ignored(
        raw: str, want: tuple[int, ...], caplog: pytest.LogCaptureFixture) -> None:
    assert gcpause.thresholds_from_env({gcpause.ENV: raw}) == want
    assert ("DYNCAST_GC_THRESHOLD" in caplog.text) == (raw.strip() != "" and not want)


def test_thresholds_asked_for_are_the_ones_in_force_and_none_asked_changes_nothing() -> None:
    before = gc.get_threshold()
    try:
        assert gcpause.apply_thresholds({}) == before
        assert gc.get_threshold() == before
        assert gcpause.apply_thresholds({gcpause.ENV: "12345,7"}) == (12345, 7, before[2])
        assert gc.get_threshold() == (12345, 7, before[2])
    finally:
        gc.set_threshold(*before)


@pytest.mark.parametrize(("raw", "want", "warned"), [
    ("", True, False), ("1", True, False), (" 1 ", True, False), ("0", False, False),
    ("yes", True, True), ("off", True, True)])
def test_freezing_young_survivors_is_the_default_and_0_turns_it_off(
        raw: str, want: bool, warned: bool, caplog: pytest.LogCaptureFixture) -> None:
    assert gcpause.freeze_young_from_env({gcpause.FREEZE_ENV: raw}) is want
    assert gcpause.freeze_young_from_env({}) is True
    assert ("DYNCAST_GC_FREEZE_YOUNG" in caplog.text) is warned


def test_with_young_freezing_the_survivors_of_a_generation_1_collection_are_frozen(
        pauses: tuple[gcpause.GcPauses, Clock]) -> None:
    watch, _ = pauses
    watch.freeze_young = True
    kept = [[i] for i in range(100)]
    gc.collect(1)
    assert gc.get_freeze_count() >= len(kept)

"""The event-loop stall watch (apps/stallwatch.py): off unless asked for; a late beat is a stall,
logged with where the watcher's samples found the loop, and the longest one kept."""

from __future__ import annotations

import logging
import sys
import threading

import pytest

from apps import stallwatch
from apps.stallwatch import StallWatch, threshold_from_env


def test_the_threshold_comes_from_the_environment_and_is_off_by_default(
        caplog: pytest.LogCaptureFixture) -> None:
    assert threshold_from_env({}) == 0.0
    assert threshold_from_env({"DYNCAST_STALL_MS": "50"}) == 0.05
    assert threshold_from_env({"DYNCAST_STALL_MS": "-3"}) == 0.0
    with caplog.at_level(logging.WARNING, "dyncast"):
        assert threshold_from_env({"DYNCAST_STALL_MS": "fast"}) == 0.0
    assert "DYNCAST_STALL_MS" in caplog.text


def _busy_here(watch: StallWatch, now: float) -> bool:
    return watch.sample(now)


def test_a_late_beat_is_logged_with_the_samples_and_the_longest_is_kept(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = [100.0]
    cpu = [7.0]
    watch = StallWatch(0.05, clock=lambda: clock[0], cpu=lambda: cpu[0])
    watch._loop_ident = threading.get_ident()  # this thread plays the event loop
    assert not watch.sample(100.03)  # not late yet: no sample
    assert _busy_here(watch, 100.2) and _busy_here(watch, 100.25)
    with caplog.at_level(logging.WARNING, "dyncast"):
        assert watch.stalled(100.01 + watch.beat_s) == 0.0  # on time: nothing logged
        assert caplog.text == ""
        assert _busy_here(watch, 100.2)
        cpu[0] += 0.12  # the loop ran 120 ms of the stall
        late = watch.stalled(100.31 + watch.beat_s)
    assert late == pytest.approx(0.3 - watch.beat_s)  # 0.3 s between beats, one beat late
    assert watch.stalls == 1 and watch.longest_s == pytest.approx(0.29)
    assert "stalled 290 ms (120 ms CPU, 1 samples)" in caplog.text and "_busy_here" in caplog.text
    assert watch.stalled(100.32 + watch.beat_s) == 0.0 and watch.longest_s == pytest.approx(0.29)


def test_the_watcher_thread_samples_a_loop_that_holds_on(
        caplog: pytest.LogCaptureFixture) -> None:
    """Real threads: the loop (this thread) spins 150 ms without a beat; the watcher's samples
    name the spinning function."""
    watch = StallWatch(0.03)
    watch._loop_ident = threading.get_ident()
    thread = threading.Thread(target=watch._watch, daemon=True)
    watch._last = watch.clock()
    thread.start()

    def spin(seconds: float) -> None:
        end = watch.clock() + seconds
        while watch.clock() < end:
            pass

    spin(0.15)
    with caplog.at_level(logging.WARNING, "dyncast"):
        late = watch.stalled(watch.clock())
    assert late > 0.1 and "in spin" not in caplog.text  # steps read "file:line fn"
    assert " spin < " in caplog.text, caplog.text
    assert sys.modules[stallwatch.__name__] is stallwatch

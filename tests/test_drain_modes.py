"""Drains where the switches hold the flows (learn, bucket): what proves a drain over, what a
deadline deletes, and the shell's affinity-table reads that feed it (controller/dataplane/
drains.py). Packets run through the fake switches of tests/test_pipelines.py."""

from __future__ import annotations

import pytest

from apps.flowread import MAX_POLLS, Polls
from bench import ofgen
from controller.dataplane.drains import READ_MARGIN_S
from controller.intents import TABLE_AFFINITY
from controller.views import stats_view
from tests.fakes import FRAMEWORKS, FakeDatapath
from tests.test_app_smoke import Shell, shell  # noqa: F401 - the fixture, used by name
from tests.test_pipelines import E21, E31, FLOWS, IDLE_S, SERVICES, Figure2, connect

SWITCH_HELD = ["learn", "bucket", "learn-overlay", "bucket-overlay"]


def _deactivated(mode: str, deadline_s: float | None = None) -> tuple[Figure2, list[int]]:
    """Figure 2 with connections open on both instances, then E21 deactivated."""
    fig = Figure2(SERVICES[mode])
    on_e21 = [s for s, d in connect(fig, FLOWS).items() if d == E21]
    assert on_e21
    fig.apply(fig.core.deactivate(E21, deadline_s, fig.now)[1])
    return fig, on_e21


def _read_all(fig: Figure2, at: float | None) -> None:
    """Every switch's affinity table read back, asked at `at`."""
    for dpid, sw in sorted(fig.net.switches.items()):
        fig.core.learned_entries(dpid, sw.flow_stats(TABLE_AFFINITY, fig.now), at)


def _quiet(fig: Figure2, seconds: float) -> None:
    """Time passes with no traffic and no table reads (entries idle out unseen)."""
    end = fig.now + seconds
    while fig.now < end:
        fig.now = min(end, fig.now + 1.0)
        fig.report()
        fig.apply(fig.core.tick(fig.now))
        fig.apply([])


@pytest.mark.parametrize("mode", SWITCH_HELD)
def test_switch_held_flows_keep_a_retiring_instance_running(mode: str) -> None:
    """While the switches hold entries of live flows to it, a retiring instance is not
    stopped; each read counts them."""
    fig, on_e21 = _deactivated(mode)
    inst = fig.core.catalogue.instances[E21]
    for _ in range(3):
        fig.advance(fig.now + 1)
        assert all(fig.go(s)[0] == E21 for s in on_e21)
    fig.advance(fig.now + 1)
    assert fig.core.drains.reached(E21)
    held = fig.core.drains.switch_held(inst)
    assert held is not None and held >= len(on_e21)


@pytest.mark.parametrize("mode", ["learn", "bucket"])
def test_a_read_asked_before_the_drain_or_at_an_unknown_time_proves_nothing(mode: str) -> None:
    """Empty tables read with a request time before the drain (+ margin), or unknown, do not
    let the D-MA stop the instance; one asked after it does."""
    fig, _ = _deactivated(mode)
    began = fig.core.catalogue.instances[E21].state_since
    _quiet(fig, IDLE_S + 3)  # the flows idled out, their entries are gone, the moves over
    _read_all(fig, began + READ_MARGIN_S - 0.1)
    fig.apply(fig.core.tick(fig.now))
    assert stats_view(fig.core).get("deactivations", 0) == 0
    _read_all(fig, None)
    fig.apply(fig.core.tick(fig.now))
    assert stats_view(fig.core).get("deactivations", 0) == 0
    _read_all(fig, fig.now)
    fig.apply(fig.core.tick(fig.now))
    assert stats_view(fig.core)["deactivations"] == 1


def test_a_bucket_still_moving_away_keeps_the_instance_reached() -> None:
    """bucket: until its move ends, a bucket that left the instance pins every flow it sees
    to it, so the instance is reached even when no pin is in the tables yet."""
    fig, _ = _deactivated("bucket")
    _read_all(fig, fig.now + READ_MARGIN_S)
    assert fig.core.programmer.moving_from(E21)
    assert fig.core.drains.reached(E21)


@pytest.mark.parametrize("mode", SWITCH_HELD)
def test_deadline_deletes_the_switch_held_entries_then_the_instance_is_stopped(mode: str) -> None:
    """At the deadline every live flow on the instance moves to the live one at its next
    packet, the moves are counted, and the D-MA is told to stop the instance soon after."""
    fig, on_e21 = _deactivated(mode, deadline_s=3.0)
    for _ in range(2):
        fig.advance(fig.now + 1)
        assert all(fig.go(s)[0] == E21 for s in on_e21)
    assert stats_view(fig.core).get("deactivations", 0) == 0
    fig.advance(fig.now + 2)  # past the deadline
    assert not fig.core.programmer.moving_from(E21)
    assert stats_view(fig.core)["drain_deadline_moves"] >= len(on_e21)
    assert all(fig.go(s)[0] == E31 for s in on_e21)
    fig.advance(fig.now + 2)
    assert stats_view(fig.core)["deactivations"] == 1
    assert all(fig.go(s)[0] == E31 for s in on_e21)


def test_polls_remember_when_each_read_was_asked_and_forget_the_oldest() -> None:
    """An answer gives back its request's time once; unanswered requests are bounded."""
    if not FRAMEWORKS:
        pytest.skip("neither ryu nor os_ken is installed")
    dp = FakeDatapath(FRAMEWORKS[0])
    polls = Polls()
    first = polls.ask(dp, 5.0)
    assert polls.answered(first.xid) == 5.0 and polls.answered(first.xid) is None
    xids = [polls.ask(dp, float(i)).xid for i in range(MAX_POLLS + 10)]
    assert polls.answered(xids[0]) is None and polls.answered(xids[-1]) == MAX_POLLS + 9.0
    assert len(polls._asked) <= MAX_POLLS


def test_the_shell_hands_a_table_read_to_the_core_with_its_request_time(
        shell: Shell) -> None:  # noqa: F811 - the fixture
    """The affinity poll's answer reaches the core stamped with when it was asked."""
    shell.connect()
    req = shell.app._polls.ask(shell.dp, 1234.5)
    shell.dp.send_msg(req)
    shell.switch_says(ofgen.multipart_reply(req.xid, shell.dp.ofproto.OFPMP_FLOW))
    assert shell.app.core.drains._read_at[shell.dp.id] == 1234.5
    assert shell.app.core.programmer.learned[shell.dp.id] == []
    assert shell.app.core.counters["errors"] == 0


"""bench/control_plane.py refuses to measure a controller whose instances are not all attached
and decided, and a phase that lacks a figure fails the run."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bench.control_plane import Phase, missing, problems
from bench.control_plane_net import Layout

LAYOUT = Layout(6, switches=2, per_service=3)


def _state() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A controller's /instances and /decisions with every precondition holding."""
    insts = []
    for i in range(LAYOUT.instances):
        dbid, mac, s, _ = LAYOUT.instance(i)
        insts.append({"dbid": dbid, "state": "active",
                      "location": {"dpid": s + 1, "port": 1, "mac": mac}})
    rows = []
    for k in range(LAYOUT.services):
        mine = [LAYOUT.instance(i)[0] for i in range(LAYOUT.instances)
                if LAYOUT.instance(i)[3] == k]
        for s in range(LAYOUT.switches):
            rows.append({"service": LAYOUT.service(k)[0], "ingress": s + 1,
                         "candidates": [{"dbid": d, "share": 1 / len(mine), "network_ms": 1.0}
                                        for d in mine]})
    return insts, rows


def test_a_controller_with_everything_attached_and_decided_passes() -> None:
    """The reference state has no problem."""
    assert problems(LAYOUT, *_state()) == []


def test_an_unattached_or_missing_instance_is_a_problem() -> None:
    """An instance with no location, at the wrong switch, or not registered at all."""
    insts, rows = _state()
    unplaced = copy.deepcopy(insts)
    unplaced[0]["location"] = None
    assert any("not attached" in p for p in problems(LAYOUT, unplaced, rows))
    moved = copy.deepcopy(insts)
    moved[1]["location"]["dpid"] = 2 if moved[1]["location"]["dpid"] == 1 else 1
    assert any("not attached" in p for p in problems(LAYOUT, moved, rows))
    assert any("5 of 6 instances" in p for p in problems(LAYOUT, insts[1:], rows))


def test_a_decision_without_a_share_or_a_path_is_a_problem() -> None:
    """A decision giving nobody a share, a missing decision, a candidate with no path."""
    insts, rows = _state()
    noshare = copy.deepcopy(rows)
    for c in noshare[0]["candidates"]:
        c["share"] = 0.0
    assert any("without a share" in p for p in problems(LAYOUT, insts, noshare))
    assert any("without a share" in p for p in problems(LAYOUT, insts, rows[1:]))
    nopath = copy.deepcopy(rows)
    nopath[2]["candidates"][0]["network_ms"] = None
    assert any("without a path" in p for p in problems(LAYOUT, insts, nopath))


def test_a_phase_missing_a_figure_fails() -> None:
    """No echo, no GET sample or no accepted report under load: the run fails."""
    full = Phase("batch", 6, seconds=1.0, target=100.0, accepted=100, echoes=5,
                 get_svc_s=[0.01], get_all_s=[0.02])
    assert missing(full) == []
    assert missing(Phase("idle", 6, echoes=5, get_svc_s=[0.01], get_all_s=[0.01])) == []
    assert missing(Phase("batch", 6, target=100.0, echoes=5, get_svc_s=[0.01],
                         get_all_s=[0.01])) == ["no accepted report measured"]
    assert "no echo measured" in missing(Phase("idle", 6, get_svc_s=[0.01], get_all_s=[0.01]))
    refused = copy.copy(full)
    refused.refused = 2
    assert missing(refused) == ["2 posts refused"]


def test_the_echo_figures_count_an_unanswered_echo_as_waiting() -> None:
    """An echo with no reply yet counts as late as it is now, both until the switches' thread
    read a reply and until its bytes reached the socket (the kernel's receive time)."""
    from bench.control_plane_net import Echoes
    echoes = Echoes(delays=[0.010], arrived=[0.008], out={7: (100.0, 5000.0)})
    assert echoes.worst(100.004) == 0.010 and echoes.worst(100.5) == pytest.approx(0.5)
    assert echoes.worst_arrived(5000.002) == 0.008
    assert echoes.worst_arrived(5000.3) == pytest.approx(0.3)

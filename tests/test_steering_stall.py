"""The steering benchmark's stalled controller (bench/steering_stall.py): what it checks
before and after the stall, that it really stops and continues a process group, and the
failover verdict it writes."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from bench import steering_stall as st
from bench.steering import main

CONTROLLERS = """inactivity_probe    : []
status              : {sec_since_connect="24", state=ACTIVE}

inactivity_probe    : 3000
status              : {last_error="Connection refused", sec_since_connect="7", state=ACTIVE}
"""


def test_the_state_letter_is_read_after_a_command_name_with_spaces_and_brackets() -> None:
    assert st.proc_state("4242 (python3) T 1 4242 4242 0 -1") == "T"
    assert st.proc_state("17 (dyncast (mgr) x) S 1 17 17") == "S"


def test_the_probe_is_the_smallest_and_an_empty_one_is_the_default() -> None:
    assert st.probe_ms(CONTROLLERS) == 3000
    assert st.probe_ms("inactivity_probe    : []\n") == st.OVS_DEFAULT_PROBE_MS
    assert st.probe_ms("inactivity_probe    : 0\n") > 10**6  # probes off: no limit
    assert st.seconds_since_connect(CONTROLLERS) == [24, 7]


def test_a_stall_must_stay_under_the_inactivity_probe() -> None:
    assert st.check_stall(3.0, 5000) == ""
    assert "inactivity probe (5000 ms)" in st.check_stall(4.5, 5000)
    assert "must be > 0" in st.check_stall(0.0, 5000)


@pytest.mark.parametrize(("stopped", "resumed", "since", "elapsed", "why"), [
    ("T", "S", [30, 31], 20.0, ""),
    ("S", "S", [30], 20.0, "was not stopped"),
    ("T", "T", [30], 20.0, "did not run again"),
    ("T", "", [30], 20.0, "did not run again"),
    ("T", "R", [], 20.0, "no switch"),
    ("T", "S", [30, 12], 20.0, "reconnected"),
])
def test_the_stall_happened_as_meant_or_says_why_not(stopped: str, resumed: str,
                                                     since: list[int], elapsed: float,
                                                     why: str) -> None:
    problem = st.stall_problem(stopped, resumed, since, elapsed)
    assert (why in problem) if why else problem == ""


def test_a_stall_stops_the_process_group_and_continues_it() -> None:
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        stall = st.Stall(proc.pid, 0.6, [])
        stall.start()
        assert stall.wait() == "no switch reports a controller connection (ovs-vsctl list " \
            "Controller)"  # no bridges given: the states are what this test checks
        assert (stall.stopped, stall.resumed) == ("T", "S")
        assert st.state_of(proc.pid) == "S"
    finally:
        proc.kill()
        proc.wait()
    assert st.state_of(proc.pid) == ""


def _run(policy: str, errors: int, in_flight: int, reached: list[float | None]
         ) -> dict[str, Any]:
    return {"policy": policy, "errors": errors,
            "failure": {"new": {"in_flight_failed": in_flight},
                        "bound": {"reached_ms": reached}, "stall": {"stall_s": 3.0}}}


def test_the_verdict_compares_failover_with_the_controller_driven_move() -> None:
    met = st.verdict([_run("dyncast", 5, 1, [3012.0, None]),
                      _run("dyncast+failover", 2, 1, [0.4, 2.0])], 3.0)
    assert "1 against 4 (0.25x): target <= 0.5x met" in met[0]
    assert "within 2 ms, without 2 within never" in met[1] and met[1].endswith("met")
    missed = st.verdict([_run("dyncast", 2, 0, [3000.0]),
                         _run("dyncast+failover", 2, 0, [150.0])], 3.0)
    assert "**not met**" in missed[0] and "**not met**" in missed[1]
    assert st.verdict([_run("dyncast", 0, 0, [])], 3.0) == []


def test_the_stall_option_must_be_positive() -> None:
    with pytest.raises(SystemExit):
        main(["--controller-stall", "0"])


def test_the_notes_give_every_policys_stall_cost_from_the_runs() -> None:
    runs = [{**_run("dyncast", 5, 0, [3000.0]), "p95_ms": 3256.0, "loadavg": 6.2},
            {**_run("dyncast+failover", 0, 0, [2.0]), "p95_ms": 3621.0, "loadavg": 6.4}]
    runs[0]["failure"]["new"].update(disrupted=83, failed_after=5)
    runs[1]["failure"]["new"].update(disrupted=77, failed_after=0)
    (text,) = st.notes(runs, 3.0)
    assert "77-83 fresh requests" in text and "p95 is 3.3-3.6 s" in text
    assert "dyncast 5; dyncast+failover 0" in text and "6.2-6.4" in text
    assert st.notes([], 3.0) == []

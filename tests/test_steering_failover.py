"""The steering benchmark's failure kinds: policy names, what a failure did to the flows, and
the preconditions it checks (fast-failover groups on the sites' switches)."""

from __future__ import annotations

from typing import Any

import pytest

from bench import steering_failover as sf
from bench.steering import main
from bench.steering_net import figure2_bench, service_body

FAILED = "e2"  # the demo service answers with its host


def _fresh(t: float, ms: float | None, err_ms: float | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"t": t, "ms": ms, "inst": None if ms is None else "e4",
                         "err": None if ms is not None else "ConnectionRefusedError"}
    if err_ms is not None:
        r["err_ms"] = err_ms
    return r


def _ka(conn: int, seq: int, t: float, inst: str | None, ms: float | None = 10.0,
        err: str | None = None, err_ms: float | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"t": t, "conn": conn, "epoch": 0, "seq": seq, "inst": inst,
                         "ms": None if inst is None else ms, "err": err, "src": "c1"}
    if err_ms is not None:
        r["err_ms"] = err_ms
    return r


def test_a_failover_policy_name_is_the_policy_with_failover() -> None:
    assert sf.split_policy("dyncast+failover") == ("dyncast", True)
    assert sf.split_policy("p2c") == ("p2c", False)
    net = figure2_bench()
    assert service_body(net, "dyncast", True)["failover"] is True
    assert "failover" not in service_body(net, "dyncast")


def test_new_flows_count_failed_and_lost_syn_requests_after_the_failure_only() -> None:
    """A request that failed or took a SYN retransmission (>= 1 s) after the failure is
    disrupted; the same before the failure is the run's noise; slow but under 1 s is not."""
    records = [_fresh(6.0, 1200.0), _fresh(9.0, 150.0),  # before: one lost SYN
               _fresh(10.01, None, err_ms=3.0), _fresh(10.05, 1100.0), _fresh(10.2, 900.0),
               _fresh(12.0, 120.0), _fresh(16.0, None)]  # 16 s: outside the 5 s window
    new = sf.new_flows(records, fail_at=10.0)
    assert new == {"disrupted": 2, "disrupted_before": 1, "in_flight_failed": 0,
                   "share_failed": 0.4, "failed_after": 2,
                   "last_disrupted_ms": 50.0}
    assert sf.new_flows([_fresh(11.0, 100.0)], 10.0)["last_disrupted_ms"] is None


def test_bound_flows_are_the_connections_on_the_failed_instance_when_it_failed() -> None:
    """Connection 0 was on the failed instance: its first request after the failure was reset
    after 2 ms (it reached a live host), the next, 1 s later, answered in 20 ms. Connection 1
    was elsewhere; connection 2 was on it and its request timed out (went nowhere)."""
    records = [_ka(0, 0, 9.5, FAILED), _ka(0, 1, 10.5, None, err="ConnectionResetError",
                                            err_ms=2.0), _ka(0, 2, 11.5, "e4", 20.0),
               _ka(1, 0, 9.7, "e4"), _ka(1, 1, 10.7, "e4"),
               _ka(2, 0, 9.9, FAILED), _ka(2, 1, 10.9, None, err="TimeoutError: timed out",
                                           err_ms=10000.0)]
    bound = sf.bound_flows(records, 10.0, FAILED)
    assert bound == {"connections": 2, "in_flight": 0, "reached_ms": [2.0, None],
                     "served_ms": [1020.0, None]}
    in_flight = [_ka(3, 0, 9.0, FAILED), _ka(3, 1, 9.95, None, err="TimeoutError: timed out",
                                            err_ms=10000.0), _ka(3, 2, 20.0, "e4", 180.0)]
    bound = sf.bound_flows(records + in_flight, 10.0, FAILED)
    assert bound["connections"] == 3 and bound["in_flight"] == 1 and len(bound["reached_ms"]) == 2
    assert "reached max never" in sf.line(sf.summary(records, 10.0, FAILED))


def test_failover_groups_are_read_from_dump_groups() -> None:
    dump = ("OFPST_GROUP_DESC reply (OF1.3) (xid=0x2):\n"
            " group_id=20,type=ff,bucket=watch_port:3,actions=output:3\n"
            " group_id=21,type=ff,bucket=watch_port:3,actions=output:3\n"
            " group_id=7,type=select,bucket=actions=output:1\n")
    assert sf.ff_groups(dump) == [20, 21]
    assert sf.ff_groups("OFPST_GROUP_DESC reply (OF1.3) (xid=0x2):\n") == []


def test_the_groups_precondition_fails_when_a_switch_lacks_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With failover, two groups per site on its switch; without, none: otherwise a message
    naming the switch (the bench raises it), after the timeout."""
    net = figure2_bench()
    held: dict[str, list[Any]] = {"r1": [2, 3], "r2": [4, 5], "r3": []}
    monkeypatch.setattr(sf, "failover_groups", lambda sw: held[sw])
    monkeypatch.setattr(sf, "group_flows", lambda sw: held[sw])
    assert "'r3': []" in sf.wait_groups(net, True, timeout=0.0)
    held["r3"] = [6, 7]
    assert sf.wait_groups(net, True, timeout=0.0) == ""
    assert "r1" in sf.wait_groups(net, False, timeout=0.0)
    held.update(r1=[], r2=[], r3=[])
    assert sf.wait_groups(net, False, timeout=0.0) == ""
    # without failover, a group nothing sends to is reported too (left over, unused)
    monkeypatch.setattr(sf, "group_flows", lambda sw: [])
    held["r2"] = [4]
    assert "'r2': ['4']" in sf.wait_groups(net, False, timeout=0.0)


def test_fail_kind_is_checked_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--fail-kind", "cable", "--report-only"])
    assert "--fail-kind" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--policies", "dyncast+backup", "--report-only"])


def test_share_on_counts_the_answered_new_flows_an_instance_served_in_the_window() -> None:
    records = [_fresh(7.5, 100.0), _fresh(8.0, 100.0), _fresh(9.0, None), _fresh(12.0, 50.0),
               {**_fresh(8.5, 90.0), "inst": FAILED}, _ka(0, 0, 8.2, FAILED)]
    assert sf.share_on(records, FAILED, 7.0, 10.0) == pytest.approx(1 / 3, abs=1e-3)
    assert sf.share_on(records, FAILED, 20.0, 30.0) is None


def _run(policy: str, errors: int, reached: list[float | None], last: float | None) -> dict:
    return {"policy": policy, "requests": 400, "errors": errors, "p95_ms": 300.0,
            "failure": {"kind": "link", "fail_at_s": 11.3, "share_before": 0.5,
                        "new": {"disrupted": 1, "disrupted_before": 0, "failed_after": errors,
                                "last_disrupted_ms": last},
                        "bound": {"connections": len(reached), "reached_ms": reached,
                                  "served_ms": reached}}}


def test_the_verdict_holds_failover_to_half_the_failures_and_100_ms() -> None:
    """Met: 2 failed against 10, every bound connection back within 100 ms; not met: one
    that timed out, or 6 against 10."""
    good = [_run("dyncast+failover", 2, [3.0, 40.0], 20.0), _run("dyncast", 10, [900.0], 500.0)]
    text = "\n".join(sf.verdict(good))
    assert "0.20x" in text and "**not met**" not in text and "trivially" not in text
    late = [_run("dyncast+failover", 6, [3.0, None], 20.0), _run("dyncast", 10, [900.0], 5.0)]
    assert "\n".join(sf.verdict(late)).count("**not met**") == 2
    section = "\n".join(sf.failover_section({"link": {"runs": good, "settings": "s",
                                                      "networks": ["figure2"]}}))
    assert "--fail-kind link --tag failover-link" in section
    assert "| dyncast+failover | 400" in section
    assert sf.verdict([good[1]]) == []
    none = [_run("dyncast+failover", 0, [1.0], None), _run("dyncast", 1, [2.0], None)]
    none[1]["failure"]["new"]["in_flight_failed"] = 1
    assert "only trivially" in "\n".join(sf.verdict(none))


def test_a_request_in_flight_when_its_instance_failed_is_counted_apart() -> None:
    """Started before the failure and failed after it (its answer was lost on the way):
    in flight; failed before the failure: not."""
    records = [_fresh(9.9, None, err_ms=5000.0), _fresh(9.0, None, err_ms=10.0),
               _fresh(9.95, 100.0)]
    assert sf.new_flows(records, 10.0)["in_flight_failed"] == 1


def test_the_process_section_sets_each_policys_failures_beside_its_share() -> None:
    runs = [_run("dyncast", 30, [], None), _run("p2c", 20, [], None)]
    text = "\n".join(sf.failover_section({"process": {"runs": runs, "settings": "s",
                                                         "networks": ["figure2"]}}))
    assert "dyncast 30 after, share 0.5 before, None after; p2c 20 after" in text
    assert "--fail-kind process --tag failover-process" in text and "targets" not in text


def test_a_killed_site_loses_its_dma_and_service_before_either_is_reaped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed and reaped one at a time, the D-MA could see its service gone and report it not
    serving before its own death: the failure would be detected in some runs and not others."""
    from bench import steering

    events: list[str] = []

    class Popen:
        def __init__(self, pid: int) -> None:
            self.pid = pid

        def poll(self) -> None:
            return None

        def wait(self, timeout: float) -> int:
            events.append(f"reap {self.pid}")
            return -9

    class Proc:
        def __init__(self, pid: int) -> None:
            self.popen = Popen(pid)

    monkeypatch.setattr(steering.os, "kill", lambda pid, sig: events.append(f"kill {pid}"))
    bench = steering.Bench.__new__(steering.Bench)
    bench.site_procs = {"e2": [Proc(1), Proc(2)]}  # service, D-MA (start_site's order)
    bench.kill_site("e2")
    assert events == ["kill 2", "kill 1", "reap 2", "reap 1"] and not bench.site_procs


def test_an_abilene_run_is_named_with_its_failed_site() -> None:
    runs = [_run("dyncast+failover", 0, [1.0], None), _run("dyncast", 0, [2.0], None)]
    text = "\n".join(sf.failover_section({"link-abilene": {"runs": runs, "settings": "s",
                                                           "networks": ["abilene"]}}))
    assert "### `link`, abilene (the failed site: e8, not e2)" in text
    assert "--networks abilene" in text and "--tag failover-link-abilene" in text


def test_the_passive_health_section_sets_on_against_off_per_policy() -> None:
    """Both runs present: one row per policy, the ratio on/off and the 0.5x target per
    policy; only one of them: no section."""
    off = [_run("dyncast", 28, [], 4800.0), _run("p2c", 32, [], 2357.0)]
    on = [_run("dyncast", 3, [], 40.0), _run("p2c", 20, [], 90.0)]
    saved = {"health": {"runs": on, "settings": "s; passive health on"},
             "health-off": {"runs": off, "settings": "s"}}
    text = "\n".join(sf.health_section(saved))
    assert "| dyncast | 28 | 3 | 0.11 | 4800 / 40 |" in text
    assert "dyncast 3 against 28 (0.11x: met); p2c 20 against 32 (0.62x: **not met**)" in text
    assert "--fail-kind process --tag health --health`" in text
    assert "--tag health-off --no-health`" in text  # off: no longer the default
    assert sf.health_section({"health": saved["health"]}) == []
    earlier = {"health": saved["health"], "failover-process": saved["health-off"]}
    text = "\n".join(sf.health_section(earlier))
    assert "--tag failover-process`" in text and "cross two runs" in text
    assert "| dyncast | 28 | 3 | 0.11 |" in text
    since = {"health": saved["health"],  # a failover run with health on is no off run
             "failover-process": {"runs": off, "settings": "s; passive health on; D-MA"}}
    assert sf.health_section(since) == []

"""bench/steering_trace.py: the controller's view set against the clients' records."""

from __future__ import annotations

import pytest

from bench.steering_trace import (
    at_site,
    lines,
    main,
    passed_over,
    problems,
    run_record,
    seen_count,
    view_error,
)


def _req(t: float, ms: float, inst: str, ka: bool = False) -> dict[str, object]:
    return {"t": t, "ms": ms, "inst": inst, "src": "c1", "ka": ka}


def _trace() -> dict[str, object]:
    """e2 holds three requests from 0.0 to 0.5 s and e4 one from 0.1 to 0.4 s; at 0.2 s the
    controller counts e2 right and e4 one too many; at 0.7 s it still counts one on e2."""
    requests = [_req(0.0, 500, "e2"), _req(0.0, 500, "e2"), _req(0.05, 450, "e2", ka=True),
                _req(0.1, 300, "e4"), _req(0.3, 100, "e2"), {**_req(0.3, 0, ""), "ms": None}]
    polls = [{"at": 100.2, "sites": {"e2": {"seen": 3}, "e4": {"seen": 2}}},
             {"at": 100.7, "sites": {"e2": {"seen": 1}, "e4": {"seen": None}}},
             {"at": 130.0, "sites": {"e2": {"seen": 27}}}]
    return {"network": "figure2", "scenario": "hot-site", "policy": "dyncast",
            "target_load": 0.6, "seed": 1, "duration_s": 15.0, "start_at": 100.0,
            "poll_errors": 0, "polls": polls, "requests": requests}


def test_the_controllers_count_is_the_report_aged_as_the_core_ages_it_plus_placements() -> None:
    """Five requests reported at 3 workers, 100 ms each: 0.1 s later two are left (the core's
    staggered ends); a report 0.5 s old shows none left; a score-only report has no count."""
    report = {"sessions": 3, "queue": 2, "capacity": 3, "service_ms": 100.0}
    assert seen_count(report, 0.1, 1, 100.0) == 2 + 1
    assert seen_count(report, 0.5, 0, 100.0) == 0
    assert seen_count(report, None, 2, 100.0) == 5 + 2  # not aged: as reported
    assert seen_count({**report, "service_ms": None}, 0.2, 0, 200.0) == 2  # the base delay
    assert seen_count({"sessions": None, "score": 7.0}, 0.1, 0, 100.0) is None


def test_a_request_is_at_its_site_from_its_start_to_its_answer() -> None:
    requests = _trace()["requests"]
    assert at_site(requests[:5], "e2", 0.2) == 3  # type: ignore[arg-type]
    assert at_site(requests[:5], "e2", 0.35) == 4  # type: ignore[arg-type]
    assert at_site(requests[:5], "e4", 0.4) == 0  # type: ignore[arg-type]


def test_the_view_is_compared_at_each_poll_within_the_run() -> None:
    errors = view_error(_trace())
    assert errors["e2"] == {"median": 0.5, "within_one": 1.0, "polls": 2}  # 0 and +1
    assert errors["e4"] == {"median": 1, "within_one": 1.0, "polls": 1}


def test_a_free_worker_elsewhere_is_found_at_each_fresh_arrival() -> None:
    """e2's fresh requests at 0.0 (twice) and 0.3 s: e4 (2 workers) is free at all three;
    e4's at 0.1 s: e2 holds three requests then, its 3 workers busy."""
    out = passed_over(_trace(), {"e2": 3, "e4": 2})
    assert out["e2"] == {"requests": 3, "other_free": {"e4": 1.0}, "ahead_median": 1}
    assert out["e4"]["other_free"] == {"e2": 0.0}


def test_the_analysis_names_each_run_and_site() -> None:
    text = "\n".join(lines([_trace()]))
    assert "figure2 hot-site load 0.6 seed 1 dyncast: 3 polls (0 failed), 5 requests" in text
    assert "view of e2: controller minus actual, median +0.5" in text
    assert "3 fresh requests to e2" in text and "e4 100%" in text


def test_a_saved_run_keeps_what_the_analysis_reads() -> None:
    saved = run_record({"network": "figure2", "scenario": "hot-site", "policy": "p2c",
                        "duration_s": 15.0, "seed": 2}, [], 5.0,
                       [{"t": 0.1, "ms": 5.0, "inst": "e2", "src": "c1", "conn": 0}], 1)
    assert saved["seed"] == 2 and saved["poll_errors"] == 1
    assert saved["requests"] == [{"t": 0.1, "ms": 5.0, "inst": "e2", "src": "c1", "ka": True}]


def test_an_unknown_tag_is_refused_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--tag", "no-such-trace"])
    assert exc.value.code == 2
    assert "--tag" in capsys.readouterr().err


def test_a_trace_with_a_failed_poll_or_an_unseen_site_is_not_analysed() -> None:
    trace = _trace()
    assert problems([trace]) == ["hot-site load 0.6 seed 1 dyncast: no view of ['e3']"]
    assert "2 polls failed" in problems([{**trace, "poll_errors": 2}])[0]

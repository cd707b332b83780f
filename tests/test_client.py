"""dyncast-client reports what a client observed: which instance served, which peer answered."""

from __future__ import annotations

from agents.client import hold, run_requests
from tests.fakes import Start


def test_requests_are_counted_per_serving_instance(start: Start) -> None:
    """Every successful request is attributed to the instance named in its reply."""
    port = start(capacity=2, service_ms=5.0, name="inst-a")
    result = run_requests(f"http://127.0.0.1:{port}/", 6, 3, 5.0)
    assert result["served"] == {"inst-a": 6} and result["errors"] == 0
    assert result["peers"] == {"127.0.0.1": 6}
    assert result["latency_ms"]["p95"] >= 5.0


def test_hold_reports_the_instance_of_every_streamed_line(start: Start) -> None:
    """A held connection reports each line it received with the instance that sent it."""
    port = start(name="inst-b")
    result = hold(f"http://127.0.0.1:{port}/", 0.5, 5.0)
    assert set(result["served"]) == {"inst-b"} and result["served"]["inst-b"] >= 2


def test_connection_refused_is_an_error_not_a_crash() -> None:
    """A service that is not there shows up as errors in the summary."""
    result = run_requests("http://127.0.0.1:9/", 2, 1, 1.0)
    assert result["errors"] == 2 and result["served"] == {}

"""dyncast-client reports what a client observed: which instance served, which peer answered."""

from __future__ import annotations

from typing import Any

import pytest

from agents import client
from agents.client import hold, run_requests
from tests.fakes import Start


def test_requests_are_counted_per_serving_instance(start: Start) -> None:
    """Every successful request is attributed to the instance named in its reply."""
    port = start(capacity=2, service_ms=5.0, name="inst-a")
    result = run_requests(f"http://127.0.0.1:{port}/", 6, 3, 5.0)
    assert result["served"] == {"inst-a": 6} and result["errors"] == 0
    assert result["peers"] == {"127.0.0.1": 6}
    assert result["latency_ms"]["p95"] >= 5.0
    # each connection had a source port; two may share one (a closed one's, reused)
    assert 1 <= result["source_ports"] <= 6


def test_source_ports_count_the_5_tuples_used(start: Start,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections that share a source port (the kernel reuses a closed one's) count once:
    they share a 5-tuple, and a switch's per-flow entry, which is what the count is for."""
    port = start(name="inst-c")
    real = client._request
    calls: list[int] = []

    def two_ports(*args: Any) -> tuple[str, str, float, int]:
        instance, peer, ms, source = real(*args)
        assert source > 0
        calls.append(source)
        return instance, peer, ms, 40000 + len(calls) % 2

    monkeypatch.setattr(client, "_request", two_ports)
    result = client.run_requests(f"http://127.0.0.1:{port}/", 4, 1, 5.0)
    assert len(calls) == 4 and result["served"] == {"inst-c": 4}
    assert result["source_ports"] == 2


def test_hold_reports_the_instance_of_every_streamed_line(start: Start) -> None:
    """A held connection reports each line it received with the instance that sent it."""
    port = start(name="inst-b")
    result = hold(f"http://127.0.0.1:{port}/", 0.5, 5.0)
    assert set(result["served"]) == {"inst-b"} and result["served"]["inst-b"] >= 2


def test_connection_refused_is_an_error_not_a_crash() -> None:
    """A service that is not there shows up as errors in the summary."""
    result = run_requests("http://127.0.0.1:9/", 2, 1, 1.0)
    assert result["errors"] == 2 and result["served"] == {}

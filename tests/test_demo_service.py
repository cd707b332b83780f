"""Unit tests of the bundled demo service, served on 127.0.0.1 from a thread or a subprocess."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mininet_tests.processes import wait_until
from tests.fakes import Start

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def request(port: int, method: str, path: str, body: bytes | None = None,
            conn: http.client.HTTPConnection | None = None) -> tuple[int, Any]:
    """Make one request and return (status, decoded JSON body)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        if own:
            conn.close()


def stats(port: int) -> dict[str, Any]:
    """The service's `/stats`."""
    status, data = request(port, "GET", "/stats")
    assert status == 200
    return data  # type: ignore[no-any-return]


def set_load(port: int, extra_load: float) -> None:
    """Set the service's synthetic extra load."""
    status, _ = request(port, "POST", "/load", json.dumps({"extra_load": extra_load}).encode())
    assert status == 200


def test_root_names_instance_and_dbid(start: Start) -> None:
    """`GET /` answers which instance served it, at which D-BID, and how long it took."""
    port = start(name="svc-a", service_ms=10)
    status, data = request(port, "GET", "/")
    assert status == 200
    assert data["instance"] == "svc-a"
    assert data["dbid"] == "127.0.0.1"
    assert data["served_ms"] >= 10


def test_keep_alive_serves_several_requests_on_one_connection(start: Start) -> None:
    """The service speaks HTTP/1.1 keep-alive: one TCP connection carries several requests."""
    port = start(service_ms=1)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        assert request(port, "GET", "/", conn=conn)[0] == 200
        sock = conn.sock
        assert request(port, "GET", "/stats", conn=conn)[0] == 200
        assert request(port, "GET", "/", conn=conn)[0] == 200
        assert conn.sock is sock
    finally:
        conn.close()


def test_stats_count_sessions_and_queue_under_concurrency(start: Start) -> None:
    """With capacity 1, one of two concurrent requests is in service and the other queues."""
    port = start(capacity=1, service_ms=800)
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(request(port, "GET", "/")[0]))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    wait_until(lambda: (lambda s: s["sessions"] == 1 and s["queue"] == 1)(stats(port)), 5,
               "one request in service and one queued")
    for thread in threads:
        thread.join(10)
    assert results == [200, 200]
    final = stats(port)
    assert (final["sessions"], final["queue"], final["requests"]) == (0, 0, 2)
    assert final["capacity"] == 1
    assert final["processing_delay_ms"] >= 800


def test_response_time_grows_with_extra_load(start: Start) -> None:
    """Each request takes service-ms * (1 + extra_load), and the delay estimate follows it."""
    port = start(service_ms=20)
    _, light = request(port, "GET", "/")
    assert light["served_ms"] >= 20
    set_load(port, 4.0)
    began = time.monotonic()
    _, heavy = request(port, "GET", "/")
    assert time.monotonic() - began >= 0.1
    assert heavy["served_ms"] >= 100 and heavy["served_ms"] > light["served_ms"]
    assert stats(port)["processing_delay_ms"] > light["served_ms"]
    assert stats(port)["extra_load"] == 4.0


@pytest.mark.parametrize("body", [
    b"not json", b"[]", b"{}", b'{"extra_load": -1}', b'{"extra_load": "2"}',
    b'{"extra_load": true}', b'{"extra_load": 1, "other": 2}',
])
def test_load_rejects_bad_bodies(start: Start, body: bytes) -> None:
    """A bad `POST /load` answers 400 with a JSON error and leaves the load unchanged."""
    port = start()
    set_load(port, 0.5)
    status, data = request(port, "POST", "/load", body)
    assert status == 400
    assert isinstance(data["error"], str) and data["error"]
    assert stats(port)["extra_load"] == 0.5


def test_unknown_paths_and_methods_answer_json_errors(start: Start) -> None:
    """Unknown paths answer 404 and wrong methods 405, as JSON, keeping the connection usable."""
    port = start(service_ms=1)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        status, data = request(port, "GET", "/nowhere", conn=conn)
        assert status == 404 and "/nowhere" in data["error"]
        status, data = request(port, "PUT", "/load", b'{"extra_load": 1}', conn=conn)
        assert status == 405 and "error" in data
        assert request(port, "GET", "/", conn=conn)[0] == 200
    finally:
        conn.close()
    assert stats(port)["extra_load"] == 0.0


def test_hold_streams_lines_and_counts_as_session(start: Start) -> None:
    """`GET /hold` keeps one request open, naming the instance every 0.2 s, as one session."""
    port = start(name="svc-h")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/hold?seconds=0.6")
        response = conn.getresponse()
        assert response.status == 200
        first = json.loads(response.readline())
        assert first == {"instance": "svc-h", "dbid": "127.0.0.1", "seq": 0}
        assert stats(port)["sessions"] == 1
        rest = [json.loads(line) for line in response.read().splitlines()]
        assert len(rest) >= 2
        assert all(line["instance"] == "svc-h" for line in rest)
        assert request(port, "GET", "/", conn=conn)[0] == 200
    finally:
        conn.close()
    assert stats(port)["sessions"] == 0


@pytest.mark.parametrize("query", ["", "?seconds=abc", "?seconds=-1", "?seconds=1&seconds=2"])
def test_hold_rejects_bad_seconds(start: Start, query: str) -> None:
    """A bad `seconds` for `/hold` answers 400 with a JSON error and holds nothing."""
    port = start()
    status, data = request(port, "GET", "/hold" + query)
    assert status == 400 and data["error"].startswith("seconds")
    assert stats(port)["sessions"] == 0


def test_process_announces_itself_and_stops_on_sigterm() -> None:
    """The program prints one 'serving' line once it listens, and exits 0 on SIGTERM."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "agents.demo_service", "--bind", "127.0.0.1", "--port", "0",
         "--name", "svc-p", "--capacity", "2", "--service-ms", "5"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("serving svc-p on 127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        status, data = request(port, "GET", "/")
        assert status == 200 and data["instance"] == "svc-p"
        assert stats(port)["capacity"] == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

"""Unit tests of the D-MA: pure policy and assembly; the program against fakes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest

from agents.demo_service import ServiceConfig, ServiceServer
from agents.dma import (
    Binding,
    CpuSample,
    InstanceStats,
    ReportPolicy,
    build_report,
    cpu_fraction,
    parse_binding,
    parse_commands,
    parse_cpu_line,
    parse_stats,
    report_metrics,
)
from agents.dma.metrics import loads_bounded, stats_problem
from mininet_tests.processes import wait_until

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")
API = "/dyncast/v1"
METRIC_KEYS = {"dbid", "dsid", "cpu", "sessions", "queue", "capacity", "active",
               "processing_delay_ms", "service_ms"}
Record = tuple[str, str, Any]


# ---- report policy with a fake clock -----------------------------------------------------------


def test_policy_reports_first_at_once_then_every_interval() -> None:
    """Without change, a report goes out at once and then once per interval."""
    policy = ReportPolicy(interval=2.0, min_interval=0.5, threshold=0.2)
    same = {"cpu": 0.3, "sessions": 4.0}
    sent = [t for t in (0.0, 0.5, 1.0, 1.5, 1.9, 2.0, 2.5, 3.9, 4.0) if policy.decide(t, same)]
    assert sent == [0.0, 2.0, 4.0]


def test_policy_reports_early_when_a_metric_moves_past_threshold() -> None:
    """A relative move past the threshold since the last report triggers an early report."""
    policy = ReportPolicy(interval=10.0, min_interval=0.5, threshold=0.2)
    assert policy.decide(0.0, {"sessions": 10.0})
    assert not policy.decide(1.0, {"sessions": 11.0})  # 10 % since the last report
    assert not policy.decide(2.0, {"sessions": 12.0})  # 17 %
    assert policy.decide(3.0, {"sessions": 13.0})  # 23 %: drift counts from the last report
    assert not policy.decide(4.0, {"sessions": 14.0})  # 7 % since the report at 3.0


def test_policy_never_reports_within_min_interval() -> None:
    """However much metrics move, two reports are at least min-interval apart."""
    policy = ReportPolicy(interval=10.0, min_interval=0.5, threshold=0.2)
    assert policy.decide(0.0, {"sessions": 0.0})
    assert not policy.decide(0.1, {"sessions": 50.0})
    assert not policy.decide(0.49, {"sessions": 90.0})
    assert policy.decide(0.5, {"sessions": 90.0})


def test_policy_small_values_and_flags_use_an_absolute_floor() -> None:
    """Near zero a change must exceed threshold * 1; an active flip always counts."""
    policy = ReportPolicy(interval=10.0, min_interval=0.0, threshold=0.2)
    assert policy.decide(0.0, {"cpu": 0.01, "active": 1.0})
    assert not policy.decide(1.0, {"cpu": 0.15, "active": 1.0})  # CPU noise near idle
    assert policy.decide(2.0, {"cpu": 0.3, "active": 1.0})
    assert policy.decide(3.0, {"cpu": 0.3, "active": 0.0})
    assert policy.decide(4.0, {"cpu": 0.3})  # a metric appeared or vanished


def test_policy_reset_reports_at_once() -> None:
    """After a reset (re-registration) the next report goes out immediately."""
    policy = ReportPolicy(interval=10.0, min_interval=5.0, threshold=0.2)
    assert policy.decide(0.0, {"cpu": 0.5})
    policy.reset()
    assert policy.decide(0.1, {"cpu": 0.5})


# ---- metric assembly ---------------------------------------------------------------------------

PROC_STAT_1 = "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 50 0 50 350 50 0 0 0 0 0\nintr 1\n"
PROC_STAT_2 = "cpu  160 0 140 780 120 0 0 0 0 0\ncpu0 80 0 70 390 60 0 0 0 0 0\nintr 2\n"


def test_cpu_utilisation_is_the_busy_share_of_the_proc_stat_delta() -> None:
    """CPU is (busy delta) / (total delta) of the aggregate line, idle and iowait being idle."""
    first, second = parse_cpu_line(PROC_STAT_1), parse_cpu_line(PROC_STAT_2)
    assert first == CpuSample(busy=200, total=1000)
    assert second == CpuSample(busy=300, total=1200)
    assert cpu_fraction(first, second) == pytest.approx(0.5)


def test_cpu_utilisation_is_zero_when_it_cannot_be_told() -> None:
    """A missing, garbled or non-advancing /proc/stat gives 0, never an out-of-range value."""
    assert parse_cpu_line("intr 1\n") is None
    assert parse_cpu_line("cpu  a b c d\n") is None
    sample = parse_cpu_line(PROC_STAT_1)
    assert cpu_fraction(None, sample) == 0.0
    assert cpu_fraction(sample, sample) == 0.0


def test_report_carries_instance_stats_in_the_controller_schema() -> None:
    """A readable instance is reported active with its stats and only keys the API accepts."""
    stats = parse_stats({"sessions": 3, "queue": 1, "capacity": 8, "processing_delay_ms": 21,
                         "service_ms": 9.5, "requests": 99, "extra_load": 0.0})
    assert stats == InstanceStats(sessions=3, queue=1, capacity=8, processing_delay_ms=21.0,
                                  service_ms=9.5)
    report = build_report("127.0.0.21", 0.35, stats, capacity=1)
    assert report == {"dbid": "127.0.0.21", "cpu": 0.35, "sessions": 3, "queue": 1,
                      "capacity": 8, "active": True, "processing_delay_ms": 21.0,
                      "service_ms": 9.5}
    assert set(report) <= METRIC_KEYS
    assert report_metrics(report)["active"] == 1.0


def test_report_without_stats_is_inactive_with_last_capacity() -> None:
    """An instance whose stats cannot be read is reported inactive, keeping a valid capacity."""
    report = build_report("127.0.0.21", 0.1, None, capacity=8)
    assert report["active"] is False
    assert (report["sessions"], report["queue"], report["capacity"]) == (0, 0, 8)
    assert "processing_delay_ms" not in report


@pytest.mark.parametrize("data", [
    None, [], {}, {"sessions": -1, "queue": 0, "capacity": 4},
    {"sessions": True, "queue": 0, "capacity": 4}, {"sessions": 1, "queue": 0, "capacity": 0},
    {"sessions": 1.5, "queue": 0, "capacity": 4}, {"sessions": 1, "capacity": 4},
])
def test_unusable_stats_are_rejected(data: object) -> None:
    """Stats with missing, negative, boolean or fractional counts count as unreadable."""
    assert parse_stats(data) is None


@pytest.mark.parametrize(("data", "word"), [
    ({"sessions": 10_000_001, "queue": 0, "capacity": 4}, "sessions"),
    ({"sessions": 1, "queue": 0, "capacity": 10**30}, "capacity"),
    ({"sessions": 1, "queue": 0, "capacity": 4, "processing_delay_ms": -3}, "processing_delay"),
    ({"sessions": 1, "queue": 0, "capacity": 4, "processing_delay_ms": "1"}, "processing_delay"),
    ({"sessions": 1, "queue": 0, "capacity": 4, "processing_delay_ms": 4e6}, "processing_delay"),
    ({"sessions": 1, "queue": 0, "capacity": 4, "service_ms": "fast"}, "service_ms"),
    ({"sessions": 1, "queue": 0, "capacity": 4, "service_ms": -1}, "service_ms"),
])
def test_out_of_range_metrics_make_the_stats_unusable_with_a_reason(data: object,
                                                                    word: str) -> None:
    """A metric the controller would refuse (past its bounds, negative, not a number) makes
    the stats unusable, so the instance is reported not serving, and the reason names it."""
    assert parse_stats(data) is None
    assert word in (stats_problem(data) or "")
    assert stats_problem({"sessions": 1, "queue": 0, "capacity": 4,
                          "processing_delay_ms": 3.5}) is None


@pytest.mark.parametrize("text", ["[" * 17 + "]" * 17, '{"a":' * 20 + "1" + "}" * 20,
                                  "1" * 5000, "1e400", "NaN", '{"x": -Infinity}',
                                  " " * (64 * 1024 + 1)])
def test_bounded_json_refuses_deep_huge_or_non_finite_documents(text: str) -> None:
    """Deep nesting, 5,000-digit integers, 1e400, NaN/Infinity and oversized documents are a
    ValueError, never a RecursionError or a number the controller cannot take."""
    with pytest.raises(ValueError):
        loads_bounded(text)
    assert parse_commands(text) == []


def test_bounded_json_reads_stats_and_answers_with_brackets_in_strings() -> None:
    """Brackets inside strings do not count as depth."""
    text = json.dumps({"commands": [{"op": "reactivate", "dbid": "10.0.0.1",
                                     "reason": "[{" * 100}]})
    assert parse_commands(text)[0]["op"] == "reactivate"


def test_parse_binding_accepts_dsid_dbid_and_stats_url() -> None:
    """`DSID=DBID@STATS_URL` parses into its three parts."""
    assert parse_binding("127.0.100.1=127.0.0.21@http://127.0.0.1:8000/stats") == Binding(
        "127.0.100.1", "127.0.0.21", "http://127.0.0.1:8000/stats")


@pytest.mark.parametrize("text", [
    "127.0.100.1=127.0.0.21", "127.0.100.1@http://127.0.0.1/stats", "x=127.0.0.21@http://h/s",
    "127.0.100.1=nope@http://h/s", "127.0.100.1=127.0.0.21@ftp://h/s",
])
def test_parse_binding_rejects_malformed_text(text: str) -> None:
    """A malformed `--instance` is refused with a message, not half-parsed."""
    with pytest.raises(ValueError):
        parse_binding(text)


# ---- the program against a fake controller -----------------------------------------------------


class FakeController:
    """A stand-in for the controller's REST API on 127.0.0.1 that records every request."""

    def __init__(self, port: int = 0) -> None:
        self.records: list[Record] = []
        self.statuses: dict[tuple[str, str], tuple[int, Any]] = {}
        self.registrations: dict[str, tuple[int, Any]] = {}  # D-BID -> answer to registering it
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        """A request handler bound to this fake."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            """Record the request; answer the configured status (default: success)."""

            def do_POST(self) -> None:
                """Record and answer."""
                fake.answer(self)

            def do_DELETE(self) -> None:
                """Record and answer."""
                fake.answer(self)

            def do_GET(self) -> None:
                """Record and answer (the fake also stands in for an instance's /stats)."""
                fake.answer(self)

            def log_message(self, format: str, *args: object) -> None:
                """Stay quiet."""

        return Handler

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        """Record one request and send its configured answer."""
        length = int(handler.headers.get("Content-Length", "0"))
        raw = handler.rfile.read(length) if length else b""
        method, path = handler.command, handler.path
        with self.lock:
            self.records.append((method, path, json.loads(raw) if raw else None))
            created = (method, path) == ("POST", f"{API}/instances")
            default: tuple[int, Any] = (201 if created else 200, {})
            status, body = self.statuses.get((method, path), default)
            if created and raw and json.loads(raw).get("dbid") in self.registrations:
                status, body = self.registrations[json.loads(raw)["dbid"]]
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def seen(self, method: str, path: str) -> list[Any]:
        """Bodies of the recorded requests with this method and path."""
        with self.lock:
            return [body for m, p, body in self.records if (m, p) == (method, path)]

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def controller() -> Iterator[FakeController]:
    """A fake controller on a free loopback port."""
    fake = FakeController()
    yield fake
    fake.close()


@pytest.fixture
def service() -> Iterator[int]:
    """A demo service (capacity 3) on a free loopback port; yields the port."""
    server = ServiceServer(ServiceConfig(name="svc", dbid="127.0.0.1", port=0, capacity=3,
                                         service_ms=5))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server.server_port
    server.shutdown()
    server.server_close()


def free_port() -> int:
    """A loopback TCP port nobody listens on (at the time of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Dma:
    """A `python -m agents.dma` subprocess with its output in files."""

    def __init__(self, folder: Path, args: list[str]) -> None:
        self.out, self.err = folder / "dma.out", folder / "dma.err"
        env = dict(os.environ, PYTHONPATH=str(REPO))
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "agents.dma", *args],
                                         cwd=REPO, env=env, stdout=out, stderr=err)

    def stdout(self) -> str:
        """What the D-MA printed so far."""
        return self.out.read_text()

    def stderr(self) -> str:
        """What the D-MA logged so far."""
        return self.err.read_text()

    def stop(self) -> int:
        """SIGTERM the D-MA and return its exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=10)


@pytest.fixture
def dma(tmp_path: Path) -> Iterator[Callable[[list[str]], Dma]]:
    """Start D-MA subprocesses; kill any still running at teardown."""
    started: list[Dma] = []

    def starter(args: list[str]) -> Dma:
        """Start one D-MA with these arguments."""
        started.append(Dma(tmp_path, args))
        return started[-1]

    yield starter
    for agent in started:
        if agent.proc.poll() is None:
            agent.proc.kill()
            agent.proc.wait()


def latest_reports(controller: FakeController) -> dict[str, dict[str, Any]]:
    """The last metric report received for each D-BID."""
    return {r["dbid"]: r for r in controller.seen("POST", f"{API}/metrics")}


def fast(controller_url: str, *instances: str) -> list[str]:
    """D-MA arguments with short intervals for tests."""
    args = ["--controller", controller_url, "--name", "dma-t", "--interval", "0.5",
            "--min-interval", "0.1", "--threshold", "0.2"]
    for instance in instances:
        args += ["--instance", instance]
    return args


def test_dma_registers_reports_and_withdraws_on_sigterm(
        controller: FakeController, service: int, dma: Callable[[list[str]], Dma]) -> None:
    """Each binding is registered, reported (unreadable stats as inactive), and withdrawn."""
    live = f"127.0.100.1=127.0.0.21@http://127.0.0.1:{service}/stats"
    dead = f"127.0.100.2=127.0.0.22@http://127.0.0.1:{free_port()}/stats"
    agent = dma(fast(controller.url, live, dead))
    wait_until(lambda: "registered 127.0.100.2=127.0.0.22" in agent.stdout(), 10,
               "both bindings registered")
    assert controller.seen("POST", f"{API}/instances") == [
        {"dsid": "127.0.100.1", "dbid": "127.0.0.21", "dma": "dma-t", "active": True},
        {"dsid": "127.0.100.2", "dbid": "127.0.0.22", "dma": "dma-t", "active": True}]
    wait_until(lambda: latest_reports(controller).keys() == {"127.0.0.21", "127.0.0.22"}, 10,
               "a report for each binding")
    reports = latest_reports(controller)
    up, down = reports["127.0.0.21"], reports["127.0.0.22"]
    assert set(up) <= METRIC_KEYS and set(down) <= METRIC_KEYS
    assert up["active"] is True and (up["sessions"], up["queue"], up["capacity"]) == (0, 0, 3)
    assert up["processing_delay_ms"] >= 0 and 0.0 <= up["cpu"] <= 1.0
    assert down["active"] is False and down["capacity"] >= 1
    assert agent.stop() == 0
    deleted = [p for m, p, _ in controller.records if m == "DELETE"]
    assert sorted(deleted) == [f"{API}/instances/127.0.0.21", f"{API}/instances/127.0.0.22"]


def test_dma_reports_early_when_sessions_move(
        controller: FakeController, service: int, dma: Callable[[list[str]], Dma]) -> None:
    """A session opening is reported within a sampling period, long before the interval."""
    args = fast(controller.url, f"127.0.100.1=127.0.0.21@http://127.0.0.1:{service}/stats")
    args[args.index("--interval") + 1] = "30"
    agent = dma(args)
    wait_until(lambda: controller.seen("POST", f"{API}/metrics"), 10, "a first report")
    holder = threading.Thread(target=lambda: urllib.request.urlopen(
        f"http://127.0.0.1:{service}/hold?seconds=3", timeout=10).read())
    holder.start()
    try:
        wait_until(lambda: any(r["sessions"] == 1 for r in controller.seen(
            "POST", f"{API}/metrics")), 2.0, "an early report of the open session")
    finally:
        holder.join()
    assert agent.stop() == 0


def test_dma_cpu_source_instance_reports_the_instances_busy_fraction(
        controller: FakeController, service: int, dma: Callable[[list[str]], Dma]) -> None:
    """With --cpu-source instance, cpu is sessions/capacity of the instance, not the host's."""
    args = fast(controller.url, f"127.0.100.1=127.0.0.21@http://127.0.0.1:{service}/stats")
    agent = dma([*args, "--cpu-source", "instance"])
    holder = threading.Thread(target=lambda: urllib.request.urlopen(
        f"http://127.0.0.1:{service}/hold?seconds=2", timeout=10).read())
    holder.start()
    try:
        wait_until(lambda: any(r["sessions"] == 1 and abs(r["cpu"] - 1 / 3) < 1e-3
                               for r in controller.seen("POST", f"{API}/metrics")),
                   5.0, "a report with cpu = 1/3 for one session of capacity 3")
    finally:
        holder.join()
    reports = controller.seen("POST", f"{API}/metrics")
    assert all(r["cpu"] in (0.0, round(1 / 3, 4)) for r in reports)
    assert agent.stop() == 0


def test_dma_retries_registration_until_the_controller_answers(
        tmp_path: Path, dma: Callable[[list[str]], Dma]) -> None:
    """Registration is retried (each failure logged) until the controller comes up."""
    port = free_port()
    agent = dma(fast(f"http://127.0.0.1:{port}", "127.0.100.1=127.0.0.21@http://127.0.0.1:1/s"))
    wait_until(lambda: "register 127.0.100.1=127.0.0.21 failed" in agent.stderr(), 10,
               "a logged registration failure")
    late = FakeController(port)
    try:
        wait_until(lambda: "registered 127.0.100.1=127.0.0.21" in agent.stdout(), 15,
                   "registration once the controller is up")
        assert late.seen("POST", f"{API}/instances")
        assert agent.stop() == 0
    finally:
        late.close()


def test_dma_gives_up_after_register_timeout(dma: Callable[[list[str]], Dma]) -> None:
    """With --register-timeout, a controller that never answers ends the D-MA with status 1."""
    args = fast(f"http://127.0.0.1:{free_port()}", "127.0.100.1=127.0.0.21@http://127.0.0.1:1/s")
    agent = dma([*args, "--register-timeout", "1"])
    assert agent.proc.wait(timeout=15) == 1
    assert "did not answer" in agent.stderr()


def test_dma_survives_controller_errors_and_registers_later(
        controller: FakeController, service: int, dma: Callable[[list[str]], Dma]) -> None:
    """A refused registration is logged with status and body, then retried while running."""
    key = ("POST", f"{API}/instances")
    controller.statuses[key] = (404, {"error": "unknown D-SID: 127.0.100.1"})
    agent = dma(fast(controller.url, f"127.0.100.1=127.0.0.21@http://127.0.0.1:{service}/stats"))
    wait_until(lambda: "HTTP 404" in agent.stderr() and "unknown D-SID" in agent.stderr(), 10,
               "the refusal logged with status and body")
    assert agent.proc.poll() is None
    assert not controller.seen("POST", f"{API}/metrics")
    del controller.statuses[key]
    wait_until(lambda: "registered 127.0.100.1=127.0.0.21" in agent.stdout(), 10,
               "registration accepted on a later attempt")
    wait_until(lambda: controller.seen("POST", f"{API}/metrics"), 10, "reports once registered")
    assert agent.stop() == 0


def test_dma_registers_again_when_the_controller_forgot_the_instance(
        controller: FakeController, service: int, dma: Callable[[list[str]], Dma]) -> None:
    """A 404 to a metric report (controller restarted) makes the D-MA register again."""
    controller.statuses[("POST", f"{API}/metrics")] = (404, {"error": "unknown instance"})
    agent = dma(fast(controller.url, f"127.0.100.1=127.0.0.21@http://127.0.0.1:{service}/stats"))
    wait_until(lambda: len(controller.seen("POST", f"{API}/instances")) >= 2, 10,
               "a second registration after the 404")
    assert agent.proc.poll() is None
    assert agent.stop() == 0


def test_parse_command_spec_and_commands() -> None:
    """`DBID=COMMAND` splits at the first '='; answers without well-formed commands give none."""
    from agents.dma import parse_command_spec, parse_commands

    assert parse_command_spec("10.0.0.41=svc --a=b") == ("10.0.0.41", "svc --a=b")
    for bad in ("10.0.0.41", "10.0.0.41=", "host=cmd", "10.0.0.41=  "):
        with pytest.raises(ValueError):
            parse_command_spec(bad)
    good = {"id": 1, "op": "reactivate", "dbid": "10.0.0.41"}
    assert parse_commands(json.dumps({"accepted": 1, "commands": [good, {"op": "x"}]})) == [good]
    assert parse_commands('{"accepted": 1}') == [] and parse_commands("not json") == []


def test_dma_starts_an_inactive_instance_on_reactivate_and_stops_it_on_deactivate(
        controller: FakeController, dma: Callable[[list[str]], Dma]) -> None:
    """An --inactive instance is registered and reported not serving; `reactivate` in a
    metrics answer runs its --start command and it is reported serving; `deactivate`
    terminates what was started and it is reported not serving again."""
    port = free_port()
    start = (f"127.0.0.41={sys.executable} -m agents.demo_service --bind 127.0.0.1 "
             f"--port {port} --name spare")
    args = fast(controller.url, f"127.0.100.1=127.0.0.41@http://127.0.0.1:{port}/stats")
    agent = dma([*args, "--inactive", "127.0.0.41", "--start", start])
    wait_until(lambda: latest_reports(controller).get("127.0.0.41"), 10, "a first report")
    assert controller.seen("POST", f"{API}/instances")[0]["active"] is False
    assert latest_reports(controller)["127.0.0.41"]["active"] is False
    path = ("POST", f"{API}/metrics")
    command = {"id": 1, "op": "reactivate", "dbid": "127.0.0.41", "reason": "test"}
    controller.statuses[path] = (200, {"accepted": 1, "commands": [command]})
    wait_until(lambda: latest_reports(controller)["127.0.0.41"]["active"] is True, 15,
               "reported serving after reactivate")
    controller.statuses[path] = (200, {"accepted": 1, "commands": [
        {**command, "id": 2, "op": "deactivate"}]})
    wait_until(lambda: latest_reports(controller)["127.0.0.41"]["active"] is False, 15,
               "reported not serving after deactivate")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert "command reactivate 127.0.0.41" in agent.stdout()
    assert agent.stop() == 0


def test_dma_rejects_inactive_or_start_for_an_unknown_dbid(
        controller: FakeController, dma: Callable[[list[str]], Dma]) -> None:
    """--inactive/--start naming a D-BID without --instance is a usage error (exit 2)."""
    args = fast(controller.url, "127.0.100.1=127.0.0.41@http://127.0.0.1:1/stats")
    agent = dma([*args, "--inactive", "127.0.0.42"])
    assert agent.proc.wait(timeout=10) == 2 and "127.0.0.42" in agent.stderr()


# ---- hostile answers: bounded reads, not-serving reports, withdrawal on any failure ----------

DEEP = b'{"commands": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"  # RecursionError in json
HOSTILE_ANSWERS = [DEEP, b'{"commands": [], "pad": "' + b"x" * 2_000_000 + b'"}',
                   b'{"commands": [{"op": "reactivate", "dbid": "127.0.0.21", "n": 1e400}]}']


@pytest.mark.parametrize("answer", HOSTILE_ANSWERS, ids=["deep", "huge", "inf"])
def test_dma_survives_hostile_controller_answers_and_still_withdraws(
        controller: FakeController, service: int, dma: Callable[[list[str]], Dma],
        answer: bytes) -> None:
    """A metrics answer nested 100,000 deep, 2 MB long or holding 1e400 is ignored (logged
    when it cannot be read at all); the D-MA keeps reporting and withdraws on SIGTERM."""
    controller.statuses[("POST", f"{API}/metrics")] = (200, answer)
    agent = dma(fast(controller.url, f"127.0.100.1=127.0.0.21@http://127.0.0.1:{service}/stats"))
    wait_until(lambda: len(controller.seen("POST", f"{API}/metrics")) >= 3, 10,
               "reports go on after hostile answers")
    assert agent.proc.poll() is None, agent.stderr()
    assert "command reactivate" not in agent.stdout()
    assert agent.stop() == 0
    assert ("DELETE", f"{API}/instances/127.0.0.21", None) in controller.records


@pytest.mark.parametrize(("stats", "reason"), [
    (b"[" * 5_000 + b"]" * 5_000, "nested deeper"),
    (b'{"sessions": 1, "queue": 0, "capacity": ' + b"9" * 5000 + b"}", "number out of range"),
    (b'{"sessions": 20000000, "queue": 0, "capacity": 4}', "sessions"),
    (b'{"sessions": 1, "queue": 0, "capacity": 4, "processing_delay_ms": NaN}', "NaN"),
    (b'{"pad": "' + b"x" * 1_000_000 + b'"}', "larger than"),
], ids=["deep", "huge-int", "sessions-out-of-range", "nan", "huge"])
def test_dma_reports_an_instance_with_unusable_stats_as_not_serving(
        controller: FakeController, dma: Callable[[list[str]], Dma], stats: bytes,
        reason: str) -> None:
    """Stats it cannot read or that are out of range: the instance is reported `active:
    false` (never skipped, never a value the controller refuses), with a log line saying why."""
    controller.statuses[("GET", "/stats")] = (200, stats)
    agent = dma(fast(controller.url, f"127.0.100.1=127.0.0.21@{controller.url}/stats"))
    wait_until(lambda: controller.seen("POST", f"{API}/metrics"), 10, "a report")
    report = controller.seen("POST", f"{API}/metrics")[0]
    assert report["active"] is False and report["sessions"] == 0 and report["capacity"] >= 1
    wait_until(lambda: reason in agent.stderr() and "not serving" in agent.stderr(), 5,
               f"a log line naming {reason!r}")
    assert agent.stop() == 0


def test_any_failure_in_the_loop_withdraws_then_exits_non_zero(
        controller: FakeController, service: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected exception in the report loop: every binding is withdrawn, exit code 1."""
    from agents.dma import Agent, parse_args, run

    def broken(self: Agent, stop: threading.Event) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(Agent, "report_loop", broken)
    options = parse_args(fast(controller.url,
                              f"127.0.100.1=127.0.0.21@http://127.0.0.1:{service}/stats",
                              f"127.0.100.2=127.0.0.22@http://127.0.0.1:{service}/stats"))
    assert run(options, threading.Event()) == 1
    assert [p for m, p, _ in controller.records if m == "DELETE"] == [
        f"{API}/instances/127.0.0.21", f"{API}/instances/127.0.0.22"]


def test_a_refused_report_is_followed_by_a_not_serving_one(
        controller: FakeController, service: int, dma: Callable[[list[str]], Dma]) -> None:
    """A report the controller refuses (400) is not left at that: the D-MA reports the
    instance not serving, so it is not left `unknown` while it may be broken."""
    controller.statuses[("POST", f"{API}/metrics")] = (400, {"error": "cpu: no",
                                                             "field": "cpu"})
    agent = dma(fast(controller.url, f"127.0.100.1=127.0.0.21@http://127.0.0.1:{service}/stats"))
    wait_until(lambda: len(controller.seen("POST", f"{API}/metrics")) >= 2, 10, "two reports")
    first, second = controller.seen("POST", f"{API}/metrics")[:2]
    assert first["active"] is True and second["active"] is False
    assert second["capacity"] == first["capacity"] and set(second) <= METRIC_KEYS
    assert "reporting it not serving" in agent.stderr()
    assert agent.stop() == 0


@pytest.mark.parametrize(("status", "error"), [
    (403, "dbid: 127.0.0.21 is another agent's instance"),
    (403, "dbid: 127.0.0.21 is outside agent 'dma-t''s prefixes"),
    (404, "dsid: unknown D-SID: 127.0.100.1"),
    (400, "dbid: 127.0.0.21 is a reserved address"),
    (409, "dbid: 127.0.0.21 is an instance of another service"),
])
def test_an_only_binding_refused_for_good_ends_the_dma_at_register_timeout(
        controller: FakeController, dma: Callable[[list[str]], Dma], status: int,
        error: str) -> None:
    """A registration refused for good counts as no answer: with --register-timeout the D-MA
    exits 1 (it served nothing yet ran on, and SIGTERM got 0), the controller's reason in
    the log, and withdraws nothing (not its instance, or none)."""
    controller.statuses[("POST", f"{API}/instances")] = (status, {"error": error})
    args = fast(controller.url, "127.0.100.1=127.0.0.21@http://127.0.0.1:1/stats")
    agent = dma([*args, "--register-timeout", "2"])
    assert agent.proc.wait(timeout=15) == 1
    err = agent.stderr()
    assert f"HTTP {status}" in err and error in err and "refused for good" in err, err
    assert "refused every binding" in err, err
    assert not [p for m, p, _ in controller.records if m == "DELETE"]


@pytest.mark.parametrize("status", [401, 429, 503])
def test_a_refusal_that_may_pass_later_is_not_one_for_good(
        controller: FakeController, dma: Callable[[list[str]], Dma], status: int) -> None:
    """401 (clock, sequence, a table not re-read yet), 429 (quota) and 5xx are answers that
    may change by themselves: the D-MA keeps asking past --register-timeout, as before."""
    controller.statuses[("POST", f"{API}/instances")] = (status, {"error": "later"})
    args = fast(controller.url, "127.0.100.1=127.0.0.21@http://127.0.0.1:1/stats")
    agent = dma([*args, "--register-timeout", "1"])
    wait_until(lambda: len(controller.seen("POST", f"{API}/instances")) >= 3, 10,
               "asked again")
    assert agent.proc.poll() is None and "refused for good" not in agent.stderr()
    assert agent.stop() == 0


def test_a_binding_refused_for_good_beside_a_good_one_is_logged_once_and_not_withdrawn(
        controller: FakeController, service: int, dma: Callable[[list[str]], Dma]) -> None:
    """One binding registered, one refused for good: the D-MA serves the first past
    --register-timeout, logs the refusal once (not at every interval), asks for it again only
    seldom, and at SIGTERM withdraws only the binding it has."""
    controller.registrations["127.0.0.22"] = (403, {"error": "dbid: not yours"})
    agent = dma([*fast(controller.url,
                       f"127.0.100.1=127.0.0.21@http://127.0.0.1:{service}/stats",
                       f"127.0.100.1=127.0.0.22@http://127.0.0.1:{service}/stats"),
                 "--register-timeout", "1"])
    wait_until(lambda: len(controller.seen("POST", f"{API}/metrics")) >= 4, 10, "reports")
    time.sleep(2.5)  # past --register-timeout, five --interval periods
    assert agent.proc.poll() is None
    assert set(latest_reports(controller)) == {"127.0.0.21"}
    asked = [b["dbid"] for b in controller.seen("POST", f"{API}/instances")]
    assert asked.count("127.0.0.22") == 1, asked
    err = agent.stderr()
    assert err.count("refused for good") == 1 and "not yours" in err, err
    assert agent.stop() == 0
    assert [p for m, p, _ in controller.records if m == "DELETE"] == [
        f"{API}/instances/127.0.0.21"]


def test_without_register_timeout_a_refused_binding_is_asked_for_until_taken(
        controller: FakeController, service: int, dma: Callable[[list[str]], Dma]) -> None:
    """Without --register-timeout the D-MA waits for an operator to fix what was refused (the
    agent table is re-read, a service added), logging the refusal once, not at every try."""
    controller.statuses[("POST", f"{API}/instances")] = (403, {"error": "dbid: outside"})
    agent = dma(fast(controller.url, f"127.0.100.1=127.0.0.21@http://127.0.0.1:{service}/stats"))
    wait_until(lambda: len(controller.seen("POST", f"{API}/instances")) >= 3, 10, "asked again")
    assert agent.stderr().count("refused") == 1, agent.stderr()
    del controller.statuses[("POST", f"{API}/instances")]
    wait_until(lambda: "registered 127.0.100.1=127.0.0.21" in agent.stdout(), 10, "taken")
    wait_until(lambda: controller.seen("POST", f"{API}/metrics"), 10, "reports once registered")
    assert agent.stop() == 0

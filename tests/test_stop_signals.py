"""Signals to a real controller (dyncast-manager under os-ken and Ryu): a second SIGTERM during
the stop loses no write already answered 201, and a SIGHUP early in the start is not fatal."""

from __future__ import annotations

import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apps import procsignals
from mininet_tests.processes import free_port, wait_until

REPO = Path(__file__).resolve().parent.parent
API = "/dyncast/v1"
CONFIG = """[security]
auth = false
[controller]
store_url = "sqlite:///{tmp}/store.db"
store_flush_s = {flush_s}
[[service]]
name = "svc1"
dsid = "10.0.100.1"
protocol = "tcp"
port = 8000
"""


class Controller:
    """`python -m apps.manager` on free ports, its output in a file."""

    def __init__(self, tmp: Path, name: str, framework: str, flush_s: float = 1.0) -> None:
        (tmp / "dyncast.toml").write_text(CONFIG.format(tmp=tmp, flush_s=flush_s))
        self.port = free_port()
        self.log_path = tmp / f"{name}.log"
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "apps.manager", "--framework", framework,
                 "--ofp-tcp-listen-port", str(free_port()), "--wsapi-host", "127.0.0.1",
                 "--wsapi-port", str(self.port), "--dyncast-config", str(tmp / "dyncast.toml"),
                 str(REPO / "apps" / "dyncast_app.py")],
                cwd=tmp, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(REPO)})

    def log(self) -> str:
        """What the controller printed so far."""
        return self.log_path.read_text(errors="replace")

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request on its own connection: (status, JSON body or None)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data,
                         headers={"Content-Type": "application/json"} if data else {})
            reply = conn.getresponse()
            raw = reply.read()
            return reply.status, json.loads(raw) if raw else None
        finally:
            conn.close()

    def healthy(self) -> bool:
        """True once /healthz answers 200."""
        try:
            return self.call("GET", "/healthz")[0] == 200
        except OSError:
            return False

    def ready(self) -> None:
        """Wait until /healthz answers (fail if the process ended first)."""
        wait_until(lambda: self.proc.poll() is not None or self.healthy(), 15,
                   lambda: f"controller not up: {self.log()[-2000:]}")
        assert self.proc.poll() is None, (self.proc.returncode, self.log()[-3000:])

    def end(self) -> None:
        """Kill it if it still runs (teardown)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Controller]]:
    """Controllers the test starts; any still running is killed at teardown."""
    procs: list[Controller] = []
    yield procs
    for proc in procs:
        proc.end()


def test_during_a_stop_sigint_and_sigterm_are_logged_once_and_ignored(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app's stop (under any manager, ryu-manager's Ctrl-C too) ignores a second Ctrl-C or
    SIGTERM, says so once, and leaves the handlers as they were after it."""
    monkeypatch.setattr(procsignals, "_ignored", 0)  # logged once a process: this one's first
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with procsignals.stop_under_way():
        os.kill(os.getpid(), signal.SIGINT)  # would raise KeyboardInterrupt here
        os.kill(os.getpid(), signal.SIGTERM)  # would end pytest itself
        time.sleep(0.01)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    said = [r.getMessage() for r in caplog.records if "stop is already under way" in r.getMessage()]
    assert said == ["dyncast: SIGINT ignored: a stop is already under way (its last store "
                    "flush is bounded; SIGKILL ends the process at once)"], said


@pytest.mark.parametrize("framework", ["os-ken", "ryu"])
def test_a_second_sigterm_during_the_stop_loses_no_acknowledged_write(
        tmp_path: Path, started: list[Controller], framework: str) -> None:
    """Every registration answered 201 is in the store after two SIGTERMs 50 ms apart, sent
    while the flusher's batch waits for the store (another process holds its lock for 1 s),
    and the controller exits 0 having stored them all (the second SIGTERM logged, ignored)."""
    first = Controller(tmp_path, "first", framework, flush_s=0.2)
    started.append(first)
    first.ready()
    holder = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # the flusher's next batch waits for it (busy timeout)
    wanted = 300
    try:
        accepted = [n for n in range(wanted) if first.call(
            "POST", f"{API}/instances", {"dsid": "10.0.100.1", "dma": "dma-a",
                                         "dbid": f"10.0.{10 + n // 250}.{n % 250 + 1}"})[0] == 201]
        assert len(accepted) == wanted
        first.proc.send_signal(signal.SIGTERM)
        time.sleep(0.05)
        first.proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert first.proc.poll() is None or "Traceback" in first.log(), \
            "the stop did not wait for the store (no window for the second SIGTERM)"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    code = first.proc.wait(20)
    second = Controller(tmp_path, "second", framework)
    started.append(second)
    second.ready()
    status, instances = second.call("GET", f"{API}/instances")
    log = first.log()
    assert status == 200 and len(instances) == wanted, (len(instances or []), log[-1500:])
    assert code == 0 and "Traceback" not in log, (code, log[-3000:])
    assert "SIGTERM ignored: a stop is already under way" in log, log[-3000:]


def _hup_caught(pid: int) -> bool:
    """True once the process has a handler for SIGHUP (Linux: SigCgt in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGHUP - 1)))
    return False


def _framework_loading(pid: int) -> bool:
    """True once the framework's event library (greenlet, under eventlet) is loaded."""
    return "greenlet" in Path(f"/proc/{pid}/maps").read_text()


def test_a_sighup_early_in_the_start_is_held_and_reloads_once_running(
        tmp_path: Path, started: list[Controller]) -> None:
    """A SIGHUP sent as soon as the process catches it, or else as soon as it loads the
    framework (before the app, which used to install the first handler): the controller keeps
    running, serves /healthz, and reloads its configuration once it runs."""
    ctl = Controller(tmp_path, "hup", "os-ken")
    started.append(ctl)
    wait_until(lambda: ctl.proc.poll() is not None or _hup_caught(ctl.proc.pid)
               or _framework_loading(ctl.proc.pid), 15, "the process never got that far",
               interval=0.002)
    assert not ctl.healthy(), "the SIGHUP must come before the app is up"
    ctl.proc.send_signal(signal.SIGHUP)
    ctl.ready()
    assert ctl.call("GET", "/healthz")[0] == 200
    wait_until(lambda: '"trigger": "sighup"' in ctl.log(), 5, "no reload after the SIGHUP")
    assert "SIGHUP during the start" in ctl.log()

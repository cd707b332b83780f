"""Processes for the Mininet tests: the controller, processes in hosts, polling and REST calls.

Boundary: no Mininet here. A process is started with its output in a log file in the test's
artefact folder and ended by its pid (SIGTERM, then SIGKILL), never by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest

from agents.credset import CredentialSet
from controller.auth.policy import classify

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "mininet_tests" / "artifacts"
API = "/dyncast/v1"
ERROR_MARKERS = ("Traceback", "OFPErrorMsg", "error msg", " ERROR ", "Exception")
T = TypeVar("T")


def run(argv: Sequence[str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run a command in the root namespace, capturing its output, never raising on failure."""
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(list(argv), 127, "", str(exc))


def wait_until(predicate: Callable[[], T], timeout: float,
               message: str | Callable[[], str], interval: float = 0.1) -> T:
    """Poll `predicate` until it returns a truthy value and return it; fail after `timeout` s.

    The failure shows `message` (a string, or a function called then) and the last value the
    predicate returned or the exception it raised.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
        except Exception as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            pytest.fail(f"{text} (waited {timeout:g} s; last seen: {last!r})", pytrace=False)
        time.sleep(interval)


def free_port() -> int:
    """A TCP port free on all addresses right now."""
    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def http_json(method: str, url: str, body: Any = None, timeout: float = 5.0,
              creds: Callable[[str, str, bytes], dict[str, str]] | None = None,
              ) -> tuple[int, Any]:
    """Send JSON (if `body` is not None), return (status, decoded JSON or text or None).
    `creds(method, path, body bytes)` gives the credential headers (a token or a signature)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data else {}
    if creds is not None:
        headers.update(creds(method, urlsplit(url).path, data or b""))
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def bin_path(name: str) -> str:
    """The project's console script `name` from `.venv/bin`, else from PATH."""
    path = REPO / ".venv" / "bin" / name
    return str(path) if path.exists() else (shutil.which(name) or str(path))


def pid_alive(pid: int) -> bool:
    """True if `pid` is a live process (zombies count as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def stop_pid(popen: subprocess.Popen[Any], timeout: float = 5.0) -> int | None:
    """SIGTERM the process, SIGKILL it after `timeout` s; return its exit code."""
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(5)
    return popen.returncode


def terminate_all(popens: Sequence[subprocess.Popen[Any]]) -> None:
    """SIGTERM every process still running, without waiting (stop_pid then waits for each)."""
    for popen in popens:
        if popen.poll() is None:
            with contextlib.suppress(OSError):
                popen.send_signal(signal.SIGTERM)


def artifacts_for(test_name: str) -> Path:
    """A fresh artefact folder for one test: mininet_tests/artifacts/<test name>/."""
    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name).strip("_")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@dataclass
class ControllerProcess:
    """`dyncast-manager` running the Dyncast app on free ports, logging to controller.log.

    `command` replaces the default command line (for the harness self-test); arguments that are
    exactly "{ofp_port}", "{rest_port}" or "{config}" are replaced by those values.
    Authentication is on: `creds` (made once in the artefact folder) hold the admin token and
    the agent keys; the controller runs a copy of `config` with their [security] table, and
    `rest` sends the token, or signs agent calls (as the registration's `dma`, else 'lab').
    """

    artifacts: Path
    config: Path | None = None
    framework: str = field(default_factory=lambda: os.environ.get("DYNCAST_FRAMEWORK", "ryu"))
    command: Sequence[str] | None = None
    ofp_port: int = field(default_factory=free_port)
    rest_port: int = field(default_factory=free_port)
    popen: subprocess.Popen[bytes] | None = None
    creds: CredentialSet | None = None
    owners: dict[str, str] = field(default_factory=dict)  # D-BID -> agent that registered it

    def __post_init__(self) -> None:
        if self.creds is None:
            self.creds = CredentialSet(self.artifacts / "creds")

    @property
    def secured_config(self) -> Path:
        """The configuration the controller runs: `config` plus the [security] table, written
        at the first start (a restart runs the same file, as a test may have rewritten it)."""
        assert self.creds is not None
        path = self.artifacts / "secured.toml"
        return path if path.exists() else self.creds.config_with_security(self.config, path)

    @property
    def log_path(self) -> Path:
        """Where the controller's stdout and stderr go."""
        return self.artifacts / "controller.log"

    @property
    def url(self) -> str:
        """Base URL of the REST API from the root namespace."""
        return f"http://127.0.0.1:{self.rest_port}"

    def argv(self) -> list[str]:
        """The command line that starts the controller."""
        if self.command is not None:
            values = {"{ofp_port}": str(self.ofp_port), "{rest_port}": str(self.rest_port),
                      "{config}": str(self.secured_config)}
            return [values.get(a, a) for a in self.command]
        argv = [bin_path("dyncast-manager"), "--framework", self.framework,
                "--dyncast-config", str(self.secured_config)]
        return [*argv, "--ofp-tcp-listen-port", str(self.ofp_port), "--wsapi-host", "0.0.0.0",
                "--wsapi-port", str(self.rest_port), str(REPO / "apps" / "dyncast_app.py")]

    def start(self, timeout: float = 30.0) -> None:
        """Start the controller (cwd = the artefact folder) and wait until its REST API answers."""
        argv = self.argv()
        with open(self.log_path, "ab") as log:
            log.write(f"# command: {json.dumps(argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, cwd=self.artifacts,
                                          env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                          start_new_session=True)
        wait_until(self._ready, timeout, lambda: "controller REST API did not answer "
                   f"{self.url}{API}/topology; log tail:\n{self.log_tail()}")

    def _ready(self) -> bool:
        """True once GET /topology answers 200; fails the test if the process died."""
        assert self.popen is not None
        if self.popen.poll() is not None:
            pytest.fail(f"controller exited with {self.popen.returncode} during start; log tail:"
                        f"\n{self.log_tail()}", pytrace=False)
        return self.rest("GET", "/topology", timeout=1.0)[0] == 200

    def rest(self, method: str, path: str, body: Any = None,
             timeout: float = 5.0) -> tuple[int, Any]:
        """Call the REST API; `path` is relative to /dyncast/v1 (e.g. "/services")."""
        full = path if path.startswith(API) else API + path
        assert self.creds is not None
        agent = self.creds.agent_for(method, full, body, self.owners)
        if agent == "lab" and classify(method, full) == "agent":
            agent = self._owner(method, full, body) or agent
        creds = self.creds
        status, reply = http_json(method, self.url + full, body, timeout,
                                  lambda m, p, b: creds.headers(m, p, b, agent))
        if status in (200, 201) and method == "POST" and full.rstrip("/").endswith("/instances"):
            self.owners[reply["dbid"]] = agent
        return status, reply

    def _owner(self, method: str, path: str, body: Any) -> str | None:
        """The agent the controller says owns the instance an agent call names (one a D-MA
        process registered, so not in `owners`): a test's withdrawal or report speaks as it."""
        dbid = path.rstrip("/").rsplit("/", 1)[-1] if method == "DELETE" else None
        if isinstance(body, dict) and isinstance(body.get("reports"), list) and body["reports"]:
            first = body["reports"][0]
            dbid = first.get("dbid") if isinstance(first, dict) else None
        if not isinstance(dbid, str):
            return None
        status, reply = self.rest("GET", f"/instances/{dbid}")
        owner = reply.get("dma") if status == 200 and isinstance(reply, dict) else None
        return owner if isinstance(owner, str) and owner else None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the controller by pid, SIGKILL after `timeout` s; return its exit code."""
        return stop_pid(self.popen, timeout) if self.popen is not None else None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the controller log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_errors(self) -> list[str]:
        """Log lines showing a controller exception or an OpenFlow error."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines()
                if not line.startswith("# ") and any(m in line for m in ERROR_MARKERS)]


@dataclass
class HostProcess:
    """A process started inside a Mininet host, with its log file."""

    host: str
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    offset: int = 0  # where its output starts: a restarted process appends to the same file

    def log(self) -> str:
        """Everything this process printed so far (not what earlier ones left in the file)."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[self.offset:].decode(errors="replace")


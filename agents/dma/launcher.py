"""Starting and stopping the instances a D-MA controls (`--start`, `--stop`).

Boundary: child processes; the commands come from the D-MA's command line only.
"""

from __future__ import annotations

import logging
import shlex
import signal
import subprocess
from collections.abc import Mapping

log = logging.getLogger("dyncast-dma")


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the D-MA dies, so no instance outlives its agent."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Launcher:
    """Starts and stops the instances this D-MA controls, with the configured commands."""

    def __init__(self, start: Mapping[str, str], stop: Mapping[str, str]) -> None:
        self.start_cmds = dict(start)
        self.stop_cmds = dict(stop)
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, dbid: str) -> bool:
        """Run the instance's start command (unless what it started still runs)."""
        command = self.start_cmds.get(dbid)
        child = self.children.get(dbid)
        if command is None or (child is not None and child.poll() is None):
            return command is not None
        log.info("starting %s: %s", dbid, command)
        self.children[dbid] = subprocess.Popen(shlex.split(command), stdin=subprocess.DEVNULL,
                                               preexec_fn=_die_with_parent)
        return True

    def stop(self, dbid: str) -> None:
        """Run the instance's stop command, or terminate the process its start command began."""
        command = self.stop_cmds.get(dbid)
        if command is not None:
            log.info("stopping %s: %s", dbid, command)
            subprocess.run(shlex.split(command), stdin=subprocess.DEVNULL, timeout=30,
                           check=False)
        child = self.children.pop(dbid, None)
        if child is not None and command is None:
            log.info("stopping %s: terminating pid %d", dbid, child.pid)
            _end(child)

    def close(self) -> None:
        """Stop everything this D-MA started."""
        for dbid in list(self.children):
            _end(self.children.pop(dbid))


def _end(child: subprocess.Popen[bytes]) -> None:
    """Terminate a child (SIGKILL after 10 s) and reap it."""
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()

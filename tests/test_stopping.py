"""agents/stopping.py: a stop signal never deadlocks an agent on its own stop event."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_a_signal_that_comes_while_the_event_lock_is_held_still_stops() -> None:
    """The handler runs where the main thread holds the event's lock (as inside `Event.wait`,
    which `Event.set` there would wait on for ever): it returns at once, and the event is set
    as soon as the lock is let go. In a process of its own, so that a handler that blocks
    fails the test at the timeout instead of hanging the run."""
    code = ("import signal, threading\nfrom agents.stopping import setter\n"
            "stop = threading.Event()\nhandler = setter(stop)\n"
            "with stop._cond:  # the lock Event.wait holds around its flag\n"
            "    handler(signal.SIGTERM, None)\n    assert not stop.is_set()\n"
            "assert stop.wait(5)\nprint('stopped', flush=True)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, text=True, timeout=10)
    assert (done.returncode, done.stdout) == (0, "stopped\n"), done.stderr


def test_an_agent_stopped_by_signals_in_a_tight_wait_loop_exits() -> None:
    """A process waiting on its event every millisecond, SIGTERMed: it exits within the
    bound (with `Event.set` in the handler, some such processes never did)."""
    code = ("import threading, sys\nfrom agents.stopping import stop_on_signals\n"
            "stop = threading.Event()\nstop_on_signals(stop)\nprint('ready', flush=True)\n"
            "while not stop.wait(0.001):\n    pass\n")
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                                env={**os.environ, "PYTHONPATH": str(REPO)}, text=True)
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
